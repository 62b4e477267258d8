"""Text rendering shared by several commands (tables of destinations, findings, a change's
report). Commands import this and `common`, never each other."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import click

from ..findings import percent
from ..host._common import change_json
from .common import emit_json

if TYPE_CHECKING:
    from ..host import Plan, Result
    from ..pressure import PressureResult

Echo = Callable[[str], object]     # click.echo, or a collector in tests


def render_destinations(res: PressureResult, echo: Echo = click.echo) -> None:
    """The destinations table (with rate, sustainable rate and ETA columns after a forecast)."""
    fc = res.forecast is not None
    if not res.destinations:
        echo("  (no outgoing connections using the ephemeral range)")
        return
    rows = [("PROTO", "SOURCE -> DESTINATION", "IN USE", "TIME_WAIT", "CAPACITY", "USE")
            + (("RATE/s", "MAX/s", "EXHAUSTED IN") if fc else ())]
    for d in res.destinations:
        row: tuple[str, ...] = (d.proto, d.label, str(d.in_use), str(d.time_wait), str(d.capacity), percent(d.utilization))
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


def render_global(res: PressureResult, echo: Echo = click.echo) -> None:
    """One line: global use of the pool and what holds it."""
    g = res.global_
    echo(f"Global: {g.in_use} of {g.capacity} usable ports in use ({percent(g.utilization)}): "
         f"{g.listeners} listener, {g.bind_held} bind-held, {g.udp} UDP, "
         f"{g.connect} connect() sockets ({g.time_wait} in TIME_WAIT)")


def render_findings(res: PressureResult, echo: Echo = click.echo) -> None:
    """Each finding with its severity, message and fix."""
    if not res.findings:
        echo("  none: nothing to fix")
        return
    for f in res.findings:
        echo(f"  [{f.severity.upper()}] {f.id}: {f.message}")
        echo(f"      fix: {f.remedy}")


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
