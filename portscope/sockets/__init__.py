"""The live socket table: one facade over the netlink, procfs and psutil backends.

    from portscope.sockets import snapshot
    table = snapshot(("tcp",), states=["ESTABLISHED"])

Linux uses NETLINK_SOCK_DIAG (filters run in the kernel) and falls back to
/proc/net when netlink is refused; other systems use psutil. Every backend
returns the same columnar SocketTable (see table.py), classified by the same
rules (filters.mark_ephemeral), and `table.backend` says which one ran.
"""
from __future__ import annotations

import sys
from collections import Counter
from contextlib import AbstractContextManager, nullcontext

from .. import netns as _netns  # ctypes on Python < 3.12: only when needed
from ..errors import BadInput, Unsupported
from ..host import host_facts
from . import netlink, other, procfs
from . import owners as _owners
from .filters import counts_of, mark_ephemeral
from .table import PROTO_NAMES, STATE_CODES, SocketTable

TYPE_CHECKING = False     # typing's would import typing on `portscope port N`'s path
if TYPE_CHECKING:
    from typing import Iterable

    from ..host import HostFacts
    from ..netns import Namespace
    from ..ports import PortRange

ALL_PROTOS = ("tcp", "udp", "udplite", "sctp")
BACKENDS = ("netlink", "procfs", "psutil")


def state_codes(states: str | Iterable[str] | None) -> set[int] | None:
    """State names (case-insensitive) -> kernel codes; SYN_RECV includes NEW_SYN_RECV."""
    if states is None:
        return None
    if isinstance(states, str):
        states = [states]
    out: set[int] = set()
    for s in states:
        name = str(s).strip().upper().replace("-", "_")
        if name in ("SYN_RECV", "NEW_SYN_RECV"):
            out.update((3, 12))
        elif name in STATE_CODES:
            out.add(STATE_CODES[name])
        else:
            known = ", ".join(sorted(n for n in STATE_CODES if n != "BOUND_INACTIVE"))
            raise BadInput(f"unknown socket state {s!r} (expected one of: {known})")
    return out


def _check(protos, families) -> tuple[tuple[str, ...], tuple[int, ...]]:
    if isinstance(protos, str):
        protos = (protos,)
    ps = tuple(dict.fromkeys(str(p).strip().lower() for p in protos))
    for p in ps:
        if p not in ALL_PROTOS:
            raise BadInput(f"unknown protocol {p!r} (expected one of: {', '.join(ALL_PROTOS)})")
    if isinstance(families, int):
        families = (families,)
    fs = tuple(dict.fromkeys(int(f) for f in families))
    for f in fs:
        if f not in (4, 6):
            raise BadInput(f"unknown address family {f!r} (expected 4 or 6)")
    return ps, fs


def _linux_read(backend, protos, families, states, sport, auto, owners, model_auto=False,
                inodes=True) -> SocketTable:
    if backend in (None, "netlink"):
        # SCTP comes from /proc/net/sctp even on the netlink path: sctp_diag reports
        # association states in SCTP's own numbering and multi-homed addresses in
        # attributes, and no kernel here offers it to verify a parser against
        inet = tuple(p for p in protos if p != "sctp")
        try:
            table = netlink.read_table(inet, families, states, sport, auto=auto, model_auto=model_auto,
                                       inodes=inodes or owners)
            if "sctp" in protos:
                table.extend(_procfs(("sctp",), families, states, sport))
            return table
        except netlink.NetlinkRefused as e:
            if backend == "netlink":
                raise Unsupported(f"netlink sock_diag refused: {e}")
            reason = str(e)
        table = _procfs(protos, families, states, sport)
        table.notes.append(f"netlink sock_diag refused ({reason}); read /proc/net instead")
        return table
    if backend == "procfs":
        return _procfs(protos, families, states, sport)
    return other.read_table(protos, families, states, sport, owners=owners)


def _procfs(protos, families, states, sport) -> SocketTable:
    return procfs.read_table(protos, families, states, sport)


def snapshot(protos: str | Iterable[str] = ALL_PROTOS, *, families: int | Iterable[int] = (4, 6),
             states: str | Iterable[str] | None = None, sport: PortRange | None = None, owners: bool = False,
             netns: str | Namespace | None = None, backend: str | None = None, facts: HostFacts | None = None,
             classify: bool = True, auto: bool | None = None, model_auto: bool = False,
             inodes: bool = True) -> SocketTable:
    """Every socket of the chosen protocols, families and states (see module doc).

    sport: a PortRange; only sockets whose local port lies inside it (in the kernel
    with netlink). owners: fill table.pid / table.command (walks /proc/*/fd).
    classify=False skips the ephemeral decision (table.ephemeral stays empty) for
    callers that only count. auto: ask sock_diag for the kernel's auto-bound bit
    (default: when classifying; pressure needs it without classifying). model_auto (with
    auto, netlink only): the bit only where the pressure model reads it, TCP sockets with a
    remote port, others AUTO_UNKNOWN (netlink.read_table: fewer kernel walks).
    inodes=False: rows may carry inode 0 where reading it costs (netlink.read_table); never
    with owners, which finds each socket's process by its inode.
    """
    if auto is None:
        auto = classify
    ps, fs = _check(protos, families)
    codes = state_codes(states)
    if backend is not None and backend not in BACKENDS:
        raise BadInput(f"unknown socket backend {backend!r} (expected one of: {', '.join(BACKENDS)})")
    linux = sys.platform.startswith("linux")
    if not linux and backend in ("netlink", "procfs"):
        raise Unsupported(f"the {backend} socket backend needs Linux")
    if netns and not linux:
        raise Unsupported("--netns is available on Linux only")

    where: AbstractContextManager[None] = _netns.entered(netns) if netns else nullcontext()
    with where:
        if linux:
            table = _linux_read(backend, ps, fs, codes, sport, auto=auto, owners=owners, model_auto=model_auto,
                                inodes=inodes)
        else:
            table = other.read_table(ps, fs, codes, sport, owners=owners)
    if classify:
        if facts is None:
            facts = host_facts(str(netns) if netns else None)   # only its range is used here
        mark_ephemeral(table, facts.ephemeral, facts.reserved)
    if owners and table.pid is None:       # psutil tables come with their owners
        _owners.fill(table)
    return table


def count(protos: str | Iterable[str] = ALL_PROTOS, *, families: int | Iterable[int] = (4, 6),
          states: str | Iterable[str] | None = None, netns: str | Namespace | None = None,
          backend: str | None = None) -> dict:
    """Sockets by protocol and state without a table: filters.counts()'s keys plus
    "backend", "warnings" and "notes" (as a snapshot's). With netlink the kernel's
    replies are counted as they arrive, so memory does not grow with the socket count;
    other backends count a classify=False snapshot."""
    ps, fs = _check(protos, families)
    codes = state_codes(states)
    if backend is not None and backend not in BACKENDS:
        raise BadInput(f"unknown socket backend {backend!r} (expected one of: {', '.join(BACKENDS)})")
    if sys.platform.startswith("linux") and backend in (None, "netlink"):
        where: AbstractContextManager[None] = _netns.entered(netns) if netns else nullcontext()
        with where:
            try:
                pairs = netlink.count_states(tuple(p for p in ps if p != "sctp"), fs, codes)
            except netlink.NetlinkRefused as e:
                if backend == "netlink":
                    raise Unsupported(f"netlink sock_diag refused: {e}")
                pairs = None        # the snapshot below falls back to procfs and says so
            if pairs is not None:
                extra = _procfs(("sctp",), fs, codes, None) if "sctp" in ps else SocketTable(backend="procfs")
                pairs.update(zip(extra.proto, extra.state))
                return {"backend": "netlink", "warnings": extra.warnings, "notes": extra.notes,
                        **counts_of(pairs)}
    table = snapshot(ps, families=fs, states=states, netns=netns, backend=backend, classify=False)
    return {"backend": table.backend, "warnings": table.warnings, "notes": table.notes,
            **counts_of(Counter(zip(table.proto, table.state)))}


__all__ = ["snapshot", "count", "SocketTable", "ALL_PROTOS", "BACKENDS", "state_codes", "PROTO_NAMES"]
