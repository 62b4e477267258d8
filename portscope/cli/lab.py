"""`portscope lab`: reproduce port exhaustion in a private network namespace (engine: portscope.lab)."""
from __future__ import annotations

import click

from .common import Number, emit_json, json_option, want_json

MODES = ("connect", "bind-connect", "bind-no-port", "udp", "connect-close")  # = lab.MODES (kept light)
SNAT_MODES = ("snat", "snat-udp")        # portscope.nat.labnet: NAT, not the socket allocator

_HEAD = (f"{'destination':<18} {'step':<8} | {'predicted: capacity':>19} {'in use':>7} {'(TW)':>5} "
         f"{'left':>6} {'util':>5} | {'kernel: opened':>14} {'µs/conn':>8}  result")


@click.group("lab")
def lab() -> None:
    """Reproduce ephemeral-port exhaustion safely in a private network namespace (root)."""


def _row(s) -> str:
    p = s.predicted
    pred = (f"{p.capacity:>19} {p.in_use:>7} {p.time_wait:>5} {p.left:>6} {p.utilization:>5.2f}" if p
            else f"{'-':>19} {'-':>7} {'-':>5} {'-':>6} {'-':>5}")
    if s.errno is not None:
        result = f"{s.errno_name} on {s.call}()"
    elif s.phase == "stopped":
        result = "stopped (bound reached)"
    else:
        result = "-" if s.phase == "start" else "ok"
    us = f"{s.mean_us:>8.1f}" if s.mean_us is not None else f"{'-':>8}"
    return f"{s.destination:<18} {s.phase:<8} | {pred} | {s.opened:>14} {us}  {result}"


def _label(dst, port) -> str:
    return f"[{dst}]:{port}" if ":" in dst else f"{dst}:{port}"


def _summary(res) -> list[str]:
    per_dest = res.plan.mode in ("connect", "bind-no-port", "connect-close")
    scope = "per destination" if per_dest else "in total (global pool)"
    out = [f"mode {res.plan.mode}: capacity is counted {scope}"]
    for d in res.destinations:
        verdict = {True: "as predicted", False: "MISMATCH", None: "not checked"}[d.match]
        refusal = f"then {d.errno_name} on {d.call}()" if d.errno is not None else "(stopped by a bound)"
        more = f" (or {d.predicted + d.slack}: equal-parity range ends)" if d.slack and d.predicted is not None else ""
        out.append(f"  {_label(d.dst, d.dport)}: portscope predicted {d.predicted}{more}, "
                   f"the kernel opened {d.opened} {refusal}: {verdict}")
    g = res.global_end
    if g is not None:
        out.append(f"  total opened {res.opened_total}; pool at the end: {g.global_in_use}/"
                   f"{g.global_capacity} ports in use ({g.global_utilization:.0%})")
    if res.stop_reason != "refused":
        out.append(f"  stopped early: {res.stop_reason}" + (f" ({res.error})" if res.error else ""))
    return out


@lab.command("exhaust")
@click.option("--range", "range_", default="40000-40099", show_default=True, metavar="LOW-HIGH",
              help="Ephemeral range inside the lab namespace.")
@click.option("--destinations", "-k", type=Number(1, None, whole=True), default=2, show_default=True,
              help="Loopback destinations (127.0.0.2, 127.0.0.3, ...).")
@click.option("--mode", type=click.Choice(MODES + SNAT_MODES), default="connect", show_default=True,
              help="How each socket gets its port. snat / snat-udp: client -> router (MASQUERADE "
                   "--to-ports RANGE) -> server namespaces; --range is the NAT range (docs/nat.md).")
@click.option("--max-connects", type=Number(1, 10_000_000, whole=True), default=10_000, show_default=True,
              help="Stop after this many sockets in all (also capped by the open-file limit).")
@click.option("--timeout", type=Number(0, 86400.0, lo_open=True, unit="seconds"), default=60.0, show_default=True,
              help="Stop opening connections after this many seconds.")
@click.option("--reserve", default="", metavar="PORTS",
              help="ip_local_reserved_ports inside the lab, e.g. 40010-40019.")
@click.option("--hold", type=Number(0, 86400.0, unit="seconds"), default=0.0, show_default=True,
              help="Keep the exhausted lab this many seconds before removing it "
                   "(inspect it with `portscope pressure --netns NAME`).")
@click.option("--tw-reuse", type=Number(0, 2, whole=True), default=None,
              help="net.ipv4.tcp_tw_reuse inside the lab (default: the kernel's, 2 = loopback).")
@click.option("--listeners-in-range", type=Number(0, 65535, whole=True), default=0, show_default=True, metavar="L",
              help="Servers bound on L ports inside the range (TCP listeners; UDP sockets in udp mode).")
@click.option("--family", type=click.Choice(["4", "6"]), default="4", show_default=True,
              help="IPv4 (destinations 127.0.0.2, .3, ... port 80) or IPv6 ([::1] ports 80, 81, ...).")
@json_option
def exhaust(range_, destinations, mode, max_connects, timeout, reserve, hold, tw_reuse,
            listeners_in_range, family, json_out) -> None:
    """Open connections in a private namespace until the kernel refuses.

    Prints, side by side, what portscope predicted (pressure analysis of the
    namespace's live socket table) and what the kernel did; then removes the
    namespace, also on Ctrl-C. Needs root. Exits 1 when the kernel's count
    differs from the prediction.
    """
    from .. import lab as _lab
    from ..ports import PortRange, PortSet

    if mode in SNAT_MODES:
        return _snat(mode, PortRange.parse(range_), max_connects, family, want_json(json_out))
    plan = _lab.Plan(range=PortRange.parse(range_), destinations=destinations, mode=mode,
                     max_connects=max_connects, timeout=timeout, reserved=PortSet.parse(reserve),
                     hold=hold, tw_reuse=tw_reuse,
                     listeners_in_range=listeners_in_range, family=int(family)).validate()
    as_json = want_json(json_out)
    state = {"ns": None}

    def ready(name):
        state["ns"] = name
        if not as_json:
            click.echo(f"lab namespace {name}: range {plan.range} ({plan.range.size} ports"
                       + (f", reserved {plan.reserved}" if plan.reserved else "")
                       + (f", {plan.listeners_in_range} server(s) inside it"
                          if plan.listeners_in_range else "")
                       + f"), mode {plan.mode}, {plan.destinations} destination(s): "
                       + ", ".join(_label(d, p) for d, p in plan.destination_list()[:3])
                       + (", ..." if plan.destinations > 3 else ""))
            click.echo(_HEAD)

    def step(s):
        if not as_json:
            click.echo(_row(s))

    def holding(name):
        if not as_json and plan.hold > 0:
            click.echo(f"holding for {plan.hold:g} s: portscope pressure --netns {name}")

    from ..observe.lab import LabObserver
    witness = LabObserver()        # the eBPF failure counter: issue 14
    try:
        witness.start()
        def on_ready(name: str) -> None:
            witness.ready(name)
            ready(name)
        res = _lab.run_exhaust(plan, on_step=step, on_ready=on_ready, on_hold=holding)
        observed = witness.result(res)
    except KeyboardInterrupt:
        if state["ns"]:
            click.echo(f"interrupted: removed lab namespace {state['ns']}", err=True)
        raise
    finally:
        witness.close()
    if as_json:
        emit_json({**res.to_json(), "observed": observed})
    else:
        for line in _summary(res):
            click.echo(line)
        click.echo(_observed_line(observed))
        click.echo(f"removed lab namespace {res.namespace} ({res.elapsed_s:.2f} s)")
    if res.match is False or observed["match"] is False:   # model, kernel or witness disagree: make scripts notice
        raise SystemExit(1)


@lab.command("clean")
@json_option
def clean(json_out) -> None:
    """Remove lab namespaces left by a run that was killed (SIGKILL) before it could clean up."""
    from .. import lab as _lab

    _lab.check_can_run()
    removed = _lab.clean_stale()
    if want_json(json_out):
        emit_json({"removed": removed})
    elif removed:
        click.echo("removed " + " ".join(removed))
    else:
        click.echo("no stale lab namespaces")


def _snat(mode, rng, max_connects, family, as_json) -> None:
    """lab exhaust --mode snat|snat-udp (logic in portscope.nat.labnet)."""
    from .. import lab as _lab
    from ..errors import BadInput
    from ..nat.labnet import run_snat

    _lab.check_can_run()
    if family != "4":
        raise BadInput("--mode snat uses IPv4 documentation addresses only (drop --family 6)")
    if rng.low < 1024:
        raise BadInput("--range for --mode snat: NAT ports from 1024 up, please")
    attempts = min(max_connects, rng.size + max(8, rng.size // 10))
    # lab_namespace: locked pslab-* names, so `lab clean` knows them (and cleans a killed run)
    res = run_snat((rng.low, rng.high), attempts, "udp" if mode == "snat-udp" else "tcp",
                   namespaces=_lab.lab_namespace)
    if as_json:
        emit_json(res)
    else:
        p, k, ps = res["predicted"], res["kernel"], res["portscope"]
        click.echo(f"{res['mode']}: client -> router (MASQUERADE --to-ports {res['nat_range']}, "
                   f"{res['capacity']} ports) -> server; {res['attempts']} {res['proto']} flows to one port")
        band = f"{p['through']}" if p["low"] == p["high"] else f"{p['through']} ({p['low']}..{p['high']})"
        click.echo(f"  predicted through  {band}   (model: simulate --algorithm nat, "
                   f"{res['nat_tries_per_flow']} NAT attempt(s) per flow)")
        click.echo(f"  kernel let through {k['through']}   insert_failed {k['insert_failed']} (conntrack -S)")
        click.echo(f"  portscope nat      in_use {ps['in_use']} of capacity {ps['capacity']}, "
                   f"insert_failed {ps['insert_failed']}, findings {', '.join(ps['findings']) or '-'}")
        click.echo("  match" if res["match"] else "  MISMATCH")
        click.echo(f"removed lab namespaces {', '.join(res['namespaces'].values())}")
    if not res["match"]:
        raise SystemExit(1)


def _observed_line(o: dict) -> str:
    if o["count"] is None:
        return f"observed by eBPF: n/a ({o.get('note')})"
    verdict = "equal" if o["match"] else "DIFFERENT"
    return (f"observed by eBPF: {o['count']} failed call(s) in the lab namespace; the lab made "
            f"{o['failed_calls']}: {verdict}")
