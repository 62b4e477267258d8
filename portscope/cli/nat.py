"""`portscope nat`: conntrack fill and statistics, NAT rules, SNAT port use per
translated destination, ports NAT rules hold, findings. Logic: portscope.nat."""
from __future__ import annotations

from typing import TYPE_CHECKING

import click

from .common import (
    TOP,
    Number,
    emit_json,
    json_option,
    netns_of,
    netns_option,
    refuse_with_netns,
    verbose,
    want_json,
)

if TYPE_CHECKING:
    from ..nat import NatReport


@click.command("nat")
@click.option("--top", type=TOP, default=10, show_default=True,
              help="Show the N most used SNAT destinations (0: all).")
@click.option("--no-table", is_flag=True,
              help="Skip the conntrack table dump: statistics and rules only (no SNAT use).")
@click.option("--interval", type=Number(0, 60, lo_open=True, unit="seconds"), default=None, metavar="S",
              help="Read the statistics again after S seconds (at most 60): insert_failed/drop rising is a "
                   "warning, non-zero totals alone only information.")
@click.option("--all-netns", is_flag=True, help="Every network namespace on the host, labelled by "
              "namespace, container and pod (see `portscope namespaces`; not with --interval).")
@json_option
@netns_option
def nat(top, no_table, interval, all_netns, json_out, netns) -> None:
    """Connection tracking and NAT: the port exhaustion sockets do not show.

    \b
    Reads conntrack over ctnetlink (needs CAP_NET_ADMIN), the NAT rules from
    `iptables-save -t nat` and `nft -j list ruleset`, and counts the NAT ports in
    use per (proto, NAT IP, destination, port) against the NAT range's capacity.
    Examples:
      portscope nat
      portscope nat --netns pid:1234 --json --top 5
      portscope nat --all-netns
    """
    from ..nat import analyze

    if all_netns:
        _all(top or None, not no_table, interval, json_out, netns)
        return
    ns = netns_of(netns)
    rep = analyze(ns, dump=not no_table, interval=interval)
    n = top or None
    if want_json(json_out):
        emit_json(rep.to_json(top=n))
        return
    _render(rep, n)


def _all(top: int | None, dump: bool, interval, json_out, netns) -> None:
    from ..allnetns import who
    from ..errors import BadInput
    from ..nat.allnetns import nat_all
    from .render import warn_skipped

    refuse_with_netns(netns)
    if interval is not None:
        raise BadInput("--all-netns takes no --interval: watch one namespace's statistics with --netns")
    walk, doc = nat_all(dump=dump, top=top)
    warn_skipped(walk.skipped)
    if want_json(json_out):
        emit_json(doc)
        return
    quiet = [v for v in walk.visits if not v.value.present and not v.value.findings]
    for v in walk.visits:
        if v in quiet:
            continue
        click.echo(f"== {who(v.labels())}")
        _render(v.value, top)
        click.echo("")
    click.echo(f"{len(walk.visits)} namespace(s) read"
               + (f", {len(walk.skipped)} skipped" if walk.skipped else "")
               + (f"; {len(quiet)} without NAT rules, tracked connections or findings" if quiet else ""))


def _render(rep: NatReport, top: int | None) -> None:
    ct = rep.conntrack
    echo = click.echo
    if not ct.available:
        echo("conntrack: not loaded in this kernel (nothing is tracked or NATed here)")
    else:
        u = ct.utilization
        echo(f"conntrack: {ct.entries} of {ct.max} entries"
             + (f" ({u * 100:.1f}%)" if u is not None else "")
             + (f", {ct.buckets} buckets" if ct.buckets else "")
             + (f"  [{ct.source}]" if ct.source else ""))
        if ct.stats:
            echo("  " + " ".join(f"{k}={v}" for k, v in ct.stats.items()))
        if rep.delta is not None:
            echo(f"  in the last {rep.interval:g} s: " + " ".join(f"{k} +{v}" for k, v in rep.delta.items()
                                                                if v is not None))
    rs = rep.rules
    echo("")
    if rs.rules:
        echo(f"NAT rules ({len(rs.rules)}):")
        for r in rs.rules:
            flags = " ".join(f for f, on in (("random", r.random), ("random-fully", r.random_fully),
                                             ("persistent", r.persistent)) if on)
            ports = f"{r.ports[0]}-{r.ports[1]}" if r.ports else "default"
            echo(f"  {r.source:8} {r.table:10} {r.chain:18} {r.kind:10} {r.proto or 'any':5} ports {ports}"
                 + (f" to {r.to_addr}" if r.to_addr else "") + (f" [{flags}]" if flags else ""))
    else:
        echo("NAT rules: none")
    if rs.skipped:
        echo(f"  ({rs.skipped} rule line(s) skipped: could not be read)")
    echo("")
    if rep.entries_read is None:
        echo("SNAT use: not read (--no-table or conntrack absent)")
    elif rep.snat:
        shown = rep.snat if top is None else rep.snat[:top]
        echo(f"SNAT destinations ({len(rep.snat)}, {rep.entries_read} source-NATed conntrack entries):")
        echo(f"  {'proto':5} {'nat ip':>15} -> {'destination':<22} {'in use':>7} {'tw':>5} {'capacity':>8}  util  range")
        for d in shown:
            dst = f"[{d.dst}]:{d.dport}" if ":" in d.dst else f"{d.dst}:{d.dport}"
            echo(f"  {d.proto:5} {d.nat_ip:>15} -> {dst:<22} {d.in_use:>7} {d.time_wait:>5} {d.capacity:>8}"
                 f"  {d.utilization * 100:4.0f}%  {d.low}-{d.high} ({d.range_from})")
    else:
        echo(f"SNAT destinations: none ({rep.entries_read} source-NATed conntrack entries)")
    if rep.nat_ports:
        echo("")
        echo(f"Ports held by NAT rules ({len(rep.nat_ports)}):")
        for p in rep.nat_ports[:20]:
            echo(f"  {p.proto or 'any':4} {p.port:>5}  {p.kind} rule in chain {p.chain} ({p.source})"
                 + ("  in the ephemeral range" if p.in_ephemeral_range else "")
                 + ("  reserved" if p.reserved else ""))
        if len(rep.nat_ports) > 20:
            echo(f"  ... {len(rep.nat_ports) - 20} more")
    echo("")
    if rep.findings:
        for f in rep.findings:
            echo(f"{f['severity'].upper()}: [{f['id']}] {f['message']}")
            echo(f"  remedy: {f['remedy']}")
    else:
        echo("OK: no NAT findings")
    for note in ct.notes + rs.notes + rep.notes:
        # what is unknown is always said; how things were read only with -v
        if verbose() or "unknown" in note or "skipped" in note:
            echo(f"note: {note}", err=True)

