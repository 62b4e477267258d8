"""`pressure --egress`: the node's flows per destination against a cloud NAT's budget.

The options are added to `pressure` by the `egress_options` decorator, so pressure's
own code only gains one line; with --egress the command runs here instead."""
from __future__ import annotations

import functools

import click

from .common import emit_json, want_json

CLOUDS = ("aws-nat-gateway", "azure-nat-gateway", "azure-lb", "gcp-cloud-nat")
_OPTIONS = [
    click.option("--egress", is_flag=True,
                 help="Node egress: flows per (proto, destination IP, port) across every namespace and "
                      "source address, against a NAT's per-destination budget (docs/egress.md)."),
    click.option("--nat-budget", type=int, default=None, metavar="N",
                 help="With --egress: flows one NAT address allows to one destination (or per VM for "
                      "azure-lb / gcp-cloud-nat); overrides the --cloud preset's number."),
    click.option("--cloud", type=click.Choice(CLOUDS), default=None,
                 help="With --egress: a provider's documented budget and hold time."),
    click.option("--nat-addresses", type=int, default=None, metavar="K",
                 help="With --egress: NAT public addresses (multiplies a per-address budget; default 1)."),
    click.option("--nat-hold", type=float, default=None, metavar="S",
                 help="With --egress: seconds a NAT keeps a closed TCP flow's port (default: the preset's "
                      "documented value, else 60, the node's own TIME_WAIT)."),
    click.option("--include-private", is_flag=True,
                 help="With --egress: count private (RFC 1918, ULA, 100.64/10) destinations too "
                      "(they usually stay inside the VPC, off the NAT)."),
]


def egress_options(f):
    """Add the --egress options to a command; with --egress, run `egress_command` instead."""
    @functools.wraps(f)
    def wrapper(*args, egress, nat_budget, cloud, nat_addresses, nat_hold, include_private, **kw):
        if egress:
            from ..errors import BadInput
            from .common import netns_of
            if kw.get("check") or kw.get("all_netns") or netns_of(kw.get("netns")) or kw.get("process"):
                raise BadInput("--egress reads every namespace by itself: no --netns, --all-netns, "
                               "--check or --process")
            return egress_command(kw.get("json_out"), kw.get("top"), kw.get("interval"), nat_budget,
                                  cloud, nat_addresses, nat_hold, include_private)
        given = [o for o, v in (("--nat-budget", nat_budget), ("--cloud", cloud),
                                ("--nat-addresses", nat_addresses), ("--nat-hold", nat_hold),
                                ("--include-private", include_private)) if v]
        if given:
            from ..errors import BadInput
            raise BadInput(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} only with --egress")
        return f(*args, **kw)
    for opt in reversed(_OPTIONS):
        wrapper = opt(wrapper)
    return wrapper


def egress_command(json_out, top, interval, nat_budget, cloud, nat_addresses, nat_hold, include_private):
    import sys

    from ..egress import budget, run
    from ..errors import BadInput, Unsupported
    if not sys.platform.startswith("linux"):
        raise Unsupported("--egress reads sock_diag and network namespaces (Linux)")
    if interval is not None and not (0 < interval <= 3600):
        raise BadInput(f"--interval must be in (0, 3600] seconds, got {interval:g}")
    b = budget(nat_budget, cloud, nat_addresses, nat_hold)
    res = run(b, top=top, include_private=include_private, interval=interval)
    if want_json(json_out):
        emit_json(res.to_json())
        return
    echo = click.echo
    for s in res.skipped:
        echo(f"portscope: warning: namespace {s['netns'] or s['netns_inode']} skipped: {s['reason']}", err=True)
    echo(f"Egress through the NAT ({res.namespaces_read} namespaces): budget {b.per_destination} flows per "
         f"destination ({b.source}); closed flows held {b.hold_seconds:g} s")
    if not res.destinations:
        echo("  (no flow to a NAT-bound destination)")
    rows = [("PROTO", "DESTINATION", "FLOWS", "LIVE", "HELD", "BUDGET", "USE", "TOP SOURCES")]
    for d in res.destinations:
        dst = f"[{d.dst}]" if ":" in d.dst else d.dst
        srcs = ", ".join(f"{_who(s)} {s.flows}" for s in d.top_sources[:3])
        rows.append((d.proto, f"{dst}:{d.dport}", str(d.flows), str(d.live), str(d.closed_held),
                     str(d.budget), f"{d.utilization * 100:.1f}%", srcs))
    if res.destinations:
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


def _who(s) -> str:
    from ..egress import _who as who
    return who(s)


_EXPORTER_OPTIONS = [
    click.option("--cloud", type=click.Choice(CLOUDS), default=None,
                 help="Also export node egress per destination against this provider's NAT budget "
                      "(portscope_egress_destination_flows / _budget_ratio; docs/egress.md)."),
    click.option("--nat-budget", type=int, default=None, metavar="N",
                 help="Also export node egress against this per-destination NAT budget (or override the "
                      "--cloud preset's number)."),
    click.option("--nat-addresses", type=int, default=None, metavar="K",
                 help="With --cloud / --nat-budget: NAT public addresses (default 1)."),
    click.option("--nat-hold", type=float, default=None, metavar="S",
                 help="With --cloud / --nat-budget: seconds a NAT keeps a closed TCP flow's port."),
]


def exporter_egress_options(f):
    """Add the NAT budget options to `exporter`; the Budget goes to egress_budget()."""
    @functools.wraps(f)
    def wrapper(*args, cloud, nat_budget, nat_addresses, nat_hold, **kw):
        ctx = click.get_current_context()
        b = None
        if cloud or nat_budget is not None:
            from ..egress import budget
            b = budget(nat_budget, cloud, nat_addresses, nat_hold)
        elif nat_addresses is not None or nat_hold is not None:
            from ..errors import BadInput
            raise BadInput("--nat-addresses and --nat-hold need --cloud or --nat-budget")
        ctx.ensure_object(dict)["egress_budget"] = b
        return f(*args, **kw)
    for opt in reversed(_EXPORTER_OPTIONS):
        wrapper = opt(wrapper)
    return wrapper


def egress_budget():
    """The exporter's NAT budget (None: no egress series)."""
    ctx = click.get_current_context(silent=True)
    return (ctx.obj or {}).get("egress_budget") if ctx else None
