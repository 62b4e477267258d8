"""`portscope range` (show) and `portscope range set LOW HIGH` (change safely)."""
from __future__ import annotations

import click

from ..front.views import range_show
from .common import json_option, netns_of, netns_option, verbose, want_json
from .render import report_change


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
    range_show(netns_of(netns), want_json(json_out), verbose())


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
