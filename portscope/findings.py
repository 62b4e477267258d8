"""Findings: what is wrong with this host's ephemeral ports, with the evidence and the fix.

Each finding has a stable id (alerting and tests key on it), a severity, a one-line message
with the numbers behind it, and the exact command or code change that removes it. Every rule
is a plain function of the analysed result, so it fires the same on a live host and on a
recorded table.
"""
from __future__ import annotations

from .ports import PortSet

WARN_UTIL = 0.80
CRIT_UTIL = 0.95
TW_SHARE = 0.50          # TIME_WAIT at least half of the client sockets...
TW_MIN_UTIL = 0.10       # ...and at least 10% of some destination's capacity
UDP_SHARE = 0.10         # UDP holding >= 10% of the pool
BIND_WARN_SHARE = 0.05   # bind-before-connect holding >= 5% of the pool: warning, else info
PROC_SHARE = 0.50        # one process owning >= 50% of the client sockets...
PROC_MIN_UTIL = 0.10     # ...when they are >= 10% of the pool
MAX_LISTED = 3           # destinations named in one message

IP_BIND_ADDRESS_NO_PORT = 24


def range_command(os_name: str, low: int, high: int) -> str:
    """The command that sets the ephemeral range to low..high on this OS."""
    if os_name == "darwin" or os_name == "freebsd":
        return f"sysctl -w net.inet.ip.portrange.first={low} net.inet.ip.portrange.last={high}"
    if os_name == "windows":
        return (f"netsh int ipv4 set dynamic tcp start={low} num={high - low + 1}"
                f" && netsh int ipv4 set dynamic udp start={low} num={high - low + 1}")
    return f'sysctl -w net.ipv4.ip_local_port_range="{low} {high}"  # persist: portscope range set {low} {high} --persist'


def reserve_command(os_name: str, reserved: PortSet, ports: list[int]) -> str:
    if os_name == "windows":
        return " && ".join(f"netsh int ipv4 add excludedportrange protocol=tcp startport={p} numberofports=1"
                           for p in ports)
    if os_name != "linux":
        return f"move the listeners ({_plist(ports)}) below the ephemeral range"
    new = reserved.union(PortSet.of(ports))
    return (f'sysctl -w net.ipv4.ip_local_reserved_ports="{new}"'
            f"  # persist: portscope reserve add {_plist(ports, sep=',')} --persist")


def _plist(ports, sep: str = ", ", limit: int = 10) -> str:
    ports = list(ports)
    s = sep.join(str(p) for p in ports[:limit])
    return s + (f"{sep}..." if len(ports) > limit else "")


def _dname(d) -> str:
    dst = f"[{d.dst}]" if ":" in d.dst else d.dst
    return f"{d.proto} {d.src} -> {dst}:{d.dport}"


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def _wider_range(facts):
    """A larger range to suggest: the OS default if the current one is smaller, else
    extend downward to 16384 (different-parity ends, registered ports above most daemons)."""
    cur, dflt = facts.ephemeral, facts.os_default
    if cur.size < dflt.size:
        return dflt.low, dflt.high
    low = min(cur.low, 16384)
    high = 65535 if cur.high < 65535 else cur.high
    if (high - low) % 2 == 0:
        low += 1
    return low, high


def destination_findings(result, facts) -> list:
    out = []
    crit = [d for d in result.destinations if d.utilization >= CRIT_UTIL]
    warn = [d for d in result.destinations if WARN_UTIL <= d.utilization < CRIT_UTIL]
    lo, hi = _wider_range(facts)
    for sev, fid, ds, thr in (("critical", "destination-critical", crit, CRIT_UTIL),
                              ("warning", "destination-high", warn, WARN_UTIL)):
        if not ds:
            continue
        names = "; ".join(f"{_dname(d)} {d.in_use}/{d.capacity} ({_pct(d.utilization)})" for d in ds[:MAX_LISTED])
        more = f" and {len(ds) - MAX_LISTED} more" if len(ds) > MAX_LISTED else ""
        tw = sum(d.time_wait for d in ds)
        use = sum(d.in_use for d in ds)
        why = (f"; {_pct(tw / use)} of it is TIME_WAIT" if use and tw / use >= TW_SHARE else "")
        out.append(_F(
            fid, sev,
            f"{len(ds)} destination(s) at >= {thr * 100:.0f}% of their source ports: {names}{more}{why}",
            f"reuse connections to these destinations (HTTP keep-alive / a connection pool), "
            f"add source addresses, or widen the range: {range_command(facts.os, lo, hi)}",
            {"destinations": [d.to_json() for d in ds[:10]], "count": len(ds)}))
    return out


def pool_findings(result, facts) -> list:
    g = result.global_
    out = []
    if not g.capacity:
        return [_F("pool-empty", "critical",
                   f"no usable ephemeral port: range {facts.ephemeral} has {g.capacity} ports left "
                   f"after {g.reserved_in_range} reserved",
                   range_command(facts.os, facts.os_default.low, facts.os_default.high), {})]
    for name, n in (("tcp", g.tcp_exclusive), ("udp", g.udp_exclusive)):
        u = n / g.capacity
        if u >= WARN_UTIL:
            sev = "critical" if u >= CRIT_UTIL else "warning"
            out.append(_F(
                f"pool-{sev}", sev,
                f"{n} of {g.capacity} ports ({_pct(u)}) are held for every destination by {name.upper()} "
                f"sockets (listeners {g.listeners}, bind-before-connect {g.bind_held}, UDP {g.udp}): "
                f"new {name.upper()} sockets will fail with EADDRNOTAVAIL/EADDRINUSE",
                "set IP_BIND_ADDRESS_NO_PORT before bind(addr, 0); reuse UDP sockets; "
                + range_command(facts.os, *_wider_range(facts)),
                {"proto": name, "held": n, "capacity": g.capacity}))
    return out


def listener_findings(result, facts) -> list:
    ports = list(result.listener_ports)
    if not ports:
        return []
    return [_F(
        "listener-in-range", "warning",
        f"{len(ports)} listening port(s) inside the ephemeral range {facts.ephemeral} are not reserved "
        f"({_plist(ports)}): each takes a port from every destination, and after a restart "
        f"the kernel may hand it to an outgoing connection first",
        reserve_command(facts.os, facts.reserved, ports),
        {"ports": ports[:100], "count": len(ports)})]


def range_findings(result, facts) -> list:
    out = []
    r, dflt = facts.ephemeral, facts.os_default
    if facts.os == "linux" and r.size > 1 and r.same_parity:
        high = r.high + 1 if r.high < 65535 else r.high
        low = r.low if high != r.high else r.low + 1
        out.append(_F(
            "range-same-parity", "info",
            f"range {r.low}-{r.high} has ends of equal parity: the kernel logs a warning, and the "
            f"halves connect() and bind(0) search first are unequal ({(r.size + 1) // 2} vs {r.size // 2} ports)",
            range_command(facts.os, low, high), {"low": r.low, "high": r.high}))
    if r.size < dflt.size:
        out.append(_F(
            "range-small", "warning",
            f"range {r} holds {r.size} ports, fewer than the {facts.os} default {dflt} ({dflt.size}): "
            f"at most {r.size / result.time_wait_seconds:.1f} new connections/s per destination without TIME_WAIT reuse",
            range_command(facts.os, dflt.low, dflt.high),
            {"size": r.size, "default_size": dflt.size}))
    return out


def time_wait_findings(result, facts) -> list:
    g = result.global_
    if not g.sockets or g.time_wait / g.sockets < TW_SHARE:
        return []
    hot = [d for d in result.destinations if d.capacity and d.time_wait / d.capacity >= TW_MIN_UTIL]
    if not hot and not (g.capacity and g.time_wait / g.capacity >= TW_MIN_UTIL):
        return []
    remedy = "reuse connections (HTTP keep-alive / a connection pool) instead of one connection per request"
    if facts.os == "linux" and facts.tcp_tw_reuse != 1:
        now = {0: "off", 2: "loopback only"}.get(facts.tcp_tw_reuse, str(facts.tcp_tw_reuse))
        remedy += (f"; let connect() reuse TIME_WAIT ports (now {now}; needs TCP timestamps): "
                   f"sysctl -w net.ipv4.tcp_tw_reuse=1")
    names = "; ".join(f"{_dname(d)} {d.time_wait} TIME_WAIT/{d.capacity}" for d in hot[:MAX_LISTED])
    return [_F(
        "time-wait-dominant", "warning",
        f"{g.time_wait} of {g.sockets} client sockets ({_pct(g.time_wait / g.sockets)}) are in TIME_WAIT, "
        f"each holding its port for {result.time_wait_seconds} s" + (f": {names}" if names else ""),
        remedy, {"time_wait": g.time_wait, "sockets": g.sockets, "tcp_tw_reuse": facts.tcp_tw_reuse})]


def bind_findings(result, facts) -> list:
    g = result.global_
    if not g.bind_held:
        return []
    share = g.bind_held / g.capacity if g.capacity else 1.0
    sev = "warning" if share >= BIND_WARN_SHARE else "info"
    how = (f" ({g.bind_inferred} inferred from bind(0)'s port parity)" if g.bind_inferred else "")
    return [_F(
        "bind-before-connect", sev,
        f"{g.bind_held} TCP port(s) of the range ({_pct(share)}) are held by sockets bound before "
        f"connect(){how}: each blocks its port for every destination",
        f"in the client, before bind(addr, 0): setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1) "
        f"(Python: s.setsockopt(socket.IPPROTO_IP, {IP_BIND_ADDRESS_NO_PORT}, 1)); or do not bind at all",
        {"bind_held": g.bind_held, "inferred": g.bind_inferred, "capacity": g.capacity})]


def udp_findings(result, facts) -> list:
    g = result.global_
    if not g.capacity or not g.udp or g.udp / g.capacity < UDP_SHARE:
        return []
    share = g.udp / g.capacity
    return [_F(
        "udp-pool", "critical" if share >= CRIT_UTIL else "warning",
        f"{g.udp} UDP socket port(s) hold {_pct(share)} of the range: unlike TCP connect(), "
        f"each UDP socket keeps its port from every destination",
        "reuse UDP sockets (one socket per upstream, or one unconnected socket with sendto()) "
        "and cap outstanding queries (e.g. resolver concurrency)",
        {"udp": g.udp, "capacity": g.capacity})]


def process_findings(result, facts) -> list:
    g = result.global_
    known = [p for p in result.processes if p.pid is not None]
    if not known or not g.sockets or not g.capacity:
        return []
    p = known[0]
    if p.in_use / g.sockets < PROC_SHARE or p.in_use / g.capacity < PROC_MIN_UTIL:
        return []
    return [_F(
        "process-dominant", "warning",
        f"pid {p.pid} ({p.command or '?'}) owns {p.in_use} of {g.sockets} client sockets "
        f"({_pct(p.in_use / g.sockets)}), {_pct(p.in_use / g.capacity)} of the range",
        f"reuse connections in {p.command or 'pid ' + str(p.pid)} (keep-alive / a pool); "
        f"inspect: ss -tanp | grep 'pid={p.pid},'",
        {"pid": p.pid, "command": p.command, "in_use": p.in_use, "sockets": g.sockets})]


RULES = (destination_findings, pool_findings, listener_findings, range_findings,
         time_wait_findings, bind_findings, udp_findings)


def evaluate(result, facts, *, process: bool = False) -> list:
    """All findings for an analysed result, most severe first."""
    out = []
    for rule in RULES:
        out.extend(rule(result, facts))
    if process:
        out.extend(process_findings(result, facts))
    order = {s: i for i, s in enumerate(("critical", "warning", "info"))}
    out.sort(key=lambda f: order.get(f.severity, 9))
    return out


def _F(fid, sev, msg, remedy, evidence):
    from .pressure import Finding
    return Finding(id=fid, severity=sev, message=msg, remedy=remedy, evidence=evidence)
