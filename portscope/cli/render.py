"""Text rendering shared by several commands (tables of destinations, findings, a change's
report). Commands import this and `common`, never each other."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import click

from ..findings import percent

# the pressure tables live in front.views (the fast front end prints them without click)
from ..front.views import render_destinations as render_destinations
from ..front.views import render_findings as render_findings
from ..front.views import render_global as render_global
from ..host._common import change_json
from .common import emit_json

if TYPE_CHECKING:
    from ..allnetns import Walk
    from ..egress import EgressResult
    from ..host import Plan, Result
    from ..nat import NatReport
    from ..observe.watch import Observation

Echo = Callable[[str], object]     # click.echo, or a collector in tests


def report_change(plan: Plan, result: Result | None, dry_run: bool, as_json: bool) -> None:
    """Shared by `range set` and `reserve add|remove`."""
    if as_json:
        emit_json(change_json(plan, result, dry_run))
        return
    commands = plan.commands()
    for w in plan.warnings:
        click.echo(f"portscope: warning: {w}", err=True)
    for n in plan.notes:
        click.echo(f"note: {n}")
    if dry_run:
        if commands:
            click.echo("Dry run; these commands would run:")
            for c in commands:
                click.echo(f"  {c}")
        return
    if result is None:
        return
    for s in plan.steps:
        click.echo(f"{s.key}: {s.old or '(empty)'} -> {result.read_back.get(s.key, '?') or '(empty)'} (read back)")
    if result.persisted:
        click.echo(f"Persisted in {result.persisted}")


# negative numbers must reach our own check (one clear line), not click's option parser


# ---- --all-netns and --egress ----

def warn_skipped(skipped: list[dict]) -> None:
    """One stderr line per namespace that vanished (or could not be entered) mid-scan."""
    for s in skipped:
        click.echo(f"portscope: warning: namespace {s['netns'] or s['netns_inode']} skipped: {s['reason']}", err=True)


def _labelled_findings(finds, echo=click.echo) -> None:
    from ..allnetns import who
    echo("Findings:")
    if not finds:
        echo("  none: nothing to fix")
    for f in finds:
        echo(f"  [{f['severity'].upper()}] {who(f)} {f['id']}: {f['message']}")
        echo(f"      fix: {f['remedy']}")


def render_report_all(walk: Walk, doc: dict, echo: Callable[..., Any] = click.echo) -> None:
    """`report --all-netns` as text: one line per namespace, then every finding."""
    from ..allnetns import who
    from ..check import status
    echo(f"portscope report --all-netns: {doc['status'].upper()} ({len(walk.visits)} namespaces"
         + (f", {len(walk.skipped)} skipped" if walk.skipped else "") + ")")
    echo("")
    for v in walk.visits:
        res, w = v.value, v.value.worst
        worst = (f"worst {w.proto} {w.label} {w.in_use}/{w.capacity} ({percent(w.utilization)})"
                 if w else "no outgoing connection in the range")
        echo(f"  {status(res).upper():8} {who(v.labels())}: {worst}; {len(res.findings)} finding(s)")
    echo("")
    _labelled_findings(doc["findings"], echo)


def render_pressure_all(walk: Walk, doc: dict, top: int | None, echo: Callable[..., Any] = click.echo) -> None:
    """`pressure --all-netns` as text: every destination with its namespace, then findings."""
    from ..allnetns import who
    dests = doc["destinations"]
    echo(f"Destinations across {len(walk.visits)} namespaces ({len(dests)}):")
    rows = [("NAMESPACE", "PROTO", "SOURCE -> DESTINATION", "IN USE", "TIME_WAIT", "CAPACITY", "USE")]
    for d in dests[:top] if top is not None else dests:
        dst = f"[{d['dst']}]" if ":" in d["dst"] else d["dst"]
        rows.append((who(d), d["proto"], f"{d['src']} -> {dst}:{d['dport']}", str(d["in_use"]),
                     str(d["time_wait"]), str(d["capacity"]), percent(d["utilization"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        echo("  " + "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    _labelled_findings(doc["findings"], echo)


def render_egress(res: EgressResult, echo: Callable[..., Any] = click.echo) -> None:
    """`pressure --egress` as text."""
    from ..egress import who
    b = res.budget
    echo(f"Egress through the NAT ({res.namespaces_read} namespaces): budget {b.per_destination} flows per "
         f"destination ({b.source}); closed flows held {b.hold_seconds:g} s")
    if not res.destinations:
        echo("  (no flow to a NAT-bound destination)")
    else:
        rows = [("PROTO", "DESTINATION", "FLOWS", "LIVE", "HELD", "BUDGET", "USE", "TOP SOURCES")]
        for d in res.destinations:
            dst = f"[{d.dst}]" if ":" in d.dst else d.dst
            srcs = ", ".join(f"{who(s)} {s.flows}" for s in d.top_sources[:3])
            rows.append((d.proto, f"{dst}:{d.dport}", str(d.flows), str(d.live), str(d.closed_held),
                         str(d.budget), percent(d.utilization), srcs))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        for r in rows:
            echo("  " + "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                 + "  " + r[-1])
    if res.others["destinations"]:
        echo(f"  ... and {res.others['destinations']} more destination(s) with {res.others['flows']} flow(s)")
    echo("Findings:")
    if not res.findings:
        echo("  none: every destination is under 80% of the budget")
    for f in res.findings:
        echo(f"  [{f.severity.upper()}] {f.id}: {f.message}")
        echo(f"      fix: {f.remedy}")


def render_nat_summary(rep: NatReport, top: int | None = None) -> None:
    """The NAT section of `portscope report` (its findings are listed with the others)."""
    echo = click.echo
    ct = rep.conntrack
    echo("NAT and conntrack:")
    if ct.available and ct.max:
        u = ct.utilization or 0.0
        st = ct.stats
        echo(f"  Conntrack         {ct.entries} of {ct.max} entries ({u * 100:.1f}%); insert_failed "
             f"{st.get('insert_failed')}, drop {st.get('drop')}, early_drop {st.get('early_drop')}")
    else:
        echo("  Conntrack         not loaded")
    kinds: dict[str, int] = {}
    for r in rep.rules.rules:
        kinds[r.kind] = kinds.get(r.kind, 0) + 1
    echo("  NAT rules         " + (", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "none"))
    for d in (rep.snat if top is None else rep.snat[:top]):
        dst = f"[{d.dst}]:{d.dport}" if ":" in d.dst else f"{d.dst}:{d.dport}"
        echo(f"  SNAT              {d.proto} {d.nat_ip} -> {dst}: {d.in_use} of {d.capacity} NAT ports "
             f"({d.utilization * 100:.1f}%), {d.time_wait} in TIME_WAIT")
    if rep.nat_ports:
        exposed = sum(1 for p in rep.nat_ports if p.in_ephemeral_range and not p.reserved)
        echo(f"  NAT-held ports    {len(rep.nat_ports)} ({exposed} in the ephemeral range, not reserved)")
    echo("  (details: portscope nat)")


def render_observed(obs: Observation, echo: Callable[..., Any] = click.echo) -> None:
    """The report's 'Observed' section."""
    from ..observe.watch import dest_label
    c = obs.counters
    echo("")
    echo(f"Observed ({obs.seconds:.1f} s, {'eBPF' if obs.backend == 'bpf' else 'kernel counters only'}):")
    if obs.backend == "bpf":
        if not obs.failures:
            echo("  no connect(), bind() or UDP send failed for want of a port")
        for f in obs.failures[:5]:
            echo(f"  {f.count:>7} {f.syscall}() {f.errno} pid {f.pid} ({f.comm}) netns {f.netns} -> {dest_label(f)}")
        if len(obs.failures) > 5:
            echo(f"  ... and {len(obs.failures) - 5} more (portscope watch)")
    echo(f"  TWRecycled +{c['TWRecycled']}  TCPTimeWaitOverflow +{c['TCPTimeWaitOverflow']}  "
         f"TWKilled +{c['TWKilled']}  TIME_WAIT {c['tw']} of tcp_max_tw_buckets {c['tcp_max_tw_buckets']}")
    for f in obs.findings:
        echo(f"  [{f.severity.upper()}] {f.id}: {f.message}")
        echo(f"      fix: {f.remedy}")
