"""`portscope report`: the one-screen answer to "am I running out of ports, why, and what fixes it"."""
from __future__ import annotations

import click

from .common import TOP as TOP_N
from .common import emit_json, json_option, netns_of, netns_option, nonblank, verbose, want_json
from .render import render_destinations, render_findings

TOP = 5
TW_REUSE = {0: "off", 1: "on", 2: "loopback only"}


@click.command("report")
@json_option
@netns_option
@click.option("--top", "top", type=TOP_N, default=TOP, show_default=True, metavar="N",
              help="Top destinations to show.")
@click.option("--html", "html_file", metavar="FILE", type=click.Path(dir_okay=False), callback=nonblank,
              help="Also write the report as one self-contained HTML page (the exporter's web view, "
                   "data embedded, with process attribution) to FILE (docs/web.md).")
@click.option("--observe", "observe", metavar="S", default=None,
              help="Also watch S seconds for failures and TIME_WAIT counters (see `portscope watch`).")
def report(json_out, netns, top, html_file, observe) -> None:
    """One-screen health report: range facts, worst destination, findings with fixes."""
    from ..check import status
    from ..datapath import measure
    from ..findings import max_rate, percent
    from ..report import report_json

    if html_file:
        from ..web.report import check_target
        check_target(html_file)                 # a bad path fails before the socket read
    observed = None
    if observe is not None:
        from ..observe import report as obs_report
        observed = obs_report.run(observe, netns_of(netns))
        if observed.bpf_note and observed.backend == "counters":
            click.echo(f"portscope: {observed.bpf_note}; observed kernel counters only", err=True)
    # the page names the processes behind the use (a file for a ticket is worth the /proc walk)
    res = measure(netns_of(netns), top=top, process=bool(html_file))
    if html_file:
        from ..web.report import write_html
        write_html(res, html_file)
    if want_json(json_out):
        emit_json({**report_json(res), **({"observed": observed.to_json()} if observed else {})})
        return
    g, r = res.global_, res.range
    echo = click.echo
    where = f" (netns {res.netns})" if res.netns else ""
    echo(f"portscope report{where}: {status(res).upper()}")
    if observed is not None and obs_report.headline(observed):
        echo(f"  {obs_report.headline(observed)}")
    echo("")
    reuse = TW_REUSE.get(res.tcp_tw_reuse, str(res.tcp_tw_reuse)) if res.tcp_tw_reuse is not None else "n/a"
    parity = " (ends of equal parity)" if r.size > 1 and r.same_parity else ""
    echo(f"  Ephemeral range   {r.low}-{r.high}  {r.size} ports{parity}")
    echo(f"  Reserved          {str(res.reserved) or 'none'}  ({g.reserved_in_range} inside the range)")
    echo(f"  Privileged below  {res.unprivileged_port_start}")
    if res.os == "linux":
        echo(f"  tcp_tw_reuse      {res.tcp_tw_reuse} ({reuse}); TIME_WAIT lasts {res.time_wait_seconds} s")
    else:
        echo(f"  TIME_WAIT         {res.time_wait_seconds} s")
    rate, basis = max_rate(res)          # the same words as the range-small finding
    echo(f"  Per destination   at most {rate} new connections/s without TIME_WAIT reuse ({basis})")
    echo("")
    w = res.worst
    if w:
        echo(f"  Worst destination {w.proto} {w.label}: {w.in_use} of {w.capacity} ports "
             f"({percent(w.utilization)}), {w.time_wait} in TIME_WAIT")
    else:
        echo("  Worst destination none: no outgoing connection uses the ephemeral range")
    echo(f"  Global use        {g.in_use} of {g.capacity} ports ({percent(g.utilization)}) held by "
         f"{g.connect} connect() sockets ({g.time_wait} in TIME_WAIT), {g.listeners} listener(s), "
         f"{g.bind_held} bind-held, {g.udp} UDP")
    echo("")
    echo("Findings:")
    render_findings(res)
    if observed is not None:
        obs_report.render(observed, echo)
    echo("")
    echo(f"Top destinations ({min(len(res.destinations), top)} of {res.destinations_total}):")
    render_destinations(res)
    if verbose():
        echo(f"\n(backend {res.backend})")
