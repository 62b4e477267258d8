"""`portscope simulate`: the kernel's port allocator at scale (logic in portscope.simulate)."""
from __future__ import annotations

import click

from ..simulate.config import ALGOS, DEFAULTS, typed
from .common import SEED, Number, emit_json, json_option, netns_of, nonblank, want_json


@click.command("simulate")
@click.option("--range", "range_", metavar="LOW-HIGH", help="ip_local_port_range to model [32768-60999].")
@click.option("--reserved", metavar="LIST", help="ip_local_reserved_ports, e.g. 40010,40100-40199.")
@click.option("--listeners", metavar="LIST", help="Ports held by bind()/listeners inside the range.")
@click.option("--from-host", is_flag=True, help="Take range and reserved ports from this host "
              "(or from `portscope --netns NAME`).")
@click.option("--algorithm", type=click.Choice(ALGOS), help="Allocator model [linux].")
@click.option("--destinations", type=Number(1, 1_000_000, whole=True), help="Destination ip:port pairs [1].")
@click.option("--sources", type=Number(1, 1_000_000, whole=True), help="Source IPs, connections spread over them [1]. linux-bind "
              "models bind(IP, 0) on each source's own address (a port can repeat across IPs); "
              "for bind(0.0.0.0, 0) use 1.")
@click.option("--connects", type=Number(1, None, whole=True), metavar="N",
              help="N >= 1. Without --rate: N connects in a row, none closed. With --rate: stop after N.")
@click.option("--rate", metavar="R/s", help="New connections per second over all pairs (finite, above 0).")
@click.option("--arrivals", type=click.Choice(["fixed", "poisson"]), help="Arrival process [fixed] (with --rate).")
@click.option("--lifetime", metavar="DIST", help="Connection lifetime (with --rate): SECONDS, exp:MEAN, "
              "uniform:A-B, lognormal:MEDIAN,SIGMA or inf; numbers finite and >= 0 [0].")
@click.option("--duration", type=Number(0, None, lo_open=True, unit="seconds"), metavar="S", help="Simulated seconds (with --rate). --plan without it "
              "plans for steady state and picks its own check span.")
@click.option("--time-wait", type=Number(0, 3600, unit="seconds"), metavar="S", help="TIME_WAIT length, 0..3600 [60, as the kernel] "
              "(with --rate).")
@click.option("--tw-reuse", type=Number(0, 2, whole=True), help="net.ipv4.tcp_tw_reuse: 0, 1, 2 [0] (with --rate).")
@click.option("--tw-reuse-delay", type=Number(0, None, whole=True), metavar="MS", help="tcp_tw_reuse_delay in ms [1000] (with --rate).")
@click.option("--loopback", is_flag=True, default=None, help="Destinations are loopback (tw_reuse=2 applies; "
              "with --rate).")
@click.option("--socket-range", metavar="LOW-HIGH", help="IP_LOCAL_PORT_RANGE on each socket (linux).")
@click.option("--udp-hash-size", type=Number(whole=True), metavar="N", help="UDP hash table entries (dmesg) for --algorithm "
              "udp: a power of two from 128 to 65536, the sizes the kernel allows [16384].")
@click.option("--seed", type=SEED, help="Random seed, a non-negative whole number [0]; same seed, same run.")
@click.option("--interval", type=Number(0, None, lo_open=True, unit="seconds"), metavar="S", help="Time-series sampling interval.")
@click.option("--config", "config", metavar="FILE", callback=nonblank, help="Workload from a YAML or TOML file; options win.")
@click.option("--plot", "plot_path", metavar="OUT.png", callback=nonblank, help="Draw the time series and search steps.")
@click.option("--plan", "want_plan", is_flag=True, help="Closed-form capacity plan, checked by simulation. "
              "Needs --rate or --connects; without --duration it plans for steady state.")
@click.option("--timeseries", is_flag=True, help="Include the time series (JSON) / print it (text).")
@json_option
def simulate(range_, reserved, listeners, from_host, algorithm, destinations, sources, connects, rate,
             arrivals, lifetime, duration, time_wait, tw_reuse, tw_reuse_delay, loopback, socket_range,
             udp_hash_size, seed, interval, config, plot_path, want_plan, timeseries, json_out) -> None:
    """Simulate the kernel's port allocator: exhaustion, search steps, parity, predictability.

    \b
    portscope simulate --range 40000-40039 --connects 50
    portscope simulate --rate 500/s --lifetime exp:2 --duration 120 --plot out.png
    portscope simulate --rate 5000/s --destinations 4 --plan
    """
    from ..simulate import config as cfgmod
    from ..simulate.workload import workload as build

    given = {"range": range_, "reserved": reserved, "listeners": listeners, "algorithm": algorithm,
             "destinations": destinations, "sources": sources, "connects": connects, "rate": rate,
             "arrivals": arrivals, "lifetime": lifetime, "duration": duration, "time_wait": time_wait,
             "tw_reuse": tw_reuse, "tw_reuse_delay": tw_reuse_delay, "loopback": loopback,
             "socket_range": socket_range, "udp_hash_size": udp_hash_size, "seed": seed,
             "interval": interval}
    opts = dict(DEFAULTS)
    if from_host:
        from .. import host_facts
        f = host_facts(netns_of(None))
        opts.update(range=str(f.ephemeral), reserved=str(f.reserved))
    if config:
        opts.update(cfgmod.load(config))
    opts.update({k: v for k, v in given.items() if v is not None})
    w = build(**typed(opts))
    if plot_path:
        from ..simulate.plot import check_path
        check_path(plot_path)       # before the run, which can take seconds

    if want_plan:
        return _plan(w, json_out)

    from ..simulate.engine import run
    from .progress import Progress
    with Progress() as bar:
        r = run(w, timeseries=bool(timeseries or plot_path), progress=lambda s: bar.update("run", s))
    if plot_path:
        from ..simulate.plot import plot
        plot(r, plot_path)
    if want_json(json_out):
        emit_json(r.to_json(timeseries=timeseries))
        return
    _print_result(r, timeseries)
    if plot_path:
        click.echo(f"plot written to {plot_path}")


def _capacity_text(cap, sources: int) -> str:
    """`10-11 ports per (source IP, destination)`, `40 ports for the whole host`, ..."""
    n = f"{cap} ports"
    if cap.per == "pair":
        return f"{n} per (source IP, destination)"
    if cap.per == "source" and sources > 1:
        total = f"{cap.min * sources}" + (f"-{cap.max * sources}" if cap.max != cap.min else "")
        return f"{n} per source IP, {total} over {sources} source IPs (bind(0) on each IP's own address)"
    if cap.per == "source":
        return f"{n} for the whole host (bind(0) holds a port for every destination)"
    return f"{n} for the whole host (UDP autobind holds a port for every destination and source IP)"


def _print_result(r, timeseries: bool) -> None:
    s = r.settings
    ss = r.search_steps
    mode = (f"{s['connects']} connects in a row, none closed" if s["rate"] is None else
            f"{s['rate']:g}/s {s['arrivals']}, lifetime {s['lifetime']}, TIME_WAIT {s['time_wait']:g}s, "
            f"tw_reuse {s['tw_reuse']}")
    click.echo(f"algorithm {s['algorithm']}  range {s['range']}  reserved {s['reserved'] or '-'}  "
               f"{s['destinations']} destination(s) x {s['sources']} source(s)")
    click.echo(f"workload  {mode}")
    click.echo(f"capacity  {_capacity_text(r.capacity, s['sources'])}")
    if r.capacity.note:
        click.echo(f"          {r.capacity.note}")
    click.echo(f"connects  {r.connects}   failures {r.failures}   first failure "
               + ("none" if r.first_failure_index is None else
                  f"#{r.first_failure_index} at {r.first_failure_time:g}s"))
    click.echo(f"ports     used max {r.ports_used_max}   TIME_WAIT taken over {r.tw_reused}")
    click.echo(f"search    steps per connect: mean {ss['mean']}  p99 {ss['p99']}  max {ss['max']}")
    if r.parity:
        p = r.parity
        line = f"parity    even {p['even']}  odd {p['odd']}  "
        if r.first_pass_parity is None:
            line += "(no parity preference)"
        else:
            first, other = ("even", "odd") if r.first_pass_parity == 0 else ("odd", "even")
            line += f"first pass {first}: {p['before_other_parity']} before the first {other} port"
        click.echo(line)
    pr = r.predictability
    if pr and pr.get("same_destination"):
        g, d = pr.get("global") or {}, pr["same_destination"]
        click.echo(f"guessing  previous port + most common step: {d['rate']:.1%} hit (same destination, "
                   f"step {d['step']})" + (f", {g['rate']:.1%} (any destination)" if g else ""))
    if timeseries and r.series:
        t = r.series
        click.echo("t_s\testablished\ttime_wait\tports_in_use\tfailures")
        for row in zip(t.t, t.established, t.time_wait, t.ports_in_use, t.failures):
            click.echo("\t".join(f"{x:g}" if isinstance(x, float) else str(x) for x in row))


def _plan(w, json_out) -> None:
    from ..simulate.plan import MAX_CHECK_CONNECTS, check, plan
    from ..simulate.space import Capacity
    from .progress import Progress
    p = plan(w)
    with Progress() as bar:     # the check runs up to three bounded simulations: seconds, not silence
        chk = check(w, p, progress=bar.update)
    if want_json(json_out):
        emit_json({"plan": p.to_json(), "simulation": chk, "settings": w.settings()})
        return
    cap = Capacity(**p.capacity)
    click.echo(f"capacity   {_capacity_text(cap, w.sources)}")
    if cap.note:
        click.echo(f"           {cap.note}")
    units, unit1 = ({"pair": "pair(s)", "source": "source IP(s)", "host": "host"}[cap.per],
                    {"pair": "pair", "source": "source IP", "host": "host"}[cap.per])
    if p.rate is not None:
        click.echo(f"demand     {p.rate:g}/s over {w.pools} {units} = {p.rate_per_pair:g}/s each, each port held "
                   f"{p.hold_s:g}s (lifetime + TIME_WAIT) -> {p.need_per_pair:g} ports needed ({p.utilization:.0%})")
        click.echo(f"limit      {p.max_rate_per_pair:g} new connections/s per {unit1} at this range")
    else:
        click.echo(f"demand     {p.need_per_pair:g} ports per {unit1} ({p.utilization:.0%})")
    click.echo("verdict    " + _verdict(p, w))
    impossible = "  (more than ports 1024-65535 hold)" if p.range_size_needed > 64512 else ""
    click.echo(f"needed     range of {p.range_size_needed} ports with {w.sources} source IP(s){impossible}"
               + (f", or {p.sources_needed} source IP(s) at this range" if p.sources_needed else ""))
    if p.reuse:
        ru = p.reuse
        click.echo(f"tw_reuse=1 ports held {ru['hold_s']:g}s -> {ru['need_per_pair']:g} needed "
                   f"({ru['utilization']:.0%}): " + ("fits" if ru["fits"] else "still exhausts"))
    if chk["simulated_s"] is None:
        span = "in a row"
    elif chk["duration_default"]:
        span = (f"over {chk['simulated_s']:g}s (no --duration: the check ran 1.5 x the hold time or 1.2 x the "
                f"latest onset, at least 1 s, at most {MAX_CHECK_CONNECTS:,} connects)")
    else:
        span = f"over {chk['simulated_s']:g}s"
    click.echo(f"simulated  {chk['connects']} connects {span}: {chk['failures']} failures"
               + (f", first at {chk['first_failure_time']:g}s" if chk["first_failure_time"] is not None else "")
               + ("  (agrees with the plan)" if chk["agrees"] else "  (DISAGREES with the plan)"))
    if "with_sources_needed" in chk:
        c = chk["with_sources_needed"]
        click.echo(f"simulated  with {c['sources']} source IPs: {c['failures']} failures"
                   + ("  (agrees)" if c["agrees"] else "  (DISAGREES)"))
    if "with_tw_reuse" in chk:
        c = chk["with_tw_reuse"]
        click.echo(f"simulated  with tw_reuse=1: {c['failures']} failures" + ("  (agrees)" if c["agrees"] else "  (DISAGREES)"))


def _verdict(p, w) -> str:
    if p.fits:
        return "fits" + ("" if w.in_a_row or w.duration is not None else " at steady state")
    lo, hi = p.onset_s, p.onset_s_max
    if lo is None:  # --duration ends the run before the first failure
        return (f"fits within the {w.duration:g}s run, but not at steady state: {p.need_per_pair:g} ports "
                f"needed of {p.capacity_per_pair}")
    if hi is None:
        return (f"may exhaust, first failure after about {lo:g}s if at all (the capacity band: it depends "
                "on the search's start offsets)")
    if hi != lo:
        return f"exhausts, first failure between about {lo:g}s and {hi:g}s (the capacity band)"
    return f"exhausts, first failure after about {lo:g}s"
