"""`portscope top`: the pressure view, refreshed live, with a trend per destination.

Each refresh runs the same data path as `portscope pressure` (host facts + socket snapshot ->
pressure.analyze). `Trend` remembers the last few `in_use` values of every destination so the
view can show a sparkline (scaled to the destination's capacity: a full bar is exhaustion)
and the change since the previous refresh. q or Ctrl-C leaves; --iterations stops by itself.
"""
from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from rich.console import Group

    from ..pressure import PressureResult

from ..trend import SPARKS, Trend, TrendPoint, sparkline  # noqa: F401 - SPARKS re-exported for callers
from .common import INTERVAL, Number, json_option, netns_of, netns_option, want_json
from .terminal import Keys

SHOWN = 12                   # of which the sparkline shows the latest
MIN_INTERVAL, MAX_INTERVAL = INTERVAL.lo, INTERVAL.hi


def _delta(p: TrendPoint) -> str:
    if p.delta is None:
        return "new"
    return f"{p.delta:+d}" if p.delta else "0"


def render(res: PressureResult, trend: dict, *, netns: str | None, interval: float, iteration: int,
           iterations: int | None, top_n: int, width: int | None = None) -> Group:
    """The rich renderable of one refresh. In a terminal narrower than the table, whole
    columns are left out from the right (TREND, RATE/s, ...): the destination and its
    use stay readable, never cut to "PR…" or "28…"."""
    from rich.console import Group, RenderableType
    from rich.table import Table
    from rich.text import Text

    g = res.global_
    where = f"netns {netns}" if netns else "this host"
    head = Text.assemble(
        ("portscope top", "bold"), f"  {where}  range {res.range} ({res.range.size} ports",
        f", reserved {res.reserved}" if res.reserved else "", ")  ",
        (f"global {g.in_use}/{g.capacity} in use ({g.utilization:.1%})",
         _style(g.utilization)),
        f"  TIME_WAIT {g.time_wait}  bind-held {g.bind_held}  UDP {g.udp}  listeners {g.listeners}")
    t = Table(box=None, pad_edge=False, header_style="bold", padding=(0, 1))
    names = [d.label for d in res.destinations[:top_n]]
    heads = ("PROTO", "SOURCE -> DESTINATION", "IN USE", "CAP", "USE", "TW", "Δ", "RATE/s", "TREND")
    rows = []
    for d, name in zip(res.destinations[:top_n], names):
        p = trend.get(d.key) or TrendPoint((d.in_use,), None, None)
        rows.append((d.proto, name, str(d.in_use), str(d.capacity),
                     Text(f"{d.utilization:.0%}", style=_style(d.utilization)), str(d.time_wait),
                     _delta(p), "-" if p.rate_per_s is None else f"{p.rate_per_s:.1f}",
                     Text(sparkline(p.history[-SHOWN:], d.capacity), style=_style(d.utilization))))
    natural = [max([len(h)] + [len(str(r[i])) for r in rows]) for i, h in enumerate(heads)]
    keep = len(heads)
    if width is not None:
        # columns are separated by 2 blanks (padding 1 on each side, none at the edges)
        while keep > 2 and sum(natural[:keep]) + 2 * (keep - 1) > width:
            keep -= 1
    for i, h in enumerate(heads[:keep]):
        t.add_column(h, justify="left" if i < 2 or h == "TREND" else "right", no_wrap=True,
                     min_width=natural[i], overflow="crop" if h == "TREND" else "ellipsis")
    for r in rows:
        t.add_row(*r[:keep])
    parts: list[RenderableType] = [head, t]
    if not res.destinations:
        parts.append(Text("  (no outgoing connections using the ephemeral range)"))
    rest = len(res.destinations) - top_n
    if rest > 0:
        parts.append(Text(f"  ... and {rest} more destination(s)"))
    for f in res.findings[:3]:
        # one line each: the full message and remedy are in `portscope pressure`
        parts.append(Text(f"[{f.severity.upper()}] {f.id}: {f.message}", no_wrap=True,
                          overflow="ellipsis", style="red" if f.severity == "critical"
                          else "yellow" if f.severity == "warning" else ""))
    of = f"/{iterations}" if iterations else ""
    parts.append(Text(f"refresh {interval:g} s · #{iteration}{of} · q or Ctrl-C quits", style="dim"))
    return Group(*parts)


def _style(u: float) -> str:
    return "bold red" if u >= 0.95 else "yellow" if u >= 0.80 else "green"


@click.command("top")
@click.option("--interval", type=INTERVAL, default=2.0, show_default=True, help="Seconds between refreshes.")
@click.option("--top", "top_n", type=Number(1, 1_000_000, whole=True), default=15, show_default=True, help="Destinations shown.")
@click.option("--iterations", "-n", type=Number(1, None, whole=True), default=None, help="Stop after N refreshes.")
@netns_option
@json_option
def top(interval, top_n, iterations, netns, json_out) -> None:
    """Live view of ephemeral-port pressure per destination, with a trend.

    With --json, prints one JSON object per refresh (JSON Lines): the
    `portscope pressure --json` document plus `iteration`, `time` and, per
    destination, `delta` and `history`.
    """
    from ..datapath import measure
    from ..errors import BadInput

    if not MIN_INTERVAL <= interval <= MAX_INTERVAL:
        raise BadInput(f"--interval must be in {MIN_INTERVAL}..{MAX_INTERVAL:.0f} seconds, got {interval:g}")
    if top_n < 1:
        raise BadInput(f"--top must be at least 1, got {top_n}")
    if iterations is not None and iterations < 1:
        raise BadInput(f"--iterations must be at least 1, got {iterations}")
    netns = netns_of(netns)
    trend = Trend()
    as_json = want_json(json_out)

    def refresh(i):
        res = measure(netns)
        return res, trend.update(res.destinations)

    # q ends with 0; Ctrl-C reaches main(), which says "interrupted" and exits 130 as
    # every command does (README's exit codes): a script can tell the two apart
    if as_json:
        _json_loop(refresh, interval, iterations, top_n)
    else:
        _live_loop(refresh, interval, iterations, netns, top_n)


def _json_loop(refresh, interval, iterations, top_n) -> None:
    import json

    from ..pressure import truncate
    i = 0
    while True:
        i += 1
        res, tr = refresh(i)
        res = truncate(res, top_n)      # the trend keeps every destination; the document, top-N
        doc = res.to_json()
        for dj, d in zip(doc["destinations"], res.destinations):
            p = tr[d.key]
            dj["delta"], dj["history"] = p.delta, list(p.history)
            dj["trend_rate_per_s"] = None if p.rate_per_s is None else round(p.rate_per_s, 3)
        doc["iteration"], doc["time"] = i, round(time.time(), 3)
        sys.stdout.write(json.dumps(doc) + "\n")
        sys.stdout.flush()
        if iterations and i >= iterations:
            return
        time.sleep(interval)


def _live_loop(refresh, interval, iterations, netns, top_n) -> None:
    from rich.console import Console
    from rich.live import Live

    console = Console()

    def frames(show):
        with Keys() as keys:
            i = 0
            while True:
                i += 1
                res, tr = refresh(i)
                show(render(res, tr, netns=netns, interval=interval, iteration=i,
                            iterations=iterations, top_n=top_n, width=console.width))
                if iterations and i >= iterations:
                    return
                if keys.wait_quit(interval):
                    return

    if not console.is_terminal:
        # piped or redirected: rich.live would only print the last frame; print every one
        def show(r) -> None:
            console.print(r)
            console.line()
        frames(show)
        return
    with Live(console=console, auto_refresh=False, screen=True) as live:
        frames(lambda r: live.update(r, refresh=True))
