"""`portscope exporter`: Prometheus /metrics over HTTP(S), or a node_exporter textfile."""
from __future__ import annotations

import click

from .common import (
    INTERVAL,
    Number,
    check_netns,
    egress_budget,
    emit_json,
    exporter_egress_options,
    json_option,
    netns_of,
    nonblank,
    verbose,
    want_json,
)

MAX_TOP = 1000
MIN_INTERVAL, MAX_INTERVAL = 0.1, 86400.0


@click.command("exporter")
@exporter_egress_options
@click.option("--listen", default="127.0.0.1:9917", show_default=True, metavar="ADDR:PORT",
              help="Where to serve /metrics ([ADDR]:PORT for IPv6; :PORT for every IPv4 address).")
@click.option("--web-config", "web_config", metavar="FILE", type=click.Path(dir_okay=False), callback=nonblank,
              help="TLS and basic auth, in the Prometheus exporter-toolkit's web-config format.")
@click.option("--top", default=20, show_default=True, type=Number(0, MAX_TOP, whole=True), metavar="N",
              help="Per-destination series for the N busiest destinations; the rest are summed (dst=\"other\").")
@click.option("--textfile", metavar="PATH", type=click.Path(dir_okay=False), callback=nonblank,
              help="Instead of serving, write the metrics to PATH (atomically) every --interval seconds.")
@click.option("--interval", default=15.0, show_default=True, type=INTERVAL, metavar="S",
              help="Seconds between textfile writes.")
@click.option("--once", is_flag=True, help="With --textfile: write once and exit; exit 5 (3 if permission "
              "was denied) when the file could not be written, so cron or a timer notices.")
@click.option("--netns", "netns", multiple=True, metavar="NAME|pid:PID", callback=check_netns,
              help="Report this network namespace (repeatable; each under its own netns label).")
@click.option("--all-netns", is_flag=True,
              help="Report our own namespace (netns=\"\") and every other network namespace of the host "
                   "(processes' and bind mounts', see `portscope namespaces`), listed at each scrape "
                   "(not with --netns).")
@click.option("--bpf/--no-bpf", "use_bpf", default=False, show_default=True,
              help="Also export failures for want of a port, counted by eBPF (docs/observe.md); exit 3/4 if "
                   "the counter cannot load. Not with --json (one collection counts nothing).")
@json_option
def exporter(listen, web_config, top, textfile, interval, once, netns, all_netns, use_bpf, json_out) -> None:
    """Export ephemeral-port pressure as Prometheus metrics (docs/exporter.md).

    \b
    Serves http://127.0.0.1:9917/metrics by default. Each scrape takes one socket
    snapshot per namespace; concurrent scrapes share it. --json prints one
    collection as JSON and exits.
    """
    import logging
    import sys

    from ..errors import BadInput

    if not 0 <= top <= MAX_TOP:
        raise BadInput(f"--top must be in 0..{MAX_TOP}, got {top}")
    if not MIN_INTERVAL <= interval <= MAX_INTERVAL:
        raise BadInput(f"--interval must be in {MIN_INTERVAL:g}..{MAX_INTERVAL:g} seconds, got {interval:g}")
    if once and not textfile:
        raise BadInput("--once needs --textfile")
    if web_config and (textfile or want_json(json_out)):
        raise BadInput("--web-config applies to the HTTP server only, not to --textfile or --json")
    outer = netns_of(None)              # `portscope --netns X exporter`
    if all_netns and (netns or outer):
        raise BadInput("--all-netns cannot be combined with --netns: it already reports our own "
                       "namespace and every one under /run/netns")
    if outer and netns and set(netns) != {outer}:
        raise BadInput(f"two namespace selections given: --netns {outer} before the command and "
                       f"--netns {' --netns '.join(netns)} after it")
    targets = [None] if all_netns else list(dict.fromkeys(netns)) or [outer]
    from .. import netns as _netns
    for t in targets:
        if t:
            _netns.resolve(t)      # a typo fails now, one line; later disappearance is counted

    logging.basicConfig(stream=sys.stderr, level=logging.INFO if verbose() else logging.WARNING,
                        format="portscope exporter: %(levelname)s: %(message)s")
    from ..exporter import Exporter, PortscopeCollector, run_textfile

    collector = PortscopeCollector(targets, all_netns=all_netns, top=top, egress=egress_budget())
    exp = Exporter(collector)
    from ..observe.metrics import add_to
    observed = add_to(exp, targets, all_netns=all_netns, bpf=bool(use_bpf) and not want_json(json_out))
    if want_json(json_out):
        from prometheus_client.parser import text_string_to_metric_families
        fams = text_string_to_metric_families(exp.render().decode())
        out: dict = {}
        for f in fams:   # keyed by sample name: counters keep their _total, as in /metrics
            for s in f.samples:
                out.setdefault(s.name, []).append({"labels": s.labels, "value": s.value})
        emit_json(out)
        return
    if textfile:
        import os
        d = os.path.dirname(os.path.abspath(textfile))
        if not os.path.isdir(d):
            raise BadInput(f"--textfile {textfile}: directory {d} does not exist")
        # Ctrl-C reaches main(): "portscope: interrupted", exit 130, as for every command
        try:
            run_textfile(exp, textfile, interval, count=1 if once else None, strict=once)
        finally:
            observed.close()
        return

    from ..httpserver import WebConfig, load, serve
    cfg = load(web_config) if web_config else WebConfig()
    _limit_malloc_arenas()
    server = serve(listen, exp.routes(), cfg, access_log=verbose())
    addr, port = server.server_address[:2]
    host = addr.decode() if isinstance(addr, bytes) else str(addr)   # AF_INET/AF_INET6: already str
    scheme = "https" if cfg.tls else "http"
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"portscope exporter: serving {scheme}://{shown}:{port}/metrics"
               f"{' (basic auth)' if cfg.users else ''}", err=True)
    try:
        server.serve_forever()          # Ctrl-C: exit 130 through main(), like every command
    finally:
        server.server_close()
        observed.close()


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives threads their own malloc arenas (up to 8 per CPU). With a thread per
    scrape, RSS then swings between 50 and 200 MB under 50 scrapers; two arenas keep it
    flat at 50-70 MB with the same latency (benchmarks/bench_exporter.py). An explicit
    MALLOC_ARENA_MAX in the environment wins."""
    import os
    import sys
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        import ctypes
        ctypes.CDLL(None).mallopt(-8, arenas)     # M_ARENA_MAX
    except (ImportError, OSError, AttributeError):
        pass                                      # no ctypes, or not glibc (musl): nothing to tune
