"""`portscope reserve list|add|remove PORTS`: edit ip_local_reserved_ports without losing entries."""
from __future__ import annotations

import click

from .common import emit_json, json_option, netns_of, netns_option, want_json
from .render import report_change


def _list(netns, json_out) -> None:
    from ..host import host_facts

    f = host_facts(netns_of(netns))
    r = f.reserved
    in_range = r.count_in(f.ephemeral)
    if want_json(json_out):
        emit_json(f.reserved_json())
        return
    for s in f.reserved_sets:
        adm = f" (administered: {s.administered})" if s.administered else ""
        click.echo(f"Excluded {s.name}: {s.ports or 'none'}{adm}")
    if f.reserved_sets:
        return
    if not r:
        click.echo(f"No reserved ports. All {f.ephemeral.size:,} ports of {f.ephemeral} can be handed out.")
        return
    click.echo(f"Reserved: {r}")
    click.echo(f"  {len(r):,} port{'s' if len(r) != 1 else ''}, {in_range:,} inside the ephemeral range {f.ephemeral}; "
               f"{f.ephemeral.size - in_range:,} of its {f.ephemeral.size:,} ports remain for automatic use")


@click.group("reserve", invoke_without_command=True)
@json_option
@netns_option
@click.pass_context
def reserve(ctx, json_out, netns) -> None:
    """Ports the kernel never hands out automatically (Linux ip_local_reserved_ports).

    \b
    portscope reserve list
    portscope reserve add 8080,9000-9010 [--persist] [--dry-run]
    portscope reserve remove 9005 [--persist] [--dry-run]
    """
    ctx.ensure_object(dict)
    ctx.obj["reserve_json"] = json_out
    ctx.obj["reserve_netns"] = netns
    if ctx.invoked_subcommand is None:
        _list(netns, json_out)


@reserve.command("list")
@json_option
@netns_option
@click.pass_context
def list_cmd(ctx, json_out, netns) -> None:
    """Show the reserved ports and how many lie inside the ephemeral range."""
    obj = ctx.obj or {}
    _list(netns or obj.get("reserve_netns"), json_out or obj.get("reserve_json"))


def _change(ctx, op, ports, persist, dry_run, json_out, netns, protos=()):
    from ..settings import change_reserved

    obj = ctx.obj or {}
    plan, result = change_reserved(op, ports, netns=netns_of(netns or obj.get("reserve_netns")),
                                  dry_run=dry_run, persist=persist, protos=protos or None)
    as_json = want_json(json_out or obj.get("reserve_json"))
    report_change(plan, result, dry_run, as_json)
    if not as_json and result is not None:
        click.echo(f"Reserved now: {result.after.reserved or 'none'}")


def _options(f):
    for opt in (click.option("--proto", "protos", multiple=True, type=click.Choice(["tcp", "udp"]),
                             help="Windows: exclusions of this protocol only (default both)."),
                click.option("--persist", is_flag=True, help="Also write the list to a drop-in under /etc/sysctl.d."),
                click.option("--dry-run", is_flag=True, help="Print the exact commands; change nothing."),
                json_option, netns_option):
        f = opt(f)
    return f


@reserve.command("add", context_settings={"ignore_unknown_options": True})
@click.argument("ports")
@_options
@click.pass_context
def add(ctx, ports, protos, persist, dry_run, json_out, netns) -> None:
    """Add PORTS (e.g. 8080,9000-9010) to the reserved list, keeping what is there.

    On Windows: `netsh int ipv4|ipv6 add excludedportrange` per protocol.
    """
    _change(ctx, "add", ports, persist, dry_run, json_out, netns, protos)


@reserve.command("remove", context_settings={"ignore_unknown_options": True})
@click.argument("ports")
@_options
@click.pass_context
def remove(ctx, ports, protos, persist, dry_run, json_out, netns) -> None:
    """Remove PORTS from the reserved list, keeping the rest.

    On Windows only administered exclusions (marked `*`) can be removed.
    """
    _change(ctx, "remove", ports, persist, dry_run, json_out, netns, protos)
