"""`portscope pressure`: ephemeral-port use per destination, forecast, findings; --check plugin mode.

The measuring (`portscope.measure`) and the verdict (`portscope.check`) are library
functions; this module parses options and prints.
"""
from __future__ import annotations

from typing import NoReturn

import click

from ..check import DEFAULT_CRIT, DEFAULT_WARN, STATUS, UNKNOWN
from ..datapath import MAX_SAMPLES
from ..errors import PortscopeError
from ..front.views import pressure_show
from .common import (
    INTERVAL,
    TOP,
    Number,
    egress_options,
    emit_json,
    json_option,
    netns_of,
    netns_option,
    refuse_with_netns,
    verbose,
    want_json,
)
from .render import render_egress, render_pressure_all, warn_skipped


def _one_line(msg: str) -> str:
    return " ".join(str(msg).split())


def _unknown(msg: str, as_json: bool) -> NoReturn:
    """Check mode's answer to any failure: UNKNOWN (3), one plugin line (or its JSON)."""
    line = f"PORTSCOPE UNKNOWN - {_one_line(msg)}"
    if as_json:
        emit_json({"check": {"status": STATUS[UNKNOWN], "exit_code": UNKNOWN, "line": line,
                             "error": _one_line(msg)}})
    else:
        click.echo(line)
    raise SystemExit(UNKNOWN)


def _root_json(ctx) -> bool:
    return bool(((ctx.find_root().obj if ctx else None) or {}).get("json"))


class PressureCommand(click.Command):
    """With --check among the arguments, a usage error (bad value, unknown option, missing
    argument) is UNKNOWN (exit 3) with a plugin line: exit 2, click's code, would read as
    CRITICAL to a monitoring system."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """click's parsing, except that with --check a usage error exits UNKNOWN (see the class doc)."""
        if "--check" not in args:
            return super().parse_args(ctx, args)
        as_json = "--json" in args or _root_json(ctx)      # before click's parser consumes args
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:       # BadParameter, NoSuchOption, BadOptionUsage, ...
            _unknown(f"{e.format_message()} (see '{ctx.command_path} --help')", as_json)
        except PortscopeError as e:         # a value refused by a shared type (common.Number, --netns)
            _unknown(str(e), as_json)


def _egress(opts: dict, kw: dict) -> None:
    """`pressure --egress`: every namespace's flows per destination against a NAT budget."""
    import sys

    from ..egress import budget, run
    from ..errors import BadInput, Unsupported
    if kw.get("check") or kw.get("all_netns") or netns_of(kw.get("netns")) or kw.get("process"):
        raise BadInput("--egress reads every namespace by itself: no --netns, --all-netns, --check or --process")
    if not sys.platform.startswith("linux"):
        raise Unsupported("--egress reads sock_diag and network namespaces (Linux)")
    interval = kw.get("interval")
    if interval is not None and not (0 < interval <= 3600):
        raise BadInput(f"--interval must be in (0, 3600] seconds, got {interval:g}")
    b = budget(opts["nat_budget"], opts["cloud"], opts["nat_addresses"], opts["nat_hold"])
    res = run(b, top=kw.get("top"), include_private=opts["include_private"], interval=interval)
    warn_skipped(res.skipped)
    if want_json(bool(kw.get("json_out"))):
        emit_json(res.to_json())
    else:
        render_egress(res)


@click.command("pressure", cls=PressureCommand)
@egress_options(_egress)
@json_option
@netns_option
@click.option("--top", "top", type=TOP, default=20, show_default=True, metavar="N",
              help="Show the N worst destinations (the rest are summed).")
@click.option("--interval", type=INTERVAL, default=None, metavar="S",
              help="Sample S seconds apart and forecast rates and time to exhaustion.")
@click.option("--samples", type=Number(2, MAX_SAMPLES, whole=True), default=None, metavar="K",
              help="Number of samples with --interval (default 2).")
@click.option("--process", is_flag=True, help="Attribute use to processes (slower: reads /proc/*/fd).")
@click.option("--cgroup", "cgroup", is_flag=True,
              help="Per destination, the cgroups (container, pod, service) whose sockets hold its ports, "
                   "most first; TIME_WAIT sockets have none and are counted apart (one namespace, no --check).")
@click.option("--check", is_flag=True,
              help="Monitoring-plugin mode: one status line with perfdata; exit 0 OK, 1 WARNING, "
                   "2 CRITICAL, 3 UNKNOWN (any error, bad usage included). The status is the worst "
                   "of --warn/--crit on the worst utilization and the severity of each finding.")
@click.option("--warn", type=Number(0, 100), default=None, metavar="P",
              help=f"Only with --check: WARNING at P percent use (default {DEFAULT_WARN:g}).")
@click.option("--crit", type=Number(0, 100), default=None, metavar="P",
              help=f"Only with --check: CRITICAL at P percent use (default {DEFAULT_CRIT:g}).")
@click.option("--ignore", multiple=True, metavar="ID[,ID]",
              help="Only with --check: leave these finding ids out of the status (repeatable).")
@click.option("--all-netns", is_flag=True, help="Every network namespace on the host, labelled by "
              "namespace, container and pod (not with --check or --interval).")
def pressure(json_out, netns, top, interval, samples, process, cgroup, check, warn, crit, ignore,
             all_netns) -> None:
    """Ephemeral-port use per destination (src, dst, dport) against its real capacity.

    \b
    TCP capacity per destination = ports of the range - reserved ports - ports
    held for every destination by a TCP bind() (listeners, bind-before-connect,
    bound-only sockets) + those held by the destination's own sockets. UDP
    sockets do not reduce TCP capacity (TCP and UDP keep separate port tables);
    a UDP destination's capacity subtracts the ports UDP sockets hold. With
    range ends of equal parity, one port less: each connect() searches all
    ports but one. TIME_WAIT counts as used. --interval adds the rate of new
    connections, the sustainable rate and the time to exhaustion.
    """
    if cgroup and check:
        _unknown("--cgroup shows who holds the ports; a check judges them: leave --cgroup out",
                 want_json(json_out))
    if cgroup and all_netns:
        from ..errors import BadInput
        raise BadInput("--cgroup reads one namespace's destinations: not with --all-netns (use --netns)")
    if all_netns and not check:
        from ..allnetns import pressure_all
        from ..errors import BadInput
        refuse_with_netns(netns)
        if interval is not None or warn is not None or crit is not None or ignore:
            raise BadInput("--all-netns takes no --interval, --warn, --crit or --ignore (yet): "
                           "forecast one namespace with --netns")
        walk, doc = pressure_all(top, process)
        warn_skipped(walk.skipped)
        if want_json(json_out):
            emit_json(doc)
        else:
            render_pressure_all(walk, doc, top)
        return
    if check:
        as_json = want_json(json_out)
        if all_netns:
            _unknown("--check judges one namespace: use --netns, not --all-netns", as_json)
        try:
            _check(netns, top, interval, samples, process, warn, crit, ignore, as_json)
        except (SystemExit, BrokenPipeError):
            raise                          # a reader that went away is not a check result
        except KeyboardInterrupt:
            _unknown("interrupted", as_json)
        except Exception as e:                              # noqa: BLE001 - a plugin never tracebacks
            from ..errors import PortscopeError
            _unknown(str(e) if isinstance(e, PortscopeError) else f"internal error: {type(e).__name__}: {e}",
                     as_json)
        return
    _show(json_out, netns, top, interval, samples, process, warn, crit, ignore, cgroup)


def _check(netns, top, interval, samples, process, warn, crit, ignore, as_json) -> None:
    from ..check import check_thresholds, evaluate_check, parse_ignore
    from ..datapath import measure
    from ..errors import BadInput
    from ..pressure import truncate

    warn, crit = check_thresholds(warn, crit)
    ignore = parse_ignore(ignore)
    if top is not None and top < 0:
        raise BadInput(f"--top must be >= 0, got {top}")
    # every destination is judged; --top trims only what --json shows
    res = measure(netns_of(netns), top=None, process=process, interval=interval, samples=samples)
    from ..nat import with_nat
    res, _ = with_nat(res, netns_of(netns))       # conntrack / SNAT findings count too
    c = evaluate_check(res, warn, crit, ignore)
    if as_json:
        doc = truncate(res, top).to_json()
        doc["check"] = c.to_json()
        emit_json(doc)
    else:
        click.echo(c.line)
    raise SystemExit(c.code)


def _show(json_out, netns, top, interval, samples, process, warn, crit, ignore, cgroup=False) -> None:
    from ..errors import BadInput

    given = [o for o, v in (("--warn", warn), ("--crit", crit)) if v is not None] + (["--ignore"] if ignore else [])
    if given:
        raise BadInput(f"{' and '.join(given)} appl{'ies' if len(given) == 1 else 'y'} only with --check "
                       f"(the monitoring-plugin mode)")
    pressure_show(netns_of(netns), top, interval, samples, process, want_json(json_out), verbose(), cgroup=cgroup)
