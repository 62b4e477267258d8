"""The facts about one port on this host: what `portscope port N` answers.

Its RFC 6335 class and IANA services, whether binding it needs privilege here
(ip_unprivileged_port_start of the namespace on Linux; each platform's own rule,
privilege.py) and whether *this* process has that privilege (CAP_NET_BIND_SERVICE,
read from /proc/self/status; root elsewhere), whether it lies in
the ephemeral range (outgoing connections can take it) or the reserved list, and
which sockets hold it now.
"""
from __future__ import annotations

import os

from . import portprobe, registry
from .errors import BadInput
from .host import HostFacts
from .host import host_facts as read_facts
from .ports import PortRange, check_port, port_class
from .privilege import PrivilegeRule
from .privilege import rule as privilege_rule
from .remedies import reserve_add_command
from .value import Frozen

TYPE_CHECKING = False     # typing's would import typing on `portscope port N`'s path
if TYPE_CHECKING:
    from typing import Iterable

CAP_NET_BIND_SERVICE = 10   # include/uapi/linux/capability.h
IN_USE_PROTOS = ("tcp", "udp")


def has_cap_net_bind_service(status_text: str | None = None) -> bool:
    """Does this process hold CAP_NET_BIND_SERVICE in its effective set?

    Being uid 0 is not the test: the kernel checks the capability, and a root whose
    capabilities were dropped (containers, systemd units) is refused like anyone.
    """
    if status_text is None:
        try:
            with open("/proc/self/status") as f:
                status_text = f.read()
        except OSError:  # no procfs (macOS, BSD, Windows): root is the privilege there
            return hasattr(os, "geteuid") and os.geteuid() == 0
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_NET_BIND_SERVICE & 1)
    return hasattr(os, "geteuid") and os.geteuid() == 0


class PortFacts(Frozen):
    """Everything `portscope port N` says about one port on this host (frozen; `replace()`
    gives a changed copy)."""

    __slots__ = ("port", "port_class", "services", "iana_status", "privileged", "bind_allowed",
                 "in_ephemeral_range", "reserved", "in_use", "ephemeral", "unprivileged_port_start",
                 "cap_net_bind_service", "netns", "in_use_backend", "notes", "proto", "who_may_bind", "os",
                 "privilege_note")
    port: int
    port_class: str                        # system | user | dynamic (RFC 6335)
    services: tuple                        # registry.Service rows assigned on this port
    iana_status: dict                      # proto -> assigned | reserved | unassigned
    privileged: bool                       # below ip_unprivileged_port_start: binding needs privilege
    bind_allowed: bool                     # this process may bind it (as far as privilege goes)
    in_ephemeral_range: bool               # connect()/bind(0) may hand it out
    reserved: bool                         # in ip_local_reserved_ports (never auto-assigned)
    in_use: tuple                          # socket rows (SocketTable.row shape) bound to it now
    ephemeral: PortRange | None
    unprivileged_port_start: int
    cap_net_bind_service: bool
    netns: str | None
    in_use_backend: str | None
    notes: tuple
    proto: str | None                      # the --proto filter, if any
    who_may_bind: str                      # privilege.ANY | WILDCARD | ROOT (macOS 10.14+: WILDCARD)
    os: str                                # whose privilege rule applies
    privilege_note: str | None             # that rule for this port, in the platform's terms

    def __init__(self, port: int, port_class: str, services: tuple, iana_status: dict, privileged: bool,
                 bind_allowed: bool, in_ephemeral_range: bool, reserved: bool, in_use: tuple = (),
                 ephemeral: PortRange | None = None, unprivileged_port_start: int = 1024,
                 cap_net_bind_service: bool = False, netns: str | None = None, in_use_backend: str | None = None,
                 notes: tuple = (), proto: str | None = None, who_may_bind: str = "any address",
                 os: str = "linux", privilege_note: str | None = None) -> None:
        self._init(port=port, port_class=port_class, services=services, iana_status=iana_status,
                   privileged=privileged, bind_allowed=bind_allowed, in_ephemeral_range=in_ephemeral_range,
                   reserved=reserved, in_use=in_use, ephemeral=ephemeral,
                   unprivileged_port_start=unprivileged_port_start, cap_net_bind_service=cap_net_bind_service,
                   netns=netns, in_use_backend=in_use_backend, notes=notes, proto=proto,
                   who_may_bind=who_may_bind, os=os, privilege_note=privilege_note)

    def to_json(self) -> dict:
        """The `port --json` object (docs/json.md); services listed once per protocol."""
        return {
            "port": self.port,
            "class": self.port_class,
            "services": [{"name": s.name, "proto": p, "description": s.description,
                          **({"range": s.port_text()} if s.is_range else {})}
                         for s in self.services for p in s.protos if self.proto in (None, p)],
            "privileged": self.privileged,
            "in_ephemeral_range": self.in_ephemeral_range,
            "reserved": self.reserved,
            "in_use": list(self.in_use),
            # extra keys (the contract allows more)
            "iana_status": self.iana_status,
            "bind_allowed": self.bind_allowed,
            "unprivileged_port_start": self.unprivileged_port_start,
            "cap_net_bind_service": self.cap_net_bind_service,
            "who_may_bind": self.who_may_bind,
            "ephemeral_range": ({"low": self.ephemeral.low, "high": self.ephemeral.high}
                                if self.ephemeral else None),
            "netns": self.netns,
            "notes": list(self.notes),
        }


# every state that holds a port: what `ss -a` lists, and BOUND_INACTIVE (bound, neither
# listening nor connected: a daemon between bind() and listen(), a failed connect()), which
# sock_diag reports as CLOSE (Linux 6.8+; older kernels ignore the request)
HOLDING_STATES = ("ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE",
                  "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "BOUND_INACTIVE")


def bound_sockets(ports: Iterable[int], netns: str | None = None, facts: HostFacts | None = None,
                  protos: Iterable[str] = IN_USE_PROTOS, owners: bool = False) -> tuple[dict[int, list[dict]], str]:
    """port -> socket rows whose LOCAL port is one of `ports` (TCP/UDP, IPv4/IPv6).

    One snapshot with the kernel-side source-port filter over [min, max] of the ports,
    so asking about one port costs one small netlink dump, not a full table.
    """
    want = set(ports)
    out: dict[int, list[dict]] = {p: [] for p in want}
    if not want:
        return out, "none"

    protos = tuple(protos)
    sport = PortRange(min(want), max(want))
    one = sport.low == sport.high
    held: bool | None = None
    if one:
        # one port is mostly a free one: a plain walk per protocol and family says so; the
        # classified read (two AUTO walks, the listeners, each a walk of the kernel's
        # shared hash) only when something is there. portprobe sends those plain walks
        # without loading the socket table's modules (a third of `port N`'s start-up)
        held = portprobe.any_bound(sport.low, protos, netns or None)
        if held is False:
            return out, "netlink"
    # the socket table's modules load only here: a free port is answered without them
    from .sockets import snapshot
    if one and held is None:       # the probe could not tell: the table's plain read (with its fallbacks)
        probe = snapshot(protos=protos, sport=sport, netns=netns, facts=facts, classify=False,
                         states=HOLDING_STATES)
        if not len(probe):
            return out, probe.backend
    # owners walk every /proc/*/fd (the slow part): only when something holds the port
    table = snapshot(protos=protos, sport=sport, owners=False, netns=netns, facts=facts, states=HOLDING_STATES)
    hits = [i for i in range(len(table)) if table.local_port[i] in want]
    if owners and hits:
        from .sockets import owners as _owners
        _owners.fill(table)
    for i in hits:
        out[table.local_port[i]].append(table.row(i))
    return out, table.backend


def _notes(pf_port: int, privileged: bool, allowed: bool, in_range: bool, reserved: bool,
           start: int, eph: PortRange, netns: str | None = None, prule: PrivilegeRule | None = None) -> list[str]:
    n = []
    if pf_port == 0:
        n.append("port 0 is not a usable port: bind() to port 0 asks the kernel to pick an ephemeral one")
    if privileged:
        # the wording is the platform's own (capabilities exist only on Linux; macOS 10.14+
        # frees the wildcard address): privilege.py holds the per-platform rule
        n.append((prule or PrivilegeRule("linux", 0, start, False)).note(pf_port, allowed))
    if in_range and not reserved:
        n.append(f"inside the ephemeral range {eph}: an outgoing connection may take it first; "
                 f"protect it with `{reserve_add_command(pf_port, netns)}`")
    elif in_range and reserved:
        n.append(f"inside the ephemeral range {eph} but reserved: the kernel will not hand it out")
    return n


def describe_port(port: int, proto: str | None = None, netns: str | None = None, facts: HostFacts | None = None,
             in_use: bool = True, owners: bool = False, reg: registry.Registry | None = None,
             cap: bool | None = None, _bound: dict | None = None, _backend: str | None = None) -> PortFacts:
    """Everything about `port` on this host (or in network namespace `netns`)."""
    check_port(port)
    proto = registry.check_proto(proto)
    if facts is None:
        facts = read_facts(netns)
    reg = reg if reg is not None else registry.default()    # not `reg or`: len() would parse every row
    cap = has_cap_net_bind_service() if cap is None else cap
    protos = (proto,) if proto else registry.PROTOCOLS
    prule = privilege_rule(facts)
    start = facts.unprivileged_port_start
    # binding to a specific address (macOS 10.14+ frees only the wildcard address)
    privileged = prule.needs_privilege(port)
    in_range = port in facts.ephemeral
    reserved = port in facts.reserved
    rows: list[dict] = []
    backend = _backend
    if _bound is not None:
        rows = _bound.get(port, [])
    elif in_use:
        sock_protos = [p for p in IN_USE_PROTOS if proto in (None, p)]
        if sock_protos:
            bound, backend = bound_sockets([port], netns, facts, sock_protos, owners)
            rows = bound[port]
    if proto:
        rows = [r for r in rows if r["proto"] == proto]
    services, iana_status = reg.port_summary(port, proto, protos)
    return PortFacts(
        port=port,
        port_class=port_class(port),
        services=tuple(services),
        iana_status=iana_status,
        privileged=privileged,
        bind_allowed=not privileged or cap,
        in_ephemeral_range=in_range,
        reserved=reserved,
        in_use=tuple(rows),
        ephemeral=facts.ephemeral,
        unprivileged_port_start=start,
        cap_net_bind_service=cap,
        netns=netns,
        in_use_backend=backend,
        notes=tuple(_notes(port, privileged, not privileged or cap, in_range, reserved, start, facts.ephemeral,
                           netns, prule)),
        proto=proto,
        who_may_bind=prule.who_may_bind(port),
        os=facts.os,
        privilege_note=prule.note(port, not privileged or cap) if privileged else None,
    )


def describe_name(name: str, proto: str | None = None, netns: str | None = None, facts: HostFacts | None = None,
                  in_use: bool = True, owners: bool = False,
                  reg: registry.Registry | None = None) -> list[PortFacts]:
    """Every port registered under service `name`, each classified (one socket dump for all)."""

    proto = registry.check_proto(proto)
    reg = reg if reg is not None else registry.default()
    ports = reg.ports_for_name(name, proto)
    if not ports:
        if reg.rows_for_name(name, proto):
            raise BadInput(f"service {name!r} is registered without a port number"
                           + (f" for {proto}" if proto else ""))
        hint = reg.close_names(name)
        raise BadInput(f"no IANA service named {name!r}" + (f" for {proto}" if proto else "")
                       + (f" (did you mean {', '.join(hint)}?)" if hint else ""))
    if facts is None:
        facts = read_facts(netns)
    bound, backend = None, None
    if in_use:
        sock_protos = [p for p in IN_USE_PROTOS if proto in (None, p)]
        bound, backend = bound_sockets(ports, netns, facts, sock_protos, owners) if sock_protos else ({}, None)
    cap = has_cap_net_bind_service()
    return [describe_port(p, proto, netns, facts, in_use=False, reg=reg, cap=cap, _bound=bound, _backend=backend)
            for p in ports]


# the names earlier releases used
classify = describe_port
classify_name = describe_name
