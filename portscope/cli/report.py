"""`portscope report`: the one-screen answer to "am I running out of ports, why, and what fixes it"."""
from __future__ import annotations

import click

from .common import emit_json, json_option, netns_of, netns_option, verbose, want_json

TOP = 5
TW_REUSE = {0: "off", 1: "on", 2: "loopback only"}


def report_json(res) -> dict:
    """Range facts, headline, findings and top destinations (plus everything pressure has)."""
    g = res.global_
    w = res.worst
    return {
        "os": res.os,
        "netns": res.netns,
        "backend": res.backend,
        "range": {"low": res.range.low, "high": res.range.high, "size": res.range.size,
                  "same_parity": res.range.same_parity},
        "reserved": str(res.reserved),
        "reserved_in_range": g.reserved_in_range,
        "unprivileged_port_start": res.unprivileged_port_start,
        "tcp_tw_reuse": res.tcp_tw_reuse,
        "time_wait_seconds": res.time_wait_seconds,
        "headline": {
            "worst_destination": w.to_json() if w else None,
            "global": g.to_json(),
            "status": _status(res),
        },
        "findings": [f.to_json() for f in res.findings],
        "destinations": [d.to_json() for d in res.destinations],
        "destinations_total": res.destinations_total,
        "global": g.to_json(),
    }


def _status(res) -> str:
    sev = {f.severity for f in res.findings}
    return "critical" if "critical" in sev else "warning" if "warning" in sev else "ok"


@click.command("report")
@json_option
@netns_option
@click.option("--top", "top", type=int, default=TOP, show_default=True, metavar="N",
              help="Top destinations to show.")
@click.option("--observe", "observe", metavar="S", default=None,
              help="Also watch S seconds for failures and TIME_WAIT counters (see `portscope watch`).")
def report(json_out, netns, top, observe):
    """One-screen health report: range facts, worst destination, findings with fixes."""
    from ..findings import max_rate
    from .pressure import dest_name, gather, render_destinations, render_findings

    observed = None
    if observe is not None:
        from ..observe import report as obs_report
        observed = obs_report.run(observe, netns_of(netns))
    res = gather(netns_of(netns), top=top)
    if want_json(json_out):
        emit_json({**report_json(res), **({"observed": observed.to_json()} if observed else {})})
        return
    g, r = res.global_, res.range
    echo = click.echo
    where = f" (netns {res.netns})" if res.netns else ""
    echo(f"portscope report{where}: {_status(res).upper()}")
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
        echo(f"  Worst destination {w.proto} {dest_name(w)}: {w.in_use} of {w.capacity} ports "
             f"({w.utilization * 100:.1f}%), {w.time_wait} in TIME_WAIT")
    else:
        echo("  Worst destination none: no outgoing connection uses the ephemeral range")
    echo(f"  Global use        {g.in_use} of {g.capacity} ports ({g.utilization * 100:.1f}%) held by "
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
