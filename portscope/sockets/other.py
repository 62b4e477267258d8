"""psutil backend: macOS, Windows, FreeBSD (and Linux when forced with backend="psutil").

psutil.net_connections() gives family, type, addresses, status and pid, but no
uid, no inode and no auto-bound flag: uid/inode are 0, auto_bound is
AUTO_UNKNOWN, and the ephemeral side is decided by the host's range. psutil
knows only TCP and UDP. A socket shared by several processes (pre-fork servers)
is listed by psutil once per process; it is kept once here, with the first pid.
"""
from __future__ import annotations

import _socket as socket  # the C module: socket.py builds IntEnums of every constant at import (~3 ms)
from array import array

from ..errors import NotPermitted, Unsupported
from .table import AUTO_UNKNOWN, PROTO_TCP, PROTO_UDP, STATE_CODES, TCP_CLOSE, TCP_ESTABLISHED, SocketTable

TYPE_CHECKING = False     # typing's would import typing on `portscope port N`'s path
if TYPE_CHECKING:
    from typing import Collection

    from ..ports import PortRange

_ZERO = {4: bytes(4), 6: bytes(16)}


def read_table(protos: Collection[str], families: Collection[int], states: set[int] | None,
               sport: PortRange | None, owners: bool = False) -> SocketTable:
    """Sockets from psutil.net_connections() (TCP and UDP only), filtered like the Linux backends."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dependency
        raise Unsupported("the psutil socket backend needs the psutil package")
    table = SocketTable(backend="psutil")
    pids = array("i")
    kinds = []
    if "tcp" in protos:
        kinds.append(("tcp", PROTO_TCP))
    if "udp" in protos:
        kinds.append(("udp", PROTO_UDP))
    skipped = [p for p in protos if p not in ("tcp", "udp")]
    if skipped:
        table.notes.append(f"psutil cannot list {', '.join(skipped)} sockets")
    seen = set()
    for kind, code in kinds:
        try:
            conns = psutil.net_connections(kind=kind)
        except psutil.AccessDenied:
            raise NotPermitted("listing sockets needs administrator rights on this system (psutil AccessDenied)")
        for c in conns:
            fam = 4 if c.family == socket.AF_INET else 6 if c.family == socket.AF_INET6 else 0
            if fam not in families:
                continue
            af = socket.AF_INET if fam == 4 else socket.AF_INET6
            try:
                lip, lport = (c.laddr.ip, c.laddr.port) if c.laddr else (None, 0)
                rip, rport = (c.raddr.ip, c.raddr.port) if c.raddr else (None, 0)
                la = socket.inet_pton(af, lip.split("%")[0]) if lip else _ZERO[fam]
                ra = socket.inet_pton(af, rip.split("%")[0]) if rip else _ZERO[fam]
            except (OSError, AttributeError, ValueError):
                table.warnings.append(f"psutil: skipped unparsable socket {c!r}")
                continue
            if code == PROTO_UDP:
                st = TCP_ESTABLISHED if rport else TCP_CLOSE
            else:
                st = STATE_CODES.get(c.status, TCP_CLOSE)
            if states is not None and st not in states:
                continue
            if sport is not None and not sport.low <= lport <= sport.high:
                continue
            key = (code, fam, st, la, lport, ra, rport)
            if key in seen:
                continue
            seen.add(key)
            table.append(code, fam, st, la, lport, ra, rport, 0, 0, AUTO_UNKNOWN)
            pids.append(c.pid if c.pid is not None else -1)
            if st == 10:
                table.listen_ports.add((code, lport))
    if owners:
        table.pid = pids
        fill_owners(table)
    return table


def fill_owners(table: SocketTable) -> None:
    """Commands for the pids psutil already gave."""
    import psutil
    names: dict[int, str | None] = {}
    cmds: list[str | None] = []
    # called only on tables read_table() gave their pids: never None here
    for p in table.pid or ():
        if p < 0:
            cmds.append(None)
            continue
        if p not in names:
            try:
                names[p] = psutil.Process(p).name()
            except (psutil.Error, OSError):
                names[p] = None
        cmds.append(names[p])
    table.command = cmds
