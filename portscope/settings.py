"""Changing the port settings, as a library call: read the facts (and, on Linux, the
sockets the checks need), plan, and apply unless it is a dry run.

The host layer (`host.engine`) plans and applies with the facts it is given; reading the
live socket table is this module's job, so `host/` never depends on `sockets/`.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

from . import host
from .host._common import HostFacts, Plan, Result, Runner, SocketFacts, Sysctl, check_range, parse_ports
from .host.engine import apply, plan_range, plan_reserve
from .netns import Namespace
from .sockets import snapshot
from .sockets import table as T

__all__ = ["Change", "set_range", "change_reserved", "socket_facts"]


class Change(NamedTuple):
    """What a change did: the plan (always) and the applied result (None for a dry run or
    when nothing needed changing). Unpacks as `(plan, result)`."""

    plan: Plan
    result: Result | None

    @property
    def applied(self) -> bool:
        """True when the change was made (not a dry run, and something needed changing)."""
        return self.result is not None


def socket_facts(netns: "str | Namespace | None", facts: HostFacts) -> SocketFacts:
    """Listeners and ports in use now: what the range-set checks need from the socket table."""
    tab = snapshot(protos=("tcp", "udp"), netns=netns, facts=facts)
    listeners: dict[int, str] = {}
    eph: set[int] = set()
    for i in range(len(tab)):
        port = tab.local_port[i]
        proto = tab.proto[i]
        if tab.ephemeral[i] == T.EPH_LOCAL:
            eph.add(port)
        is_server = False
        if proto == T.PROTO_TCP and tab.state[i] == T.TCP_LISTEN:
            is_server = True
        elif proto == T.PROTO_UDP and tab.remote_port[i] == 0:
            auto = tab.auto_bound[i]
            # procfs cannot say who chose the port: count it only outside today's range
            is_server = auto == T.AUTO_NO or (auto == T.AUTO_UNKNOWN and port not in facts.ephemeral)
        if is_server:
            name = T.PROTO_NAMES[proto]
            prev = listeners.get(port)
            listeners[port] = name if prev in (None, name) else "tcp+udp"
    return SocketFacts(listeners, frozenset(eph - set(listeners)), tab.backend)


def set_range(low: int | str, high: int | str, *, netns: "str | Namespace | None" = None, dry_run: bool = False,
              persist: bool = False, force: bool = False, reserve_listeners: bool = False,
              sysctl_dir: str | None = None, check_sockets: bool = True, facts: HostFacts | None = None,
              runner: Runner | None = None, sysctl: Sysctl | None = None, protos: Sequence[str] | None = None) -> Change:
    """Set the ephemeral range to LOW..HIGH: validated, applied atomically, read back, and
    rolled back if any step fails.

    netns: the namespace to change (None: this process's). dry_run: plan only.
    persist: also write the setting where the OS keeps it across reboots (host only).
    force: allow a range smaller than the ephemeral ports in use now.
    reserve_listeners: reserve listening ports the new range would cover, first.
    facts/runner/sysctl: inject recorded facts or fake command runners (tests, other OSes).
    protos: Windows only, the protocols whose range changes (default tcp and udp).
    Raises BadInput (exit 2), NotPermitted (3) or Unsupported (4); nothing is left half-done.
    """
    check_range(low, high)   # bad numbers fail before any system read
    if facts is None:
        facts = host.host_facts(str(netns) if netns else None)
    sockets = None
    if check_sockets and facts.os == "linux":
        sockets = socket_facts(netns, facts)
    plan = plan_range(low, high, facts=facts, sockets=sockets, force=force, persist=persist,
                      sysctl_dir=sysctl_dir, reserve_listeners=reserve_listeners, protos=protos)
    if dry_run or not plan.changes_anything:
        return Change(plan, None)
    return Change(plan, apply(plan, sysctl=sysctl, runner=runner))


def change_reserved(op: str, ports: str, *, netns: "str | Namespace | None" = None, dry_run: bool = False,
                    persist: bool = False, sysctl_dir: str | None = None, facts: HostFacts | None = None,
                    sysctl: Sysctl | None = None, runner: Runner | None = None, protos: Sequence[str] | None = None) -> Change:
    """Add (`op="add"`) or remove (`op="remove"`) PORTS ("8080,9000-9010") from the reserved
    ports (Linux `ip_local_reserved_ports`, Windows excluded port ranges), keeping every other
    entry. The same guarantees and arguments as `set_range`."""
    parse_ports(ports)
    if facts is None:
        facts = host.host_facts(str(netns) if netns else None)
    plan = plan_reserve(op, ports, facts=facts, persist=persist, sysctl_dir=sysctl_dir, protos=protos)
    if dry_run or not plan.changes_anything:
        return Change(plan, None)
    return Change(plan, apply(plan, sysctl=sysctl, runner=runner))


# the names earlier releases used (host.changes.range_set / reserve_change)
range_set = set_range
reserve_change = change_reserved
