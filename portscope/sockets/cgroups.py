"""Per-socket cgroup: which container or pod opened a socket, even in the host namespace.

Pods with `hostNetwork: true` share the node's network namespace, so the namespace does
not tell them apart; the cgroup of the process that created each socket does. sock_diag
sends it as INET_DIAG_CGROUP_ID (attribute 21, u64, Linux >= 5.9 with
CONFIG_SOCK_CGROUP_DATA) with every full socket, unasked: TIME_WAIT and request
(SYN_RECV) sockets are not full sockets and carry none. The id is the cgroup v2
directory's inode number, so a walk of the cgroup2 mount turns it into a path, and
portscope.containers turns the path into a container and pod.

This is a separate dump with a plain per-message parser, only for `conns --process`:
the fast reader in netlink.py keeps only the fixed 88-byte head of each reply.
"""
from __future__ import annotations

import os
import socket
import struct
from typing import Iterable

from .. import containers
from ..netns import entered
from . import netlink
from .table import PROTO_CODES, SocketTable

INET_DIAG_CGROUP_ID = 21
_U64 = struct.Struct("=Q")


def read_ids(protos: Iterable[str] = ("tcp", "udp", "udplite"),
             families: Iterable[int] = (4, 6)) -> dict[tuple, int]:
    """key(socket) -> cgroup id for every full socket of the calling thread's namespace
    (empty when the kernel sends no cgroup ids). The key is (proto, family, local
    address, local port, remote address, remote port, inode): a socket still in a
    listener's accept queue has no inode yet, but has a cgroup."""
    out: dict[tuple, int] = {}
    sock = netlink.open_socket()
    buf = bytearray(netlink.RECV_BYTES)
    seq = 0
    try:
        for p in protos:
            code = PROTO_CODES[p]
            for fam in families:
                seq += 1
                try:
                    for off, length in netlink.records(sock, fam, code, netlink.ALL_STATES, seq, buf):
                        cid = _cgroup_id(buf, off, length)
                        if cid is not None:
                            out[_key(buf, off, code)] = cid
                except netlink.ProtocolMissing:
                    continue
    finally:
        sock.close()
    return out


def _cgroup_id(buf: bytearray, off: int, length: int) -> int | None:
    for atype, at, alen in netlink.attributes(buf, off, length):
        if atype == INET_DIAG_CGROUP_ID and alen >= 8:
            return _U64.unpack_from(buf, at)[0]
    return None


def _key(buf: bytearray, off: int, code: int) -> tuple:
    fam = 4 if buf[off + 16] == socket.AF_INET else 6
    w = 4 if fam == 4 else 16
    sport, dport = struct.unpack_from("!HH", buf, off + 20)
    inode = struct.unpack_from("=I", buf, off + 84)[0]
    return (code, fam, bytes(buf[off + 24:off + 24 + w]), sport, bytes(buf[off + 40:off + 40 + w]), dport, inode)


def cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup or .../unified)."""
    try:
        with open(mountinfo) as f:
            for line in f:
                if " - cgroup2 " in line:
                    return line.split(" ")[4]
    except OSError:
        pass
    return None


def paths(ids: Iterable[int], mount: str | None = None) -> dict[int, str]:
    """cgroup id -> path below the cgroup2 mount ("/" for the root), for the ids given.
    The walk stops as soon as every id is found."""
    mount = mount or cgroup2_mount()
    want = set(ids)
    out: dict[int, str] = {}
    if not mount or not want:
        return out
    for root, _dirs, _files in os.walk(mount):
        try:
            ino = os.stat(root).st_ino
        except OSError:
            continue                     # a cgroup removed during the walk
        if ino in want:
            rel = "/" + os.path.relpath(root, mount)
            out[ino] = "/" if rel == "/." else rel
            if len(out) == len(want):
                break
    return out


def fill(table: SocketTable, netns: str | None = None) -> None:
    """Set table.cgroup: per row, {"id", "path", "container", "pod"} or None (TIME_WAIT,
    request sockets, a kernel without cgroup ids, or another backend than netlink)."""
    table.cgroup = [None] * len(table)
    if table.backend != "netlink":
        return
    with entered(netns):
        ids = read_ids()
    where = paths(set(ids.values()))
    cache: dict[int, dict] = {}
    t = table
    for i in range(len(t)):
        cid = ids.get((t.proto[i], t.family[i], t.local_addr[i], t.local_port[i], t.remote_addr[i],
                       t.remote_port[i], t.inode[i]))
        if cid is None:
            continue
        info = cache.get(cid)
        if info is None:
            path = where.get(cid)
            ident = containers.from_path(path) if path else containers.NONE
            info = cache[cid] = {
                "id": cid, "path": path,
                "container": ident.container.to_json() if ident.container else None,
                "pod": ident.pod.to_json() if ident.pod else None}
        table.cgroup[i] = info


def label(cg: dict | None, state: int) -> str:
    """The CGROUP column of `conns --process`."""
    if cg is None:
        return "(none: TIME_WAIT)" if state == 6 else "(none: request socket)" if state in (3, 12) else "-"
    if cg["container"]:
        c = cg["container"]
        out = f"{c['runtime']}:{c['id'][:12]}"
        return out + (f" pod {cg['pod']['uid']}" if cg["pod"] else "")
    if cg["pod"]:
        return f"pod {cg['pod']['uid']}"
    return cg["path"] or f"id {cg['id']}"
