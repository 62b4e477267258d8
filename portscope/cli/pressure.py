"""`portscope pressure`: ephemeral-port use per destination, forecast, findings; --check plugin mode."""
from __future__ import annotations

import click

from .common import emit_json, json_option, netns_of, netns_option, verbose, want_json

# monitoring-plugin exit codes (Nagios / Icinga / Sensu)
OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATUS = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
MAX_INTERVAL = 3600.0
MAX_SAMPLES = 1000


def gather(netns=None, *, top=None, process=False, interval=None, samples=None):
    """Host facts + snapshot(s) -> PressureResult (the whole data path of pressure/report)."""
    from ..errors import BadInput, NotPermitted, SystemReadError
    from ..host import facts as host_facts
    from ..pressure import analyze, read_sockets

    if top is not None and top < 0:
        raise BadInput(f"--top must be >= 0, got {top}")
    if samples is not None and interval is None:
        raise BadInput("--samples needs --interval")
    if interval is not None and not (0 < interval <= MAX_INTERVAL):
        raise BadInput(f"--interval must be in (0, {MAX_INTERVAL:.0f}] seconds, got {interval:g}")
    if samples is not None and not (2 <= samples <= MAX_SAMPLES):
        raise BadInput(f"--samples must be in 2..{MAX_SAMPLES}, got {samples}")
    facts = host_facts(netns)

    def take():
        # only sockets whose local port is in the range: the kernel filters (as `ss` does)
        return read_sockets(facts, netns, owners=process)

    try:
        if interval is None:
            return analyze(facts, take(), top=top, process=process)
        from ..forecast import forecast, sample
        tables = sample(take, interval, samples or 2)
        return forecast(facts, tables, top=top, process=process, interval=interval)
    except PermissionError as e:
        raise NotPermitted(f"cannot read the socket table: {e}")
    except OSError as e:
        raise SystemReadError(f"cannot read the socket table: {e}")


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def dest_name(d) -> str:
    dst = f"[{d.dst}]" if ":" in d.dst else d.dst
    return f"{d.src} -> {dst}:{d.dport}"


def render_destinations(res, echo=click.echo) -> None:
    fc = res.forecast is not None
    if not res.destinations:
        echo("  (no outgoing connections using the ephemeral range)")
        return
    rows = [("PROTO", "SOURCE -> DESTINATION", "IN USE", "TIME_WAIT", "CAPACITY", "USE")
            + (("RATE/s", "MAX/s", "EXHAUSTED IN") if fc else ())]
    for d in res.destinations:
        row = (d.proto, dest_name(d), str(d.in_use), str(d.time_wait), str(d.capacity), _pct(d.utilization))
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


def render_global(res, echo=click.echo) -> None:
    g = res.global_
    echo(f"Global: {g.in_use} of {g.capacity} usable ports in use ({_pct(g.utilization)}): "
         f"{g.listeners} listener, {g.bind_held} bind-held, {g.udp} UDP, "
         f"{g.connect} connect() sockets ({g.time_wait} in TIME_WAIT)")


def render_findings(res, echo=click.echo) -> None:
    if not res.findings:
        echo("  none: nothing to fix")
        return
    for f in res.findings:
        echo(f"  [{f.severity.upper()}] {f.id}: {f.message}")
        echo(f"      fix: {f.remedy}")


def check_value(res) -> tuple[float, str]:
    """The number --check compares: the worst of any destination and of the exclusive pools."""
    g = res.global_
    cands = []
    if res.worst:
        cands.append((res.worst.utilization, f"{res.worst.proto} {dest_name(res.worst)} "
                      f"{res.worst.in_use}/{res.worst.capacity}"))
    if g.capacity:
        cands.append((g.tcp_exclusive / g.capacity, f"TCP ports held for every destination {g.tcp_exclusive}/{g.capacity}"))
        cands.append((g.udp_exclusive / g.capacity, f"UDP ports {g.udp_exclusive}/{g.capacity}"))
    else:
        cands.append((1.0, "no usable ephemeral port"))
    v, what = max(cands, key=lambda c: c[0])
    return (v, what) if v > 0 else (0.0, "no ephemeral port in use")


def check_line(res, warn: float, crit: float) -> tuple[int, str]:
    v, what = check_value(res)
    pct = v * 100
    code = CRITICAL if pct >= crit else WARNING if pct >= warn else OK
    heading = [d for d in res.destinations if d.seconds_to_exhaustion is not None]
    if heading and code == OK:
        # with --interval: a destination on course to run out is worth a look before it crosses --warn
        code = WARNING
        d = min(heading, key=lambda d: d.seconds_to_exhaustion)
        what += (f"; {d.proto} {dest_name(d)} runs out in {d.seconds_to_exhaustion:.0f} s "
                 f"at {d.rate_per_s:.1f}/s")
    g = res.global_
    perf = [f"worst_utilization={pct:.2f}%;{warn:g};{crit:g};0;100",
            f"global_in_use={g.in_use};;;0;{g.capacity}",
            f"global_utilization={g.utilization * 100:.2f}%;;;0;100",
            f"time_wait={g.time_wait};;;0;", f"bind_held={g.bind_held};;;0;", f"udp={g.udp};;;0;",
            f"destinations={res.destinations_total};;;0;"]
    if res.forecast is not None:
        perf.append(f"new_connections_rate={res.forecast['rate_per_s']:.2f};;;0;")
        if heading:
            perf.append(f"seconds_to_exhaustion={min(d.seconds_to_exhaustion for d in heading):.0f}s;;;0;")
    return code, (f"PORTSCOPE {STATUS[code]} - worst {pct:.1f}% ({what}); "
                  f"{len(res.findings)} finding(s) | " + " ".join(perf))


@click.command("pressure")
@json_option
@netns_option
@click.option("--top", "top", type=int, default=20, show_default=True, metavar="N",
              help="Show the N worst destinations (the rest are summed).")
@click.option("--interval", type=float, default=None, metavar="S",
              help="Sample S seconds apart and forecast rates and time to exhaustion.")
@click.option("--samples", type=int, default=None, metavar="K",
              help="Number of samples with --interval (default 2).")
@click.option("--process", is_flag=True, help="Attribute use to processes (slower: reads /proc/*/fd).")
@click.option("--check", is_flag=True, help="Monitoring-plugin mode: one status line, exit 0/1/2/3.")
@click.option("--warn", type=float, default=80.0, show_default=True, metavar="P",
              help="--check: WARNING at P percent use.")
@click.option("--crit", type=float, default=95.0, show_default=True, metavar="P",
              help="--check: CRITICAL at P percent use.")
def pressure(json_out, netns, top, interval, samples, process, check, warn, crit):
    """Ephemeral-port use per destination (src, dst, dport) against its real capacity.

    \b
    Capacity per destination = ports of the range - reserved - ports held by
    bind() (listeners, bind-before-connect, UDP hold theirs for everyone).
    TIME_WAIT counts as used. --interval adds the rate of new connections, the
    sustainable rate and the time to exhaustion.
    """
    from ..errors import BadInput, PortscopeError

    netns = netns_of(netns)
    if check:
        try:
            if not (0 <= warn <= 100 and 0 <= crit <= 100) or warn > crit:
                raise BadInput(f"need 0 <= --warn ({warn:g}) <= --crit ({crit:g}) <= 100")
            res = gather(netns, top=top, process=process, interval=interval, samples=samples)
        except PortscopeError as e:
            click.echo(f"PORTSCOPE UNKNOWN - {e}")
            raise SystemExit(UNKNOWN)
        code, line = check_line(res, warn, crit)
        click.echo(line)
        raise SystemExit(code)

    res = gather(netns, top=top, process=process, interval=interval, samples=samples)
    if want_json(json_out):
        emit_json(res.to_json())
        return
    r = res.range
    click.echo(f"Range {r.low}-{r.high} ({r.size} ports, {res.global_.reserved_in_range} reserved inside)"
               + (f", netns {res.netns}" if res.netns else "")
               + (f", backend {res.backend}" if verbose() else ""))
    render_global(res)
    if res.forecast:
        f = res.forecast
        click.echo(f"Forecast: {f['samples']} samples over {f['elapsed_s']:.1f} s, "
                   f"{f['new_connections']} new connections ({f['rate_per_s']:.1f}/s); "
                   f"TIME_WAIT {f['time_wait_seconds']} s, tcp_tw_reuse {f['tcp_tw_reuse']}")
    click.echo(f"Destinations ({res.destinations_total}):")
    render_destinations(res)
    if res.processes:
        click.echo("Processes:")
        for p in res.processes[:10]:
            click.echo(f"  {p.in_use:>7}  pid {p.pid if p.pid is not None else '?'}  {p.command or ''}")
    click.echo("Findings:")
    render_findings(res)
