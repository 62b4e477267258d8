"""The socket table: one columnar snapshot shared by conns, pressure and the exporter.

At 100k+ sockets per-socket Python objects are the cost, so the table keeps one
array per column; column i of every array describes socket i. Addresses stay raw
(4 or 16 bytes, network order) and are formatted only when rows are asked for.
"""
from __future__ import annotations

import _socket as socket  # the C module: socket.py builds IntEnums of every constant at import (~3 ms)
from array import array

TYPE_CHECKING = False     # typing's would import typing on `portscope port N`'s path
if TYPE_CHECKING:
    from typing import Iterator

PROTO_TCP = 6
PROTO_UDP = 17
PROTO_SCTP = 132
PROTO_UDPLITE = 136
PROTO_NAMES = {PROTO_TCP: "tcp", PROTO_UDP: "udp", PROTO_UDPLITE: "udplite", PROTO_SCTP: "sctp"}
PROTO_CODES = {v: k for k, v in PROTO_NAMES.items()}

# include/net/tcp_states.h; NEW_SYN_RECV (request sockets) is reported as SYN_RECV, as ss does
STATE_NAMES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
    6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
    11: "CLOSING", 12: "SYN_RECV", 13: "BOUND_INACTIVE",
}
STATE_CODES = {v: k for k, v in STATE_NAMES.items() if k != 12}
TCP_ESTABLISHED, TCP_TIME_WAIT, TCP_CLOSE, TCP_LISTEN = 1, 6, 7, 10

# `ephemeral` column
EPH_NONE, EPH_LOCAL, EPH_REMOTE = 0, 1, 2
EPH_NAMES = {EPH_NONE: None, EPH_LOCAL: "local", EPH_REMOTE: "remote"}
# `method` column: how the ephemeral side was decided
METHOD_KERNEL, METHOD_RANGE = 1, 2
METHOD_NAMES = {0: None, METHOD_KERNEL: "kernel", METHOD_RANGE: "range"}
# `auto_bound` column: 1 the kernel chose the local port (sock_diag AUTO), 0 the program
# bound it, 2 unknown (procfs and psutil cannot tell)
AUTO_NO, AUTO_YES, AUTO_UNKNOWN = 0, 1, 2


def format_addr(raw: bytes) -> str:
    """As ss prints it: dotted IPv4, compressed IPv6, v4-mapped as ::ffff:a.b.c.d."""
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    return socket.inet_ntop(socket.AF_INET6, raw)


class SocketTable:
    """Sockets as columns (arrays and lists, one entry per row): 100k rows cost no per-socket object.
    (A plain class, not a dataclass: `import dataclasses` costs more than `port N`'s socket read.)"""

    def __init__(self, backend: str) -> None:
        self.backend = backend                        # "netlink" | "procfs" | "psutil"
        self.proto: array = array("B")
        self.family: array = array("B")               # 4 | 6
        self.state: array = array("B")                # kernel state code
        self.local_addr: list = []                    # raw bytes
        self.local_port: array = array("H")
        self.remote_addr: list = []                   # raw bytes
        self.remote_port: array = array("H")
        self.uid: array = array("I")
        self.inode: array = array("Q")
        self.ephemeral: array = array("B")            # EPH_*
        self.method: array = array("B")               # METHOD_*
        self.auto_bound: array = array("B")           # AUTO_*
        self.pid: array | None = None                 # with owners; -1 unknown
        self.command: list | None = None
        self.cgroup: list | None = None               # with conns --process: per row a dict or None (sockets/cgroups.py)
        # SCTP multi-homing: row -> all local / remote addresses (raw), primary first
        self.extra_local: dict = {}
        self.extra_remote: dict = {}
        self.warnings: list = []                      # skipped lines etc.
        # (proto, port) of every listener the backend saw, even when LISTEN was filtered
        # out of the rows: it tells accepted server sockets from clients
        self.listen_ports: set = set()
        self.notes: list = []                         # how the table was read (fallbacks), for --verbose

    def __eq__(self, other: object) -> bool:
        return other.__class__ is self.__class__ and vars(self) == vars(other)

    __hash__ = None     # type: ignore[assignment]  # mutable, as the dataclass was

    def __repr__(self) -> str:
        return f"SocketTable(backend={self.backend!r}, rows={len(self)})"

    def __len__(self) -> int:
        return len(self.proto)

    def append(self, proto: int, family: int, state: int, local_addr: bytes, local_port: int,
               remote_addr: bytes, remote_port: int, uid: int = 0, inode: int = 0,
               auto_bound: int = AUTO_UNKNOWN) -> int:
        """Add one unclassified row; returns its index. (The netlink reader fills columns
        in bulk from the kernel's records instead: at 100k rows a call per row costs.)"""
        self.proto.append(proto)
        self.family.append(family)
        self.state.append(state)
        self.local_addr.append(local_addr)
        self.local_port.append(local_port)
        self.remote_addr.append(remote_addr)
        self.remote_port.append(remote_port)
        self.uid.append(uid)
        self.inode.append(inode)
        self.auto_bound.append(auto_bound)
        return len(self.proto) - 1

    def extend(self, other: "SocketTable") -> None:
        """Append another backend's rows (same columns; unclassified, without owners)."""
        base = len(self)
        for name in ("proto", "family", "state", "local_addr", "local_port", "remote_addr",
                     "remote_port", "uid", "inode", "auto_bound"):
            getattr(self, name).extend(getattr(other, name))
        self.extra_local.update({base + i: v for i, v in other.extra_local.items()})
        self.extra_remote.update({base + i: v for i, v in other.extra_remote.items()})
        self.warnings.extend(other.warnings)
        self.notes.extend(other.notes)
        self.listen_ports |= other.listen_ports

    def row(self, i: int) -> dict:
        """One socket in the JSON contract's shape."""
        d = {
            "proto": PROTO_NAMES.get(self.proto[i], str(self.proto[i])),
            "family": self.family[i],
            "state": STATE_NAMES.get(self.state[i], str(self.state[i])),
            "local_addr": format_addr(self.local_addr[i]),
            "local_port": self.local_port[i],
            "remote_addr": format_addr(self.remote_addr[i]),
            "remote_port": self.remote_port[i],
            "uid": self.uid[i],
            "inode": self.inode[i],
            # empty columns when the snapshot was taken with classify=False
            "ephemeral": EPH_NAMES[self.ephemeral[i]] if i < len(self.ephemeral) else None,
            "ephemeral_method": METHOD_NAMES.get(self.method[i]) if i < len(self.method) else None,
        }
        if i in self.extra_local:
            d["local_addrs"] = [format_addr(a) for a in self.extra_local[i]]
        if i in self.extra_remote:
            d["remote_addrs"] = [format_addr(a) for a in self.extra_remote[i]]
        if self.pid is not None:
            p = self.pid[i]
            d["pid"] = p if p >= 0 else None
            d["command"] = self.command[i] if self.command is not None else None
        if self.cgroup is not None:
            d["cgroup"] = self.cgroup[i]
        return d

    def rows(self) -> Iterator[dict]:
        """Every row in the JSON contract's shape (builds a dict per row: for output, not counting)."""
        for i in range(len(self)):
            yield self.row(i)
