"""`portscope watch`: connect()/bind()/UDP sends the kernel refused for want of a port, as
they happen (eBPF), next to the TIME_WAIT counters. Logic lives in portscope.observe."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Callable

import click

if TYPE_CHECKING:
    from rich.console import Group

    from ..observe.watch import Observation

from ..observe.watch import dest_label
from .common import INTERVAL, emit_json, json_option, netns_of, netns_option, want_json
from .terminal import Keys

DEFAULT_SECONDS = 10.0      # the window without a tty and without --seconds
SHOWN = 20


def render_text(obs: "Observation", echo: "Callable[[str], None]" = click.echo) -> None:
    """The one-shot summary."""
    where = f"netns {obs.netns}" if obs.netns else "all namespaces"
    echo(f"portscope watch: {obs.seconds:.1f} s, backend {obs.backend} "
         f"({'failures of ' + where if obs.backend == 'bpf' else 'kernel counters only'})")
    if obs.backend == "bpf":
        echo("")
        if not obs.failures:
            echo("  no connect(), bind() or UDP send failed for want of a port")
        else:
            echo(f"  {'SYSCALL':<8} {'ERRNO':<14} {'COUNT':>7}  {'PID':>7} {'COMM':<16} {'NETNS':<11} DESTINATION")
            for f in obs.failures[:SHOWN]:
                echo(f"  {f.syscall:<8} {f.errno:<14} {f.count:>7}  {f.pid:>7} {f.comm:<16} {f.netns:<11} {dest_label(f)}")
            if len(obs.failures) > SHOWN:
                echo(f"  ... and {len(obs.failures) - SHOWN} more (--json has every row)")
    c = obs.counters
    echo("")
    echo(f"  Counters ({'netns ' + obs.netns if obs.netns else 'this namespace'}): "
         f"TWRecycled +{c['TWRecycled']}  TCPTimeWaitOverflow +{c['TCPTimeWaitOverflow']}  "
         f"TWKilled +{c['TWKilled']}  TIME_WAIT {c['tw']} of tcp_max_tw_buckets {c['tcp_max_tw_buckets']}")
    echo("")
    if obs.findings:
        echo("Findings:")
        for f in obs.findings:
            echo(f"  [{f.severity.upper()}] {f.id}: {f.message}")
            echo(f"      fix: {f.remedy}")
    else:
        echo("Findings: none")


def render_live(obs: "Observation", rates: dict, *, interval: float, note: str | None) -> "Group":
    """One frame of the live view: cumulative failures since start, rate over the last refresh."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text
    where = f"netns {obs.netns}" if obs.netns else "all namespaces"
    head = Text.assemble(("portscope watch", "bold"), f"  {where}  backend {obs.backend}  "
                         f"{obs.seconds:.0f} s  ", (f"{sum(f.count for f in obs.failures)} failures",
                                                    "bold red" if obs.failures else "green"))
    t = Table(box=None, pad_edge=False, header_style="bold", padding=(0, 1))
    for col, right in (("SYSCALL", False), ("ERRNO", False), ("COUNT", True), ("RATE/s", True),
                       ("PID", True), ("COMM", False), ("NETNS", False), ("DESTINATION", False)):
        t.add_column(col, justify="right" if right else "left", no_wrap=True)
    from ..observe.watch import failure_key
    for f in obs.failures[:SHOWN]:
        r = rates.get(failure_key(f), 0) / interval
        t.add_row(f.syscall, f.errno, str(f.count), f"{r:.1f}", str(f.pid), f.comm, str(f.netns), dest_label(f))
    c = obs.counters
    parts: list = [head, t]
    if not obs.failures:
        parts.append(Text("  (no failures so far)" if obs.backend == "bpf" else f"  ({note})"))
    parts.append(Text(f"TWRecycled +{c['TWRecycled']}  TCPTimeWaitOverflow +{c['TCPTimeWaitOverflow']}  "
                      f"TWKilled +{c['TWKilled']}  TIME_WAIT {c['tw']}/{c['tcp_max_tw_buckets']}"))
    for f in obs.findings[:3]:
        parts.append(Text(f"[{f.severity.upper()}] {f.id}: {f.message}", no_wrap=True, overflow="ellipsis",
                          style="red" if f.severity == "critical" else "yellow"))
    parts.append(Text(f"refresh {interval:g} s · q or Ctrl-C quits", style="dim"))
    return Group(*parts)


@click.command("watch")
@click.option("--seconds", type=str, default=None, metavar="S",
              help=f"Watch for S seconds and print one summary (default without a tty: {DEFAULT_SECONDS:g}).")
@click.option("--interval", type=INTERVAL, default=1.0, show_default=True,
              help="Seconds between refreshes of the live view.")
@click.option("--bpf/--no-bpf", "use_bpf", default=None,
              help="Require the eBPF failure counter (exit 3/4 if it cannot load) or do not load it. "
                   "Default: use it when it loads, else the counters alone.")
@click.option("--all-netns", is_flag=True,
              help="Every network namespace on the host: failures and counters labelled by namespace, "
                   "container and pod (see `portscope namespaces`); one summary after the window, no live view.")
@netns_option
@json_option
def watch(seconds, interval, use_bpf, all_netns, netns, json_out) -> None:
    """Failures for want of a port (EADDRNOTAVAIL, EADDRINUSE, UDP EAGAIN), as they happen.

    Counts failed connect(), bind(), and UDP sendto()/sendmsg()/connect() per process,
    namespace and destination with eBPF, next to the TIME_WAIT counters (TWRecycled,
    TCPTimeWaitOverflow, TWKilled, tw). On a tty without --seconds: a live view. Failures
    are every namespace's unless --netns names one; counters are the namespace's
    (--all-netns: every namespace's, each labelled).
    """
    from ..errors import BadInput
    from ..observe.watch import Watcher, check_seconds, cli_error, describe

    secs = check_seconds(seconds) if seconds is not None else None
    if not 0.1 <= interval <= 3600:
        raise BadInput(f"--interval must be in 0.1..3600 seconds, got {interval:g}")
    as_json = want_json(json_out)
    live = secs is None and not as_json and sys.stdout.isatty()
    if all_netns:
        _all(secs or DEFAULT_SECONDS, use_bpf, netns, as_json)
        return
    netns = netns_of(netns)
    with Watcher(netns, False if use_bpf is False else None) as w:
        if w.load_error is not None and not use_bpf:
            click.echo(f"portscope: {describe(w.load_error)}; showing kernel counters only", err=True)
        if live:
            _live(w, interval)
        else:
            obs: Observation | None
            try:
                obs = w.window(secs or DEFAULT_SECONDS)
            except KeyboardInterrupt as e:      # Ctrl-C ends the window early: show it
                obs = getattr(e, "observation", None)
                if obs is None:                 # before the window began: plain interruption
                    raise
            if as_json:
                emit_json(obs.to_json())
            else:
                render_text(obs)
        if use_bpf and w.load_error is not None:
            raise cli_error(w.load_error)


def _all(secs: float, use_bpf, netns, as_json: bool) -> None:
    from ..allnetns import who
    from ..observe.allnetns import watch_all
    from ..observe.watch import Watcher, cli_error, describe
    from .common import refuse_with_netns
    from .render import warn_skipped

    refuse_with_netns(netns)
    with Watcher(None, False if use_bpf is False else None) as w:
        if w.load_error is not None and not use_bpf:
            click.echo(f"portscope: {describe(w.load_error)}; showing kernel counters only", err=True)
        if use_bpf and w.load_error is not None:
            raise cli_error(w.load_error)
        walk, doc = watch_all(w, secs)
    warn_skipped(walk.skipped)
    if as_json:
        emit_json(doc)
        return
    echo = click.echo
    echo(f"portscope watch --all-netns: {doc['seconds']:.1f} s, backend {doc['backend']}, "
         f"{len(walk.visits)} namespaces" + (f" ({len(walk.skipped)} skipped)" if walk.skipped else ""))
    echo("")
    rows = doc["failures"]
    if doc["backend"] != "bpf":
        echo("  failures not counted (no eBPF counter): kernel counters only")
    elif not rows:
        echo("  no connect(), bind() or UDP send failed for want of a port")
    else:
        echo(f"  {'SYSCALL':<8} {'ERRNO':<14} {'COUNT':>7}  {'PID':>7} {'COMM':<16} DESTINATION  NAMESPACE")
        for r in rows[:SHOWN]:
            dst = "-" if r["dst"] is None else (f"[{r['dst']}]:{r['dport']}" if ":" in r["dst"]
                                                else f"{r['dst']}:{r['dport']}")
            echo(f"  {r['syscall']:<8} {r['errno']:<14} {r['count']:>7}  {r['pid']:>7} {r['comm']:<16} {dst}  {who(r)}")
        if len(rows) > SHOWN:
            echo(f"  ... and {len(rows) - SHOWN} more (--json has every row)")
    echo("")
    moved = [v for v in walk.visits if any(v.value.counters[k] for k in ("TWRecycled", "TCPTimeWaitOverflow",
                                                                         "TWKilled"))]
    echo(f"  Counters: {len(moved)} namespace(s) with TWRecycled/TCPTimeWaitOverflow/TWKilled rising"
         + (":" if moved else ""))
    for v in moved:
        c = v.value.counters
        echo(f"    {who(v.labels())}: TWRecycled +{c['TWRecycled']}  TCPTimeWaitOverflow "
             f"+{c['TCPTimeWaitOverflow']}  TWKilled +{c['TWKilled']}  TIME_WAIT {c['tw']} of "
             f"{c['tcp_max_tw_buckets']}")
    echo("")
    if doc["findings"]:
        echo("Findings:")
        for f in doc["findings"]:
            echo(f"  [{f['severity'].upper()}] {who(f)} {f['id']}: {f['message']}")
            echo(f"      fix: {f['remedy']}")
    else:
        echo("Findings: none")


def _live(w, interval: float) -> None:
    from rich.console import Console
    from rich.live import Live

    from ..observe.watch import failure_key
    console = Console()
    start = w.snapshot()
    prev: dict = {}
    try:
        with Keys() as keys, Live(console=console, auto_refresh=False, screen=True) as live:
            while True:
                obs = w.observe(start, w.snapshot())
                now = {failure_key(f): f.count for f in obs.failures}
                rates = {k: v - prev.get(k, 0) for k, v in now.items()}
                prev = now
                live.update(render_live(obs, rates, interval=interval, note=w.bpf_note), refresh=True)
                if keys.wait_quit(interval):
                    return
    except KeyboardInterrupt:
        pass
