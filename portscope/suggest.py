"""Ports a new server should use, and why each is safe.

A port is suggested when, on this host (or network namespace) right now:
  - no TCP or UDP socket holds it (socket table) and a trial bind() of TCP and UDP on
    0.0.0.0 and :: succeeds (the kernel's own answer; the table can miss a socket in a race);
  - it lies outside the ephemeral range, so connect() and bind(0) never hand it out;
  - it is not in ip_local_reserved_ports (an admin earmarked those for something);
  - it is unprivileged (>= ip_unprivileged_port_start), or privileged when asked;
  - IANA has not assigned or reserved it for the chosen transports (unless allowed);
  - it lies outside IANA's dynamic range 49152-65535, which Windows, macOS and the
    BSDs use as their ephemeral range (unless allowed).
Free now is not a reservation: nothing stops another program from binding it later.
`check(port)` answers the same questions for a port the user insists on, and when
that port sits inside the ephemeral range it gives the `portscope reserve` command
that stops the kernel from handing it to outgoing connections.
"""
from __future__ import annotations

import errno
import random
import socket
from dataclasses import dataclass
from typing import Iterable

from . import netns as _netns
from . import registry
from .errors import BadInput
from .host import HostFacts
from .host import host_facts as read_facts
from .portinfo import bound_sockets, has_cap_net_bind_service
from .ports import DYNAMIC, IANA_DYNAMIC, PortRange, check_port, port_class
from .remedies import reserve_add_command
from .sockets import snapshot

MAX_TRIALS = 500   # trial binds per call: bounded even when the table is stale


@dataclass(frozen=True)
class Suggestion:
    """One port judged by suggest's rules: why it is safe, or what stands in the way."""

    port: int
    reasons: tuple[str, ...]                 # why it is safe
    problems: tuple[str, ...] = ()           # why it is not (check mode)
    commands: tuple[str, ...] = ()           # what would make it safe
    in_use: tuple = ()                       # socket rows holding it now

    @property
    def safe(self) -> bool:
        """True when no rule objects to the port."""
        return not self.problems

    def to_json(self) -> dict:
        """One element of `ports` in `suggest --json`."""
        return {"port": self.port, "reasons": list(self.reasons), "safe": self.safe,
                "problems": list(self.problems), "commands": list(self.commands),
                "in_use": list(self.in_use)}


@dataclass(frozen=True)
class SuggestResult:
    """What `suggest` found (or what `suggest --port N` judged), with the facts it used."""

    ports: tuple[Suggestion, ...]
    protos: tuple[str, ...]
    ephemeral: PortRange
    unprivileged_port_start: int
    searched: PortRange | None = None        # None in check mode
    eligible: int = 0                        # ports that passed every rule but the bind test
    warnings: tuple[str, ...] = ()
    netns: str | None = None
    sockets_backend: str | None = None

    def to_json(self) -> dict:
        """The `suggest --json` document (docs/json.md)."""
        return {
            "ports": [s.to_json() for s in self.ports],
            "protos": list(self.protos),
            "ephemeral_range": {"low": self.ephemeral.low, "high": self.ephemeral.high},
            "unprivileged_port_start": self.unprivileged_port_start,
            "searched": ({"low": self.searched.low, "high": self.searched.high} if self.searched else None),
            "eligible": self.eligible,
            "warnings": list(self.warnings),
            "netns": self.netns,
        }


def _protos(protos) -> tuple[str, ...]:
    if isinstance(protos, str):
        protos = protos.replace(",", " ").split()
    out = tuple(dict.fromkeys(str(registry.check_proto(p)) for p in protos))
    if not out:
        raise BadInput("--proto needs at least one protocol")
    return out


def trial_bind(port: int) -> str | None:
    """Bind TCP and UDP on 0.0.0.0 and :: (v6only) to `port` and let go at once.

    Returns None when all binds succeed, else why not. Runs in the calling thread's
    network namespace. No SO_REUSEADDR: a TIME_WAIT left on the port counts as busy,
    as it would for a server that does not set it.
    """
    held = []
    try:
        for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            for typ, name in ((socket.SOCK_STREAM, "tcp"), (socket.SOCK_DGRAM, "udp")):
                try:
                    s = socket.socket(fam, typ)
                except OSError as e:
                    if fam == socket.AF_INET6 and e.errno == errno.EAFNOSUPPORT:
                        break  # no IPv6 on this host: nothing to collide with there
                    raise
                held.append(s)
                if fam == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    s.bind((addr, port))
                except OSError as e:
                    if fam == socket.AF_INET6 and e.errno == errno.EADDRNOTAVAIL:
                        break  # IPv6 disabled in this namespace
                    v = "6" if fam == socket.AF_INET6 else ""
                    return f"bind {name}{v} {addr} port {port}: {e.strerror or e}"
    finally:
        for s in held:
            s.close()
    return None


def _bound_ports(netns, facts) -> tuple[dict[int, list[int]], str, int]:
    """port -> table rows holding it (TCP and UDP, every state), the backend, the socket count."""

    table = snapshot(("tcp", "udp"), netns=netns, facts=facts, classify=False)
    by_port: dict[int, list[int]] = {}
    for i in range(len(table)):
        by_port.setdefault(table.local_port[i], []).append(i)
    return by_port, table.backend, len(table)


def _search_range(privileged: bool, allow_dynamic: bool, start: int, search: PortRange | None) -> PortRange:
    if privileged:
        if start <= 1:
            raise BadInput(f"this host has no privileged ports (ip_unprivileged_port_start={start})")
        base = PortRange(1, start - 1)
    else:
        base = PortRange(max(start, 1024 if search is None else 1, 1), 65535 if allow_dynamic else 49151)
    if search is None:
        return base
    lo, hi = max(base.low, search.low), min(base.high, search.high)
    if lo > hi:
        what = "privileged" if privileged else "unprivileged"
        raise BadInput(f"--range {search} holds no {what} ports (ip_unprivileged_port_start={start}"
                       + ("" if privileged or allow_dynamic or search.high <= 49151
                          else "; add --allow-dynamic for 49152-65535") + ")")
    return PortRange(lo, hi)


def suggest(count: int = 3, protos: Iterable[str] = ("tcp",), *, allow_registered: bool = False, privileged: bool = False,
            allow_dynamic: bool = False, search: PortRange | None = None, netns: str | None = None,
            facts: HostFacts | None = None, seed: int | None = None, reg: registry.Registry | None = None) -> SuggestResult:
    """Up to `count` ports that pass every rule in the module docstring, chosen at random
    among the eligible ones (so two daemons asking do not get the same answer)."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1000:
        raise BadInput(f"--count must be an integer in 1..1000, got {count!r}")
    protos = _protos(protos)
    if facts is None:
        facts = read_facts(netns)
    reg = reg or registry.default()
    start = facts.unprivileged_port_start
    rng = _search_range(privileged, allow_dynamic, start, search)
    eph, reserved = facts.ephemeral, facts.reserved

    bound, backend, nsock = _bound_ports(netns, facts)
    ok = bytearray(65536)
    ok[rng.low:rng.high + 1] = b"\x01" * rng.size
    ok[0] = 0
    ok[eph.low:eph.high + 1] = bytes(eph.size)
    for r in reserved.ranges:
        ok[r.low:r.high + 1] = bytes(r.size)
    if not allow_registered:
        for pr in protos:
            # bytewise ok AND NOT taken over all 65536 flags at once (0/1 bytes)
            taken = int.from_bytes(reg.taken_ports(pr), "little")
            ok = bytearray((int.from_bytes(ok, "little") & ~taken).to_bytes(65536, "little"))
    for p in bound:
        ok[p] = 0
    eligible = [p for p in range(rng.low, rng.high + 1) if ok[p]]

    order = random.Random(seed).sample(eligible, len(eligible)) if eligible else []
    picked: list[Suggestion] = []
    warnings: list[str] = []
    trials = 0
    with _netns.entered(netns):
        for p in order:
            if len(picked) == count or trials >= MAX_TRIALS:
                break
            trials += 1
            why = trial_bind(p)
            if why is None:
                picked.append(Suggestion(p, tuple(_reasons(p, protos, facts, reg, allow_registered,
                                                           privileged, backend, nsock))))
            elif "ermission" in why:
                warnings.append(f"cannot bind privileged ports here to test them ({why}); "
                                "run as root or with CAP_NET_BIND_SERVICE")
                break
    if len(picked) < count:
        warnings.append(f"found {len(picked)} of {count} ports: {len(eligible)} ports in {rng} passed every rule"
                        + (f", {trials} bind tests tried" if trials else "")
                        + _excluded(rng, eph, reserved, bound, protos, reg, allow_registered))
    return SuggestResult(tuple(sorted(picked, key=lambda s: s.port)), protos, eph, start, rng,
                         len(eligible), tuple(warnings), netns, backend)


suggest_ports = suggest     # the name in the flat API (portscope.suggest is this module)


def _excluded(rng, eph, reserved, bound, protos, reg, allow_registered) -> str:
    """Why the search range came up short, for the warning."""
    lo, hi = max(rng.low, eph.low), min(rng.high, eph.high)
    parts = [f"{max(0, hi - lo + 1)} in the ephemeral range {eph}",
             f"{reserved.count_in(rng)} reserved",
             f"{sum(1 for p in bound if p in rng)} bound now"]
    if not allow_registered:
        flags = [reg.taken_ports(x) for x in protos]
        taken = sum(1 for p in rng if any(f[p] for f in flags))
        parts.append(f"{taken} assigned or reserved by IANA")
    return " (excluded: " + ", ".join(parts) + ")"


def _iana_reason(port: int, protos, reg, allow_registered: bool) -> str:
    parts = []
    for p in protos:
        names = sorted({s.name for s in reg.services_for_port(port, p)})
        st = reg.status(port, p)
        if names:
            parts.append(f"{p}: assigned to {', '.join(names)}"
                         + (" (allowed by --allow-registered)" if allow_registered else ""))
        else:
            parts.append(f"{p}: {st}")
    return "IANA " + "; ".join(parts)


def _reasons(port, protos, facts, reg, allow_registered, privileged, backend, nsock) -> list[str]:
    start = facts.unprivileged_port_start
    out = [
        f"free now: no TCP or UDP socket holds it ({nsock} socket{'s' * (nsock != 1)} checked via {backend})",
        "a trial bind of TCP and UDP on 0.0.0.0 and :: succeeded just now",
        f"outside the ephemeral range {facts.ephemeral}: connect() and bind(0) never hand it out",
        "not in ip_local_reserved_ports (not earmarked for another service here)",
    ]
    if privileged:
        out.append(f"privileged (below ip_unprivileged_port_start={start}): only root or "
                   "CAP_NET_BIND_SERVICE can bind it, so no ordinary user can take it first")
    else:
        out.append(f"unprivileged (ip_unprivileged_port_start={start}): your server needs no root to bind it")
    out.append(_iana_reason(port, protos, reg, allow_registered))
    if port_class(port) != DYNAMIC:
        out.append("outside IANA's dynamic range 49152-65535, the ephemeral range of Windows and macOS")
    return out


def check(port: int, protos: Iterable[str] = ("tcp",), *, allow_registered: bool = False, privileged: bool = False,
          allow_dynamic: bool = False, netns: str | None = None, facts: HostFacts | None = None,
          reg: registry.Registry | None = None) -> SuggestResult:
    """Judge a port the user insists on by the same rules; say what would make it safe."""
    check_port(port)
    protos = _protos(protos)
    if facts is None:
        facts = read_facts(netns)
    reg = reg or registry.default()

    start, eph = facts.unprivileged_port_start, facts.ephemeral
    held, backend = bound_sockets([port], netns, facts)
    rows = held[port]
    reasons, problems, commands = [], [], []
    if port == 0:
        problems.append("port 0 means 'any port': bind(0) asks the kernel to choose")
    if rows:
        problems.append("in use now: " + "; ".join(
            f"{r['proto']}{'6' if r['family'] == 6 else ''} {r['state']} "
            + (f"[{r['local_addr']}]:{port}" if r["family"] == 6 else f"{r['local_addr']}:{port}") for r in rows))
    else:
        with _netns.entered(netns):
            why = trial_bind(port) if port else None
        if why:
            problems.append(f"trial bind failed: {why}")
        elif port:
            reasons.append(f"free now: no TCP or UDP socket holds it (via {backend}) and a trial bind succeeded")
    if port in eph:
        if port in facts.reserved:
            reasons.append(f"inside the ephemeral range {eph} but in ip_local_reserved_ports: "
                           "connect() and bind(0) skip it")
        else:
            problems.append(f"inside the ephemeral range {eph}: an outgoing connection or bind(0) "
                            "may take it before your server starts")
            commands.append(reserve_add_command(port, netns))
    else:
        reasons.append(f"outside the ephemeral range {eph}: connect() and bind(0) never hand it out")
        if port in facts.reserved:
            reasons.append("in ip_local_reserved_ports: check it was not reserved for another service")
    if 0 < port < start:
        cap = has_cap_net_bind_service()
        if privileged:
            reasons.append(f"privileged (below ip_unprivileged_port_start={start}): only root or "
                           "CAP_NET_BIND_SERVICE can bind it")
        else:
            problems.append(f"privileged (below ip_unprivileged_port_start={start}): the server needs root "
                            "or CAP_NET_BIND_SERVICE" + ("" if cap else ", which this process lacks"))
    elif port:
        reasons.append(f"unprivileged (ip_unprivileged_port_start={start}): no root needed to bind it")
    assigned = [p for p in protos if reg.services_for_port(port, p)]
    iana = _iana_reason(port, protos, reg, allow_registered)
    if assigned and not allow_registered:
        problems.append(iana + ": a client or admin may expect that service there")
    else:
        reasons.append(iana)
    if port in IANA_DYNAMIC and not allow_dynamic:
        problems.append("inside IANA's dynamic range 49152-65535: the ephemeral range of Windows and macOS")
    return SuggestResult((Suggestion(port, tuple(reasons), tuple(problems), tuple(commands), tuple(rows)),),
                         protos, eph, start, None, 0, (), netns, backend)
