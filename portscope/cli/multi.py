"""`--all-netns` for report, pressure and conns: one reading per network namespace of the
host, each labelled by namespace (its `ip netns` name, else inode:N; null for our own),
inode, container and pod. The per-namespace documents are exactly what `--netns SPEC`
prints for that namespace; flattened `destinations` / `findings` carry the labels."""
from __future__ import annotations

import sys

import click

from .common import emit_json

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
ALL_NETNS_HELP = ("Every network namespace on the host (see `portscope namespaces`), each row and "
                  "finding labelled by namespace, container and pod.")


def refuse_with_netns(netns) -> None:
    from ..errors import BadInput
    from .common import netns_of
    if netns_of(netns):
        raise BadInput("--all-netns cannot be combined with --netns: it already reads every namespace")


def _who(labels: dict) -> str:
    parts = [labels["netns"] or "(ours)"]
    if labels["container"]:
        parts.append(f"{labels['container']['runtime']}:{labels['container']['id'][:12]}")
    if labels["pod"]:
        parts.append(f"pod {labels['pod']['uid']}")
    return " ".join(parts)


def _status(findings) -> str:
    sev = {f.severity for f in findings}
    return "critical" if "critical" in sev else "warning" if "warning" in sev else "ok"


def _flat(walk, top=None):
    dests, finds = [], []
    for v in walk.visits:
        lab = v.labels()
        dests += [{**d.to_json(forecast=v.value.forecast is not None), **lab} for d in v.value.destinations]
        finds += [{**f.to_json(), **lab} for f in v.value.findings]
    dests.sort(key=lambda d: -d["utilization"])
    finds.sort(key=lambda f: SEVERITY_ORDER.get(f["severity"], 3))
    return dests, finds


def _walk(reader):
    from ..allnetns import each
    walk = each(reader)
    for s in walk.skipped:
        click.echo(f"portscope: warning: namespace {s['netns'] or s['netns_inode']} skipped: {s['reason']}", err=True)
    return walk


def report_all(top: int, as_json: bool) -> None:
    """`report --all-netns`."""
    from .pressure import dest_name, gather
    from .report import report_json

    walk = _walk(lambda spec: gather(spec, top=top))
    dests, finds = _flat(walk)
    status = _status([f for v in walk.visits for f in v.value.findings])
    if as_json:
        emit_json({
            "all_netns": True,
            "status": status,
            "namespaces": [{**v.labels(), "report": report_json(v.value)} for v in walk.visits],
            "destinations": dests,
            "findings": finds,
            "skipped": walk.skipped,
            "warnings": walk.discovery.warnings,
        })
        return
    echo = click.echo
    echo(f"portscope report --all-netns: {status.upper()} ({len(walk.visits)} namespaces"
         + (f", {len(walk.skipped)} skipped" if walk.skipped else "") + ")")
    echo("")
    for v in walk.visits:
        res, w = v.value, v.value.worst
        worst = (f"worst {w.proto} {dest_name(w)} {w.in_use}/{w.capacity} ({w.utilization * 100:.1f}%)"
                 if w else "no outgoing connection in the range")
        echo(f"  {_status(res.findings).upper():8} {_who(v.labels())}: {worst}; "
             f"{len(res.findings)} finding(s)")
    echo("")
    echo("Findings:")
    if not finds:
        echo("  none: nothing to fix")
    for f in finds:
        echo(f"  [{f['severity'].upper()}] {_who(f)} {f['id']}: {f['message']}")
        echo(f"      fix: {f['remedy']}")


def pressure_all(top, process: bool, as_json: bool) -> None:
    """`pressure --all-netns` (no --check / --interval: those judge one namespace)."""
    from .pressure import dest_name, gather

    walk = _walk(lambda spec: gather(spec, top=top, process=process))
    dests, finds = _flat(walk)
    if as_json:
        emit_json({
            "all_netns": True,
            "namespaces": [{**v.labels(), "pressure": _pressure_json(v.value, process)} for v in walk.visits],
            "destinations": dests,
            "findings": finds,
            "skipped": walk.skipped,
            "warnings": walk.discovery.warnings,
        })
        return
    echo = click.echo
    echo(f"Destinations across {len(walk.visits)} namespaces ({len(dests)}):")
    rows = [("NAMESPACE", "PROTO", "SOURCE -> DESTINATION", "IN USE", "TIME_WAIT", "CAPACITY", "USE")]
    for d in dests[:top] if top is not None else dests:
        rows.append((_who(d), d["proto"], dest_name(_D(d)), str(d["in_use"]), str(d["time_wait"]),
                     str(d["capacity"]), f"{d['utilization'] * 100:.1f}%"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        echo("  " + "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    echo("Findings:")
    if not finds:
        echo("  none: nothing to fix")
    for f in finds:
        echo(f"  [{f['severity'].upper()}] {_who(f)} {f['id']}: {f['message']}")
        echo(f"      fix: {f['remedy']}")


def _pressure_json(res, process: bool) -> dict:
    doc = res.to_json()
    if process:
        doc.setdefault("processes", [])     # docs/json.md: present with --process, even if empty
    return doc


class _D:
    def __init__(self, d: dict):
        self.src, self.dst, self.dport = d["src"], d["dst"], d["dport"]


def conns_all(read, select, as_json: bool, count: bool, process: bool, limit) -> None:
    """`conns --all-netns`: read(spec) -> table, select(table) -> row indices or None."""
    from ..sockets import filters

    walk = _walk(lambda spec: read(spec))
    if count:
        per = []
        for v in walk.visits:
            rows = select(v.value)
            per.append({**v.labels(), "backend": v.value.backend, "warnings": v.value.warnings,
                        **filters.counts(v.value, rows)})
        if as_json:
            emit_json({"all_netns": True, "total": sum(p["total"] for p in per), "namespaces": per,
                       "skipped": walk.skipped, "warnings": walk.discovery.warnings})
        else:
            for p in per:
                click.echo(f"{_who(p)}: {p['total']} socket(s) "
                           + ", ".join(f"{k} {n}" for k, n in sorted(p["by_state"].items())))
        return
    out = sys.stdout
    left = limit
    if as_json:
        import json
        dumps = json.dumps
        head = {"backend": walk.visits[0].value.backend if walk.visits else None, "netns": None, "all_netns": True, "warnings": walk.discovery.warnings,
                "skipped": walk.skipped}
        out.write(dumps(head)[:-1] + ', "sockets": [\n')
        first = True
        for v in walk.visits:
            lab = v.labels()
            rows = select(v.value)
            idx = list(rows if rows is not None else range(len(v.value)))
            if left is not None:
                idx, left = idx[:left], left - len(idx[:left])
            for i in idx:
                out.write(("" if first else ",\n") + dumps({**v.value.row(i), **lab}))
                first = False
        out.write("\n]}\n")
        return
    from .conns import _print_table
    for v in walk.visits:
        rows = select(v.value)
        idx = list(rows if rows is not None else range(len(v.value)))
        if left is not None:
            idx, left = idx[:left], left - len(idx[:left])
        out.write(f"# {_who(v.labels())} (inode {v.ns.inode}, backend {v.value.backend})\n")
        _print_table(v.value, idx, process)
