"""Socket owners: inode -> pid and command, in one pass over /proc/*/fd.

The slow part of any socket listing (ss -p, psutil), so it runs only when asked.
One readlink per descriptor into one dict: no per-socket search. Processes that
exit, or whose fds we may not read, are skipped, never fatal. Socket inodes are
global across network namespaces, so the walk is the same with --netns.
"""
from __future__ import annotations

import os
from array import array


def socket_inodes(proc: str = "/proc") -> dict[int, int]:
    """inode -> pid for every socket descriptor visible in /proc (first pid wins)."""
    owners: dict[int, int] = {}
    readlink = os.readlink
    try:
        pids = [int(d) for d in os.listdir(proc) if d.isdigit()]
    except OSError:
        return owners
    pids.sort()
    for pid in pids:
        base = f"{proc}/{pid}/fd/"
        try:
            fds = os.listdir(base)
        except OSError:          # gone, or not ours to read
            continue
        for fd in fds:
            try:
                link = readlink(base + fd)
            except OSError:
                continue
            # "socket:[12345]"
            if link.startswith("socket:["):
                ino = int(link[8:-1])
                if ino not in owners:
                    owners[ino] = pid
    return owners


def command_of(pid: int, proc: str = "/proc") -> str | None:
    try:
        with open(f"{proc}/{pid}/comm", encoding="utf-8", errors="replace") as f:
            return f.read().rstrip("\n")
    except OSError:
        return None


def fill(table, proc: str = "/proc") -> None:
    """Set table.pid (-1: unknown, e.g. TIME_WAIT) and table.command."""
    owners = socket_inodes(proc)
    get = owners.get
    table.pid = array("i", [get(ino, -1) if ino else -1 for ino in table.inode])
    names: dict[int, str | None] = {}
    cmds = []
    for p in table.pid:
        if p < 0:
            cmds.append(None)
            continue
        c = names.get(p, 0)
        if c == 0:
            c = names[p] = command_of(p, proc)
        cmds.append(c)
    table.command = cmds
