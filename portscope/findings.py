"""Findings: what is wrong with this host's ephemeral ports, with the evidence and the fix.

Each finding has a stable id (alerting and tests key on it), a severity, a one-line message
with the numbers behind it, and the exact command or code change that removes it. Every rule
is a plain function of the analysed result, so it fires the same on a live host and on a
recorded table.

Remedies target what was analysed: for `--netns NAME` every command runs through
`ip netns exec NAME`, for `--netns pid:PID` through `nsenter --net=/proc/PID/ns/net`, and the
portscope form names the namespace instead of offering --persist (refused with --netns: a
drop-in under /etc/sysctl.d is applied to the host's namespace at boot, so a namespace's
settings are kept by whatever creates it).
"""
from __future__ import annotations

from .remedies import (
    IP_BIND_ADDRESS_NO_PORT,
    bind_no_port_fix,
    port_list,
    range_command,
    reserve_command,
    shell,
    sysctl_command,
    wider_range,
)
from .value import Frozen

TYPE_CHECKING = False     # not typing's: `pressure` starts without importing typing
if TYPE_CHECKING:     # pressure imports this module: the types only, for the checker
    from .host import HostFacts
    from .pressure import Destination, PressureResult

WARN_UTIL = 0.80
CRIT_UTIL = 0.95
TW_SHARE = 0.50          # TIME_WAIT at least half of the client sockets...
TW_MIN_UTIL = 0.10       # ...and at least 10% of some destination's capacity
UDP_SHARE = 0.10         # UDP holding >= 10% of the pool
BIND_WARN_SHARE = 0.05   # bind-before-connect holding >= 5% of the pool: warning, else info
PROC_SHARE = 0.50        # one process owning >= 50% of the client sockets...
PROC_MIN_UTIL = 0.10     # ...when they are >= 10% of the pool
MAX_LISTED = 3           # destinations named in one message
SEVERITIES = ("critical", "warning", "info")

# every id a finding can have (pressure --check --ignore checks names against it)
FINDING_IDS = ("destination-critical", "destination-high", "destination-forecast-exhaustion",
               "pool-critical", "pool-warning", "pool-empty", "listener-in-range",
               "range-same-parity", "range-small", "time-wait-dominant", "bind-before-connect",
               "udp-pool", "process-dominant", "pool-full")

__all__ = ["Finding", "FINDING_IDS", "SEVERITIES", "evaluate", "max_rate", "destination_label", "percent",
           "IP_BIND_ADDRESS_NO_PORT"]


class Finding(Frozen):
    """One thing wrong, with the numbers behind it and the exact fix (frozen; equal when all
    but `evidence` is; `replace()` gives a changed copy)."""

    __slots__ = ("id", "severity", "message", "remedy", "evidence")
    _uncompared = ("evidence",)
    id: str                       # stable, e.g. "destination-critical"
    severity: str                 # "critical" | "warning" | "info"
    message: str
    remedy: str                   # the exact command or code change
    evidence: dict

    def __init__(self, id: str, severity: str, message: str, remedy: str, evidence: dict | None = None) -> None:
        self._init(id=id, severity=severity, message=message, remedy=remedy,
                   evidence={} if evidence is None else evidence)

    def to_json(self) -> dict:
        """`{"id", "severity", "message", "remedy", "evidence"}`."""
        return {"id": self.id, "severity": self.severity, "message": self.message,
                "remedy": self.remedy, "evidence": self.evidence}


def rate_text(x: float) -> str:
    """A rate as findings print it: whole numbers from 10 up, one decimal below."""
    return f"{x:.0f}" if x >= 10 else f"{x:.1f}"


def max_rate(result: PressureResult) -> tuple[str, str]:
    """(rate, basis): the most new connections/s one destination sustains without TIME_WAIT
    reuse, from the ports its connect() can count on. report's headline and range-small
    both say it this way, so they agree."""
    ports, usable, tw = result.connect_ports, result.global_.capacity, result.time_wait_seconds
    basis = (f"{ports} usable ports" if ports == usable
             else f"{ports} of {usable} usable ports connect() can count on")
    return rate_text(ports / tw), f"{basis} / {tw} s"


def destination_label(d: Destination) -> str:
    """`tcp 10.0.0.1 -> [2001:db8::1]:443`: a destination as findings name it."""
    return f"{d.proto} {d.label}"


def percent(x: float) -> str:
    """A 0..1 fraction as every report prints it: `48.2%`."""
    return f"{x * 100:.1f}%"


def destination_findings(result: PressureResult, facts: HostFacts) -> list[Finding]:
    """destination-critical / destination-high: destinations at >= 95% / 80% of their source ports."""
    out = []
    crit = [d for d in result.destinations if d.utilization >= CRIT_UTIL]
    warn = [d for d in result.destinations if WARN_UTIL <= d.utilization < CRIT_UTIL]
    lo, hi = wider_range(facts)
    for sev, fid, ds, thr in (("critical", "destination-critical", crit, CRIT_UTIL),
                              ("warning", "destination-high", warn, WARN_UTIL)):
        if not ds:
            continue
        names = "; ".join(f"{destination_label(d)} {d.in_use}/{d.capacity} ({percent(d.utilization)})" for d in ds[:MAX_LISTED])
        more = f" and {len(ds) - MAX_LISTED} more" if len(ds) > MAX_LISTED else ""
        tw = sum(d.time_wait for d in ds)
        use = sum(d.in_use for d in ds)
        why = (f"; {percent(tw / use)} of it is TIME_WAIT" if use and tw / use >= TW_SHARE else "")
        out.append(_F(
            fid, sev,
            f"{len(ds)} destination(s) at >= {thr * 100:.0f}% of their source ports: {names}{more}{why}",
            f"reuse connections to these destinations (HTTP keep-alive / a connection pool), "
            f"add source addresses, or widen the range: {range_command(facts, lo, hi)}",
            {"destinations": [d.to_json() for d in ds[:10]], "count": len(ds)}))
    return out


def pool_findings(result: PressureResult, facts: HostFacts) -> list[Finding]:
    """pool-empty, pool-critical / pool-warning: ports held for every destination crowding out the pool."""
    g = result.global_
    out = []
    if not g.capacity:
        return [_F("pool-empty", "critical",
                   f"no usable ephemeral port: range {facts.ephemeral} has {g.capacity} ports left "
                   f"after {g.reserved_in_range} reserved",
                   range_command(facts, facts.os_default.low, facts.os_default.high), {})]
    # TCP: against the ports a new socket can count on (equal-parity ends: one fewer)
    for name, n, cap in (("tcp", g.tcp_exclusive, result.tcp_pool_ports), ("udp", g.udp_exclusive, g.capacity)):
        u = min(1.0, n / cap) if cap else 1.0
        if u >= WARN_UTIL:
            sev = "critical" if u >= CRIT_UTIL else "warning"
            out.append(_F(
                f"pool-{sev}", sev,
                f"{n} of {cap} ports ({percent(u)}) are held for every destination by {name.upper()} "
                f"sockets (listeners {g.listeners}, bind-before-connect {g.bind_held}, UDP {g.udp}): "
                f"new {name.upper()} sockets will fail with EADDRNOTAVAIL/EADDRINUSE",
                "set IP_BIND_ADDRESS_NO_PORT before bind(addr, 0); reuse UDP sockets; "
                + range_command(facts, *wider_range(facts)),
                {"proto": name, "held": n, "capacity": cap}))
    return out


def listener_findings(result: PressureResult, facts: HostFacts) -> list[Finding]:
    """listener-in-range: unreserved listeners inside the range (each costs every destination a port)."""
    ports = list(result.listener_ports)
    if not ports:
        return []
    return [_F(
        "listener-in-range", "warning",
        f"{len(ports)} listening port(s) inside the ephemeral range {facts.ephemeral} are not reserved "
        f"({port_list(ports)}): each takes a port from every destination, and after a restart "
        f"the kernel may hand it to an outgoing connection first",
        reserve_command(facts, ports),
        {"ports": ports[:100], "count": len(ports)})]


def range_findings(result: PressureResult, facts: HostFacts) -> list[Finding]:
    """range-same-parity and range-small: a range whose shape or size limits every destination."""
    out = []
    r, dflt = facts.ephemeral, facts.os_default
    if facts.os == "linux" and r.size > 1 and r.same_parity:
        high = r.high + 1 if r.high < 65535 else r.high
        low = r.low if high != r.high else r.low + 1
        usable, ports = result.global_.capacity, result.connect_ports
        cost = (f"so a destination can count on {ports} of the {usable} usable ports, and connect() may "
                f"fail with EADDRNOTAVAIL with one port still free (capacity counts {ports})"
                if ports < usable else
                "(here both ends are reserved, so capacity is not reduced)")
        out.append(_F(
            "range-same-parity", "info",
            f"range {r.low}-{r.high} has ends of equal parity ({r.size} ports): each connect() searches "
            f"only {r.size - 1} of them, leaving out {r.low} or {r.high} depending on the call, "
            f"{cost}; bind(0) alike, and the kernel logs a warning",
            range_command(facts, low, high),
            {"low": r.low, "high": r.high, "connect_window": r.size - 1, "usable": usable,
             "connect_ports": ports}))
    if r.size < dflt.size:
        rate, basis = max_rate(result)
        out.append(_F(
            "range-small", "warning",
            f"range {r} holds {r.size} ports, fewer than the {facts.os} default {dflt} ({dflt.size}): "
            f"at most {rate} new connections/s per destination without TIME_WAIT reuse ({basis})",
            range_command(facts, dflt.low, dflt.high),
            {"size": r.size, "default_size": dflt.size, "usable": result.global_.capacity}))
    return out


def time_wait_findings(result: PressureResult, facts: HostFacts) -> list[Finding]:
    """time-wait-dominant: TIME_WAIT holds most client sockets and a real share of some capacity."""
    g = result.global_
    if not g.sockets or g.time_wait / g.sockets < TW_SHARE:
        return []
    hot = [d for d in result.destinations if d.capacity and d.time_wait / d.capacity >= TW_MIN_UTIL]
    if not hot and not (g.capacity and g.time_wait / g.capacity >= TW_MIN_UTIL):
        return []
    remedy = "reuse connections (HTTP keep-alive / a connection pool) instead of one connection per request"
    if facts.os == "linux" and facts.tcp_tw_reuse != 1:
        reuse_names: dict[int | None, str] = {0: "off", 2: "loopback only"}
        now = reuse_names.get(facts.tcp_tw_reuse, str(facts.tcp_tw_reuse))
        remedy += (f"; let connect() reuse TIME_WAIT ports (now {now}; needs TCP timestamps): "
                   f"{sysctl_command(facts, 'net.ipv4.tcp_tw_reuse=1')}")
    names = "; ".join(f"{destination_label(d)} {d.time_wait} TIME_WAIT/{d.capacity}" for d in hot[:MAX_LISTED])
    return [_F(
        "time-wait-dominant", "warning",
        f"{g.time_wait} of {g.sockets} client sockets ({percent(g.time_wait / g.sockets)}) are in TIME_WAIT, "
        f"each holding its port for {result.time_wait_seconds} s" + (f": {names}" if names else ""),
        remedy, {"time_wait": g.time_wait, "sockets": g.sockets, "tcp_tw_reuse": facts.tcp_tw_reuse})]


def bind_findings(result: PressureResult, facts: HostFacts) -> list[Finding]:
    """bind-before-connect: ports blocked for every destination by sockets bound before connect()."""
    g = result.global_
    if not g.bind_held:
        return []
    share = g.bind_held / g.capacity if g.capacity else 1.0
    sev = "warning" if share >= BIND_WARN_SHARE else "info"
    how = (f" ({g.bind_inferred} inferred from bind(0)'s port parity)" if g.bind_inferred else "")
    return [_F(
        "bind-before-connect", sev,
        f"{g.bind_held} TCP port(s) of the range ({percent(share)}) are held by sockets bound before "
        f"connect(){how}: each blocks its port for every destination",
        bind_no_port_fix(),
        {"bind_held": g.bind_held, "inferred": g.bind_inferred, "capacity": g.capacity})]


def udp_findings(result: PressureResult, facts: HostFacts) -> list[Finding]:
    """udp-pool: UDP sockets holding >= 10% of the pool (each keeps its port from every destination)."""
    g = result.global_
    if not g.capacity or not g.udp or g.udp / g.capacity < UDP_SHARE:
        return []
    share = g.udp / g.capacity
    # always a warning: at >= 80% / 95% of the pool, pool-warning / pool-critical say so
    # (and pressure --check judges that share against --warn/--crit)
    return [_F(
        "udp-pool", "warning",
        f"{g.udp} UDP socket port(s) hold {percent(share)} of the range: unlike TCP connect(), "
        f"each UDP socket keeps its port from every destination",
        "reuse UDP sockets (one socket per upstream, or one unconnected socket with sendto()) "
        "and cap outstanding queries (e.g. resolver concurrency)",
        {"udp": g.udp, "capacity": g.capacity})]


def process_findings(result: PressureResult, facts: HostFacts) -> list[Finding]:
    """process-dominant: one process owns most client sockets and a real share of the pool."""
    g = result.global_
    known = [p for p in result.processes if p.pid is not None]
    if not known or not g.sockets or not g.capacity:
        return []
    p = known[0]
    # sockets against sockets, ports against ports: connect() shares a port between
    # destinations, so a process may own more sockets than the range has ports
    if p.in_use / g.sockets < PROC_SHARE or p.ports / g.capacity < PROC_MIN_UTIL:
        return []
    return [_F(
        "process-dominant", "warning",
        f"pid {p.pid} ({p.command or '?'}) owns {p.in_use} of {g.sockets} client sockets "
        f"({percent(p.in_use / g.sockets)}), holding {p.ports} of the {g.capacity} usable ports "
        f"({percent(p.ports / g.capacity)})",
        f"reuse connections in {p.command or 'pid ' + str(p.pid)} (keep-alive / a pool); "
        f"inspect: {shell(facts.netns)}ss -tanp | grep 'pid={p.pid},'",
        {"pid": p.pid, "command": p.command, "in_use": p.in_use, "ports": p.ports,
         "sockets": g.sockets, "capacity": g.capacity})]


# The `pool-full` finding: every usable port of the range is in use, and by what.
#
# pool-critical judges the ports held *for every destination* (listeners, bind-before-connect,
# UDP). That needs the bind-before-connect sockets to be recognised, and sock_diag cannot show
# a bind(addr, 0): pressure infers it from bind(0)'s port parity, which says nothing once both
# parities are taken. A client that binds before connect() until the kernel refuses leaves
# exactly that: one destination with every port, the pool full, no port it can prove bind-held.
# Then this finding says what holds the pool, and what that means for each possible cause.

POOL_FULL_NAMED = 3


def pool_full_findings(result: PressureResult, facts: HostFacts) -> list[Finding]:
    """One critical finding when every port a new TCP socket can count on is in use and the
    ports held for every destination alone do not already explain it (pool-critical)."""

    g = result.global_
    pool = result.tcp_pool_ports
    if not g.capacity or not pool or g.in_use < pool:
        return []
    if g.tcp_exclusive / pool >= CRIT_UTIL:
        return []                       # pool-critical names them already
    by_client = max(0, g.in_use - g.listeners - g.bind_held - g.udp)
    tcp = [d for d in result.destinations if d.proto == "tcp" and d.in_use]
    tcp.sort(key=lambda d: d.in_use, reverse=True)
    names = "; ".join(f"{destination_label(d)} {d.in_use}" for d in tcp[:POOL_FULL_NAMED])
    more = f" and {len(tcp) - POOL_FULL_NAMED} more" if len(tcp) > POOL_FULL_NAMED else ""
    # connect() alone shares a port between destinations once ports run short; bind(0) never does
    unshared = g.sockets <= g.in_use
    parity = ("the parity inference cannot tell bind-before-connect here: ports of both parities are taken"
              if g.bind_inferred == 0 and by_client else
              f"{g.bind_held} of them are known to be bind-held")
    why = ("if the client binds before connect() (bind(addr, 0)), as a full pool with no port shared "
           "between destinations suggests, each of these ports is blocked for every destination and "
           "connect() to any other destination fails as well (EADDRINUSE/EADDRNOTAVAIL)"
           if unshared else
           "ports are shared between destinations, so plain connect() holds at least part of them: "
           "destinations other than these can still connect")
    return [_F(
        "pool-full", "critical",
        f"the global pool is full: all {pool} usable ports of {facts.ephemeral} are in use "
        f"(listeners {g.listeners}, bind-before-connect {g.bind_held}, UDP {g.udp}, and {by_client} "
        f"held by client sockets: {names or 'none'}{more}); {parity}. A new TCP bind(addr, 0) fails "
        f"now; {why}",
        f"in the client, before bind(addr, 0): setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1) "
        f"(Python: s.setsockopt(socket.IPPROTO_IP, {IP_BIND_ADDRESS_NO_PORT}, 1)), or do not bind; reuse "
        f"connections; or widen the range: {range_command(facts, *wider_range(facts))}",
        {"in_use": g.in_use, "capacity": g.capacity, "pool": pool, "listeners": g.listeners,
         "bind_held": g.bind_held, "bind_inferred": g.bind_inferred, "udp": g.udp,
         "client_ports": by_client, "ports_shared": not unshared,
         "destinations": [d.to_json() for d in tcp[:10]]})]


RULES = (destination_findings, pool_findings, listener_findings, range_findings,
         time_wait_findings, bind_findings, udp_findings, pool_full_findings)


def evaluate(result: PressureResult, facts: HostFacts, *, process: bool = False) -> list[Finding]:
    """All findings for an analysed result, most severe first."""
    out: list[Finding] = []
    for rule in RULES:
        out.extend(rule(result, facts))
    if process:
        out.extend(process_findings(result, facts))
    order = {s: i for i, s in enumerate(SEVERITIES)}
    out.sort(key=lambda f: order.get(f.severity, 9))
    return out


def _F(fid, sev, msg, remedy, evidence) -> Finding:
    return Finding(id=fid, severity=sev, message=msg, remedy=remedy, evidence=evidence)
