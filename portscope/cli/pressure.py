"""`portscope pressure`: ephemeral-port use per destination, forecast, findings; --check plugin mode."""
from __future__ import annotations

from dataclasses import dataclass

import click

from .common import emit_json, json_option, netns_of, netns_option, verbose, want_json

# monitoring-plugin exit codes (Nagios / Icinga / Sensu)
OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATUS = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
SEVERITY_CODE = {"critical": CRITICAL, "warning": WARNING, "info": OK}
# findings whose fixed 80% / 95% lines --warn / --crit replace in check mode: they measure
# exactly what check_value() compares (a destination's utilization, the exclusive pools)
THRESHOLD_FINDINGS = frozenset({"destination-critical", "destination-high", "pool-critical", "pool-warning"})
DEFAULT_WARN, DEFAULT_CRIT = 80.0, 95.0
MAX_INTERVAL = 3600.0
MAX_SAMPLES = 1000


def gather(netns=None, *, top=None, process=False, interval=None, samples=None):
    """Host facts + snapshot(s) -> PressureResult (the whole data path of pressure/report)."""
    from ..errors import BadInput, NotPermitted, SystemReadError
    from ..host import facts as host_facts
    from ..pressure import analyze, read_sockets

    if top is not None and top < 0:
        raise BadInput(f"--top must be >= 0, got {top}")
    if samples is not None and interval is None:
        raise BadInput("--samples needs --interval")
    if interval is not None and not (0 < interval <= MAX_INTERVAL):
        raise BadInput(f"--interval must be in (0, {MAX_INTERVAL:.0f}] seconds, got {interval:g}")
    if samples is not None and not (2 <= samples <= MAX_SAMPLES):
        raise BadInput(f"--samples must be in 2..{MAX_SAMPLES}, got {samples}")
    facts = host_facts(netns)

    def take():
        # only sockets whose local port is in the range: the kernel filters (as `ss` does)
        return read_sockets(facts, netns, owners=process)

    try:
        if interval is None:
            return analyze(facts, take(), top=top, process=process)
        from ..forecast import forecast, sample
        tables = sample(take, interval, samples or 2)
        return forecast(facts, tables, top=top, process=process, interval=interval)
    except PermissionError as e:
        raise NotPermitted(f"cannot read the socket table: {e}")
    except OSError as e:
        raise SystemReadError(f"cannot read the socket table: {e}")


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def dest_name(d) -> str:
    dst = f"[{d.dst}]" if ":" in d.dst else d.dst
    return f"{d.src} -> {dst}:{d.dport}"


def render_destinations(res, echo=click.echo) -> None:
    fc = res.forecast is not None
    if not res.destinations:
        echo("  (no outgoing connections using the ephemeral range)")
        return
    rows = [("PROTO", "SOURCE -> DESTINATION", "IN USE", "TIME_WAIT", "CAPACITY", "USE")
            + (("RATE/s", "MAX/s", "EXHAUSTED IN") if fc else ())]
    for d in res.destinations:
        row = (d.proto, dest_name(d), str(d.in_use), str(d.time_wait), str(d.capacity), _pct(d.utilization))
        if fc:
            eta = "-" if d.seconds_to_exhaustion is None else f"{d.seconds_to_exhaustion:.0f} s"
            mx = "-" if d.sustainable_rate_per_s is None else f"{d.sustainable_rate_per_s:.1f}"
            row += (f"{d.rate_per_s:.1f}", mx, eta)
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
        echo("  " + "  ".join(cells).rstrip())
    if res.others["destinations"]:
        echo(f"  ... and {res.others['destinations']} more destination(s) holding {res.others['in_use']} port(s)")


def render_global(res, echo=click.echo) -> None:
    g = res.global_
    echo(f"Global: {g.in_use} of {g.capacity} usable ports in use ({_pct(g.utilization)}): "
         f"{g.listeners} listener, {g.bind_held} bind-held, {g.udp} UDP, "
         f"{g.connect} connect() sockets ({g.time_wait} in TIME_WAIT)")


def render_findings(res, echo=click.echo) -> None:
    if not res.findings:
        echo("  none: nothing to fix")
        return
    for f in res.findings:
        echo(f"  [{f.severity.upper()}] {f.id}: {f.message}")
        echo(f"      fix: {f.remedy}")


def check_value(res) -> tuple[float, str]:
    """The number --check compares: the worst of any destination and of the exclusive pools."""
    g = res.global_
    cands = []
    if res.worst:
        cands.append((res.worst.utilization, f"{res.worst.proto} {dest_name(res.worst)} "
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


def evaluate_check(res, warn: float = DEFAULT_WARN, crit: float = DEFAULT_CRIT, ignore=()) -> Check:
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
    heading = [d for d in res.destinations if d.seconds_to_exhaustion is not None]
    if heading:
        d = min(heading, key=lambda d: d.seconds_to_exhaustion)
        parts.append(f"{d.proto} {dest_name(d)} runs out in {d.seconds_to_exhaustion:.0f} s "
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
            eta = min(d.seconds_to_exhaustion for d in heading)
            perf.append((_perf("seconds_to_exhaustion", round(eta), "s", None, None, 0), ""))
    line = (f"PORTSCOPE {STATUS[code]} - " + "; ".join(parts) + " | "
            + " ".join(_perf_text(p, fmt) for p, fmt in perf))
    return Check(code=code, line=line, value=v, what=what, warn=warn, crit=crit, reasons=tuple(reasons),
                 perfdata=tuple(p for p, _ in perf), ignored=tuple(sorted(ignore)))


def _one_line(msg: str) -> str:
    return " ".join(str(msg).split())


def _unknown(msg: str, as_json: bool):
    """Check mode's answer to any failure: UNKNOWN (3), one plugin line (or its JSON)."""
    line = f"PORTSCOPE UNKNOWN - {_one_line(msg)}"
    if as_json:
        emit_json({"check": {"status": STATUS[UNKNOWN], "exit_code": UNKNOWN, "line": line,
                             "error": _one_line(msg)}})
    else:
        click.echo(line)
    raise SystemExit(UNKNOWN)


def _root_json(ctx) -> bool:
    return bool(((ctx.find_root().obj if ctx else None) or {}).get("json"))


class PressureCommand(click.Command):
    """With --check among the arguments, a usage error (bad value, unknown option, missing
    argument) is UNKNOWN (exit 3) with a plugin line: exit 2, click's code, would read as
    CRITICAL to a monitoring system."""

    def parse_args(self, ctx, args):
        if "--check" not in args:
            return super().parse_args(ctx, args)
        as_json = "--json" in args or _root_json(ctx)      # before click's parser consumes args
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:       # BadParameter, NoSuchOption, BadOptionUsage, ...
            _unknown(f"{e.format_message()} (see '{ctx.command_path} --help')", as_json)


def _ignored(values) -> frozenset:
    from ..errors import BadInput
    from ..findings import FINDING_IDS
    from ..nat.findings import NAT_FINDING_IDS
    FINDING_IDS = FINDING_IDS + NAT_FINDING_IDS

    ids = {x.strip() for v in values for x in v.split(",") if x.strip()}
    unknown = sorted(ids - set(FINDING_IDS))
    if unknown:
        raise BadInput(f"unknown finding id(s) for --ignore: {', '.join(unknown)} "
                       f"(known: {', '.join(FINDING_IDS)})")
    return frozenset(ids)


@click.command("pressure", cls=PressureCommand)
@json_option
@netns_option
@click.option("--top", "top", type=int, default=20, show_default=True, metavar="N",
              help="Show the N worst destinations (the rest are summed).")
@click.option("--interval", type=float, default=None, metavar="S",
              help="Sample S seconds apart and forecast rates and time to exhaustion.")
@click.option("--samples", type=int, default=None, metavar="K",
              help="Number of samples with --interval (default 2).")
@click.option("--process", is_flag=True, help="Attribute use to processes (slower: reads /proc/*/fd).")
@click.option("--check", is_flag=True,
              help="Monitoring-plugin mode: one status line with perfdata; exit 0 OK, 1 WARNING, "
                   "2 CRITICAL, 3 UNKNOWN (any error, bad usage included). The status is the worst "
                   "of --warn/--crit on the worst utilization and the severity of each finding.")
@click.option("--warn", type=float, default=None, metavar="P",
              help=f"Only with --check: WARNING at P percent use (default {DEFAULT_WARN:g}).")
@click.option("--crit", type=float, default=None, metavar="P",
              help=f"Only with --check: CRITICAL at P percent use (default {DEFAULT_CRIT:g}).")
@click.option("--ignore", multiple=True, metavar="ID[,ID]",
              help="Only with --check: leave these finding ids out of the status (repeatable).")
def pressure(json_out, netns, top, interval, samples, process, check, warn, crit, ignore):
    """Ephemeral-port use per destination (src, dst, dport) against its real capacity.

    \b
    TCP capacity per destination = ports of the range - reserved ports - ports
    held for every destination by a TCP bind() (listeners, bind-before-connect,
    bound-only sockets) + those held by the destination's own sockets. UDP
    sockets do not reduce TCP capacity (TCP and UDP keep separate port tables);
    a UDP destination's capacity subtracts the ports UDP sockets hold. With
    range ends of equal parity, one port less: each connect() searches all
    ports but one. TIME_WAIT counts as used. --interval adds the rate of new
    connections, the sustainable rate and the time to exhaustion.
    """
    if check:
        as_json = want_json(json_out)
        try:
            _check(netns, top, interval, samples, process, warn, crit, ignore, as_json)
        except (SystemExit, BrokenPipeError):
            raise                          # a reader that went away is not a check result
        except KeyboardInterrupt:
            _unknown("interrupted", as_json)
        except Exception as e:                              # noqa: BLE001 - a plugin never tracebacks
            from ..errors import PortscopeError
            _unknown(str(e) if isinstance(e, PortscopeError) else f"internal error: {type(e).__name__}: {e}",
                     as_json)
        return
    _show(json_out, netns, top, interval, samples, process, warn, crit, ignore)


def _check(netns, top, interval, samples, process, warn, crit, ignore, as_json) -> None:
    from ..errors import BadInput
    from ..pressure import truncate

    warn = DEFAULT_WARN if warn is None else warn
    crit = DEFAULT_CRIT if crit is None else crit
    if not (0 <= warn <= 100 and 0 <= crit <= 100) or warn > crit:
        raise BadInput(f"need 0 <= --warn ({warn:g}) <= --crit ({crit:g}) <= 100")
    ignore = _ignored(ignore)
    if top is not None and top < 0:
        raise BadInput(f"--top must be >= 0, got {top}")
    # every destination is judged; --top trims only what --json shows
    res = gather(netns_of(netns), top=None, process=process, interval=interval, samples=samples)
    from ..nat import with_nat
    res, _ = with_nat(res, netns_of(netns))       # conntrack / SNAT findings count too
    c = evaluate_check(res, warn, crit, ignore)
    if as_json:
        doc = truncate(res, top).to_json()
        doc["check"] = c.to_json()
        emit_json(doc)
    else:
        click.echo(c.line)
    raise SystemExit(c.code)


def _show(json_out, netns, top, interval, samples, process, warn, crit, ignore) -> None:
    from ..errors import BadInput

    given = [o for o, v in (("--warn", warn), ("--crit", crit)) if v is not None] + (["--ignore"] if ignore else [])
    if given:
        raise BadInput(f"{' and '.join(given)} appl{'ies' if len(given) == 1 else 'y'} only with --check "
                       f"(the monitoring-plugin mode)")
    res = gather(netns_of(netns), top=top, process=process, interval=interval, samples=samples)
    if want_json(json_out):
        emit_json(res.to_json())
        return
    r = res.range
    click.echo(f"Range {r.low}-{r.high} ({r.size} ports, {res.global_.reserved_in_range} reserved inside)"
               + (f", netns {res.netns}" if res.netns else "")
               + (f", backend {res.backend}" if verbose() else ""))
    render_global(res)
    if res.forecast:
        f = res.forecast
        click.echo(f"Forecast: {f['samples']} samples over {f['elapsed_s']:.1f} s, "
                   f"{f['new_connections']} new connections ({f['rate_per_s']:.1f}/s); "
                   f"TIME_WAIT {f['time_wait_seconds']} s, tcp_tw_reuse {f['tcp_tw_reuse']}")
    click.echo(f"Destinations ({res.destinations_total}):")
    render_destinations(res)
    if res.processes:
        click.echo("Processes (client sockets, distinct usable ports they hold):")
        for p in res.processes[:10]:
            click.echo(f"  {p.in_use:>7} sockets {p.ports:>6} ports  pid {p.pid if p.pid is not None else '?'}"
                       f"  {p.command or ''}")
    click.echo("Findings:")
    render_findings(res)
