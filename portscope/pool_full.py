"""The `pool-full` finding: every usable port of the range is in use, and by what.

pool-critical judges the ports held *for every destination* (listeners, bind-before-connect,
UDP). That needs the bind-before-connect sockets to be recognised, and sock_diag cannot show
a bind(addr, 0): pressure infers it from bind(0)'s port parity, which says nothing once both
parities are taken. A client that binds before connect() until the kernel refuses leaves
exactly that: one destination with every port, the pool full, no port it can prove bind-held.
Then this finding says what holds the pool, and what that means for each possible cause.
"""
from __future__ import annotations

MAX_NAMED = 3


def pool_full_findings(result, facts) -> list:
    """One critical finding when every port a new TCP socket can count on is in use and the
    ports held for every destination alone do not already explain it (pool-critical)."""
    from .findings import CRIT_UTIL, IP_BIND_ADDRESS_NO_PORT, _F, _dname, _wider_range, range_command

    g = result.global_
    pool = result.tcp_pool_ports
    if not g.capacity or not pool or g.in_use < pool:
        return []
    if g.tcp_exclusive / pool >= CRIT_UTIL:
        return []                       # pool-critical names them already
    by_client = max(0, g.in_use - g.listeners - g.bind_held - g.udp)
    tcp = [d for d in result.destinations if d.proto == "tcp" and d.in_use]
    tcp.sort(key=lambda d: d.in_use, reverse=True)
    names = "; ".join(f"{_dname(d)} {d.in_use}" for d in tcp[:MAX_NAMED])
    more = f" and {len(tcp) - MAX_NAMED} more" if len(tcp) > MAX_NAMED else ""
    # connect() alone shares a port between destinations once ports run short; bind(0) never does
    unshared = g.sockets <= g.in_use
    parity = ("the parity inference cannot tell bind-before-connect here: ports of both parities are taken"
              if g.bind_inferred == 0 and by_client else
              f"{g.bind_held} of them are known to be bind-held")
    why = (f"if the client binds before connect() (bind(addr, 0)), as a full pool with no port shared "
           f"between destinations suggests, each of these ports is blocked for every destination and "
           f"connect() to any other destination fails as well (EADDRINUSE/EADDRNOTAVAIL)"
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
        f"connections; or widen the range: {range_command(facts, *_wider_range(facts))}",
        {"in_use": g.in_use, "capacity": g.capacity, "pool": pool, "listeners": g.listeners,
         "bind_held": g.bind_held, "bind_inferred": g.bind_inferred, "udp": g.udp,
         "client_ports": by_client, "ports_shared": not unshared,
         "destinations": [d.to_json() for d in tcp[:10]]})]
