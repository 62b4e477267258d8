"""Judging a pressure result: the monitoring-plugin verdict (`pressure --check`) and the
health status that `report`, the exporter and the web page show.

With the default thresholds the plugin's status is exactly `status()`: the worst finding's
severity, with the destination/pool utilization judged against --warn/--crit instead of
the findings' fixed 80% / 95% lines.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from .errors import BadInput
from .findings import FINDING_IDS

if TYPE_CHECKING:
    from .pressure import PressureResult

# monitoring-plugin exit codes (Nagios / Icinga / Sensu)
OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATUS = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
SEVERITY_CODE = {"critical": CRITICAL, "warning": WARNING, "info": OK}
# findings whose fixed 80% / 95% lines --warn / --crit replace in check mode: they measure
# exactly what check_value() compares (a destination's utilization, the exclusive pools)
THRESHOLD_FINDINGS = frozenset({"destination-critical", "destination-high", "pool-critical", "pool-warning"})
DEFAULT_WARN, DEFAULT_CRIT = 80.0, 95.0

__all__ = ["Check", "evaluate_check", "check_value", "status", "parse_ignore", "check_thresholds",
           "OK", "WARNING", "CRITICAL", "UNKNOWN", "STATUS", "DEFAULT_WARN", "DEFAULT_CRIT"]


def status(res: PressureResult) -> str:
    """"critical", "warning" or "ok": the most severe finding of a result."""
    sev = {f.severity for f in res.findings}
    return "critical" if "critical" in sev else "warning" if "warning" in sev else "ok"


def check_thresholds(warn: float | None, crit: float | None) -> tuple[float, float]:
    """--warn/--crit with their defaults; BadInput unless 0 <= warn <= crit <= 100."""
    warn = DEFAULT_WARN if warn is None else warn
    crit = DEFAULT_CRIT if crit is None else crit
    if not (0 <= warn <= 100 and 0 <= crit <= 100) or warn > crit:
        raise BadInput(f"need 0 <= --warn ({warn:g}) <= --crit ({crit:g}) <= 100")
    return warn, crit


def check_value(res: PressureResult) -> tuple[float, str]:
    """The number --check compares: the worst of any destination and of the exclusive pools."""
    g = res.global_
    cands = []
    if res.worst:
        cands.append((res.worst.utilization, f"{res.worst.proto} {res.worst.label} "
                      f"{res.worst.in_use}/{res.worst.capacity}"))
    if g.capacity:
        tcp_cap = res.tcp_pool_ports
        cands.append((min(1.0, g.tcp_exclusive / tcp_cap) if tcp_cap else 1.0,
                      f"TCP ports held for every destination {g.tcp_exclusive}/{tcp_cap}"))
        cands.append((g.udp_exclusive / g.capacity, f"UDP ports {g.udp_exclusive}/{g.capacity}"))
    else:
        cands.append((1.0, "no usable ephemeral port"))
    v, what = max(cands, key=lambda c: c[0])
    return (v, what) if v > 0 else (0.0, "no ephemeral port in use")


@dataclass(frozen=True)
class Check:
    """The plugin's verdict: exit code, the status line and its parts (for --json)."""

    code: int
    line: str
    value: float                  # the compared fraction (0..1)
    what: str
    warn: float
    crit: float
    reasons: tuple[dict, ...]     # what raised the status above OK
    perfdata: tuple[dict, ...]
    ignored: tuple[str, ...]

    def to_json(self) -> dict:
        """The `pressure --check --json` document (docs/json.md)."""
        return {"status": STATUS[self.code], "exit_code": self.code, "line": self.line,
                "value": round(self.value, 6), "what": self.what, "warn": self.warn, "crit": self.crit,
                "reasons": list(self.reasons), "perfdata": list(self.perfdata), "ignored": list(self.ignored)}


def _perf(label, value, uom="", warn=None, crit=None, lo=None, hi=None) -> dict:
    return {"label": label, "value": value, "uom": uom, "warn": warn, "crit": crit, "min": lo, "max": hi}


def _perf_text(p: dict, fmt: str = "") -> str:
    def g(x):
        return "" if x is None else f"{x:g}"
    v = format(p["value"], fmt) if fmt else str(p["value"])
    return f"{p['label']}={v}{p['uom']};{g(p['warn'])};{g(p['crit'])};{g(p['min'])};{g(p['max'])}"


def evaluate_check(res: PressureResult, warn: float = DEFAULT_WARN, crit: float = DEFAULT_CRIT,
                   ignore: Iterable[str] = ()) -> Check:
    """Status = the worst of (a) the compared utilization against --warn/--crit and (b) the
    severity of every finding (critical -> CRITICAL, warning -> WARNING, info -> OK), except
    the findings the thresholds take the place of (THRESHOLD_FINDINGS) and those in `ignore`.
    With the default thresholds this is exactly `report`'s status."""
    ignore = frozenset(ignore)
    v, what = check_value(res)
    pct = v * 100
    code = CRITICAL if v >= crit / 100 else WARNING if v >= warn / 100 else OK
    reasons = []
    if code:
        reasons.append({"source": "threshold", "value": round(pct, 2),
                        "threshold": crit if code == CRITICAL else warn, "status": STATUS[code]})
    for f in res.findings:
        if f.id in THRESHOLD_FINDINGS or f.id in ignore:
            continue
        c = SEVERITY_CODE.get(f.severity, OK)
        if c:
            reasons.append({"source": "finding", "id": f.id, "severity": f.severity, "status": STATUS[c]})
            code = max(code, c)
    parts = [f"worst {pct:.1f}% ({what})"]
    # (eta, destination) pairs: the eta typed as a float for the checker
    heading = [(d.seconds_to_exhaustion, d) for d in res.destinations if d.seconds_to_exhaustion is not None]
    if heading:
        d = min(heading, key=lambda e: e[0])[1]
        parts.append(f"{d.proto} {d.label} runs out in {d.seconds_to_exhaustion:.0f} s "
                     f"at {d.rate_per_s:.1f}/s")
    fs = f"{len(res.findings)} finding(s)"
    if res.findings:
        fs += ": " + ", ".join(f"{f.id} ({f.severity}{', ignored' if f.id in ignore else ''})"
                               for f in res.findings)
    parts.append(fs)
    g = res.global_
    perf = [(_perf("worst_utilization", round(pct, 2), "%", warn, crit, 0, 100), ".2f"),
            (_perf("global_in_use", g.in_use, "", None, None, 0, g.capacity), ""),
            (_perf("global_utilization", round(g.utilization * 100, 2), "%", None, None, 0, 100), ".2f"),
            (_perf("time_wait", g.time_wait, "", None, None, 0), ""),
            (_perf("bind_held", g.bind_held, "", None, None, 0), ""),
            (_perf("udp", g.udp, "", None, None, 0), ""),
            (_perf("destinations", res.destinations_total, "", None, None, 0), "")]
    if res.forecast is not None:
        perf.append((_perf("new_connections_rate", round(res.forecast["rate_per_s"], 2), "", None, None, 0), ".2f"))
        if heading:
            eta = min(e for e, _ in heading)
            perf.append((_perf("seconds_to_exhaustion", round(eta), "s", None, None, 0), ""))
    line = (f"PORTSCOPE {STATUS[code]} - " + "; ".join(parts) + " | "
            + " ".join(_perf_text(p, fmt) for p, fmt in perf))
    return Check(code=code, line=line, value=v, what=what, warn=warn, crit=crit, reasons=tuple(reasons),
                 perfdata=tuple(p for p, _ in perf), ignored=tuple(sorted(ignore)))


def parse_ignore(values: Iterable[str]) -> frozenset[str]:
    """Finding ids from repeated `--ignore ID[,ID]` values; BadInput for an unknown id."""
    ids = {x.strip() for v in values for x in v.split(",") if x.strip()}
    unknown = sorted(ids - set(FINDING_IDS))
    if unknown:
        raise BadInput(f"unknown finding id(s) for --ignore: {', '.join(unknown)} "
                       f"(known: {', '.join(FINDING_IDS)})")
    return frozenset(ids)
