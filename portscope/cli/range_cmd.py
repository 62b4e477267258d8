"""`portscope range` (show) and `portscope range set LOW HIGH` (change safely)."""
from __future__ import annotations

import click

from .common import emit_json, json_option, netns_of, netns_option, verbose, want_json
from .render import report_change

TW_REUSE = {0: "off", 1: "on", 2: "loopback only"}


def _show(facts) -> None:
    d = facts.to_json()
    e = facts.ephemeral
    tag = "this OS's default" if d["is_os_default"] else f"default is {facts.os_default}"
    where = f" in netns {facts.netns}" if facts.netns else ""
    click.echo(f"Ephemeral range{where}: {e.low}-{e.high} ({e.size:,} ports; {tag})")
    click.echo(f"  {d['comparison']}")
    for r in facts.ranges:
        if len(facts.ranges) > 1 or r.range != e:
            click.echo(f"  {r.name:<9} {r.range.low}-{r.range.high} ({r.range.size:,} ports)")
    if facts.os == "linux" and e.same_parity:
        click.echo("  note: LOW and HIGH have the same parity; the kernel prefers different parity")
    if facts.reserved:
        click.echo(f"Reserved ports: {facts.reserved} ({len(facts.reserved):,} port{'s' if len(facts.reserved) != 1 else ''}, "
                   f"{d['reserved_in_range']:,} inside the range; {d['usable_ephemeral']:,} usable)")
    else:
        click.echo("Reserved ports: none")
    for s in facts.reserved_sets:
        click.echo(f"  excluded {s.name:<9} {s.ports or 'none'}")
    u = facts.unprivileged_port_start
    if facts.os == "windows" or u == 0:
        click.echo("Privileged ports: none (any user may bind any port)")
    elif facts.os == "linux":
        click.echo(f"Privileged ports: below {u} (binding needs root or CAP_NET_BIND_SERVICE)")
    elif facts.wildcard_bind_unprivileged:
        click.echo(f"Privileged ports: {facts.privileged_low}-{u - 1} on a specific address (binding needs root); "
                   "any user may bind them on the wildcard address (macOS 10.14+)")
    else:
        click.echo(f"Privileged ports: {facts.privileged_low}-{u - 1} (binding needs root)")
    if facts.tcp_tw_reuse is not None:
        delay = f", reuse after {facts.tcp_tw_reuse_delay_ms} ms" if facts.tcp_tw_reuse_delay_ms is not None else ""
        click.echo(f"TIME_WAIT: {facts.time_wait_seconds} s (fixed); tcp_tw_reuse={facts.tcp_tw_reuse} "
                   f"({TW_REUSE.get(facts.tcp_tw_reuse, '?')}){delay}")
    elif facts.os != "linux":
        click.echo(f"TIME_WAIT: {facts.time_wait_seconds} s ({facts.time_wait_source})")
    if verbose():
        for k, v in facts.sources.items():
            click.echo(f"  source {k}: {v}")


@click.group("range", invoke_without_command=True)
@json_option
@netns_option
@click.pass_context
def range_group(ctx, json_out, netns) -> None:
    """Show the ephemeral port range(s), reserved ports and the privileged boundary.

    \b
    portscope range                       show
    portscope range set LOW HIGH          change (validated, read back, rolled back on failure)
    """
    ctx.ensure_object(dict)
    ctx.obj["range_json"] = json_out
    ctx.obj["range_netns"] = netns
    if ctx.invoked_subcommand is not None:
        return
    from ..host import host_facts

    f = host_facts(netns_of(netns))
    if want_json(json_out):
        emit_json(f.to_json())
    else:
        _show(f)


@range_group.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("low", metavar="LOW")
@click.argument("high", metavar="HIGH")
@click.option("--dry-run", is_flag=True, help="Check everything and print the exact commands; change nothing.")
@click.option("--persist", is_flag=True, help="Also write a drop-in under /etc/sysctl.d (atomically).")
@click.option("--force", is_flag=True, help="Shrink the range even below the ephemeral ports in use now, or below 2 usable ports.")
@click.option("--reserve-listeners", is_flag=True,
              help="Reserve listening ports that would fall inside the new range (done first).")
@click.option("--proto", "protos", multiple=True, type=click.Choice(["tcp", "udp"]),
              help="Windows: change only this protocol's range (default both).")
@json_option
@netns_option
@click.pass_context
def range_set(ctx, low, high, dry_run, persist, force, reserve_listeners, protos, json_out, netns) -> None:
    """Change the ephemeral range to LOW..HIGH (inclusive).

    Checks first: integers, 1 <= LOW <= HIGH <= 65535, LOW at or above the
    privileged boundary; warns on equal parity and on listening servers that
    would fall inside the new range unreserved; refuses to shrink below the
    ephemeral ports in use now unless --force. Reads the value back; any
    failure puts every setting back as it was.
    """
    from ..settings import set_range as do

    obj = ctx.obj or {}
    ns = netns_of(netns or obj.get("range_netns"))
    plan, result = do(low, high, netns=ns, dry_run=dry_run, persist=persist, force=force,
                      reserve_listeners=reserve_listeners, protos=protos or None)
    as_json = want_json(json_out or obj.get("range_json"))
    report_change(plan, result, dry_run, as_json)
    if not as_json and result is not None:
        e = result.after.ephemeral
        click.echo(f"Ephemeral range is now {e.low}-{e.high} ({e.size:,} ports).")
