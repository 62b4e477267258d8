"""Socket owners: inode -> pid and command, in one pass over /proc/*/fd.

The slow part of any socket listing (ss -p, psutil), so it runs only when asked.
One readlink per descriptor into one dict: no per-socket search. Processes that
exit, or whose fds we may not read, are skipped, never fatal. Socket inodes are
global across network namespaces, so the walk is the same with --netns.
"""
from __future__ import annotations

import os
from array import array

TYPE_CHECKING = False     # typing's would import typing on `portscope port N`'s path

if TYPE_CHECKING:
    from .table import SocketTable


def socket_inodes(proc: str = "/proc") -> dict[int, int]:
    """inode -> pid for every socket descriptor visible in /proc (lowest pid wins).

    stat() through each /proc/PID/fd entry, relative to the directory's fd: the
    target's st_ino is the socket inode. Measured here at 100k descriptors it is
    about 1.4x faster than readlink(), which has the kernel format "socket:[N]".
    """
    owners: dict[int, int] = {}
    stat = os.stat
    is_sock = _S_IFSOCK
    try:
        pids = sorted(int(d) for d in os.listdir(proc) if d.isdigit())
    except OSError:
        return owners
    for pid in pids:
        try:
            dfd = os.open(f"{proc}/{pid}/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:          # gone, or not ours to read
            continue
        try:
            try:
                fds = os.listdir(dfd)
            except OSError:
                continue
            for fd in fds:
                try:
                    st = stat(fd, dir_fd=dfd)
                except OSError:  # closed meanwhile
                    continue
                if st.st_mode & 0o170000 == is_sock and st.st_ino not in owners:
                    owners[st.st_ino] = pid
        finally:
            os.close(dfd)
    return owners


_S_IFSOCK = 0o140000


def command_of(pid: int, proc: str = "/proc") -> str | None:
    """The process's comm name; None when it is gone or unreadable."""
    try:
        with open(f"{proc}/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().rstrip("\n")
    except OSError:
        return None


def fill(table: SocketTable, proc: str = "/proc") -> None:
    """Set table.pid (-1: unknown, e.g. TIME_WAIT) and table.command."""
    owners = socket_inodes(proc)
    get = owners.get
    table.pid = array("i", [get(ino, -1) if ino else -1 for ino in table.inode])
    names = {p: command_of(p, proc) for p in set(table.pid) if p >= 0}
    table.command = list(map(names.get, table.pid))
