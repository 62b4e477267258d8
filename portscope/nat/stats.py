"""Conntrack fill and statistics of one network namespace.

ctnetlink first (it works where /proc/net/stat/nf_conntrack is compiled out), the
procfs table as fallback when ctnetlink itself is missing. No permission is not a
reason to fall back: the table dump needs CAP_NET_ADMIN too, so it is an error.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field

from ..errors import NotPermitted, SystemReadError
from ..netns import proc_net_path
from . import ctnetlink

SYSCTL_DIR = "/proc/sys/net/netfilter"
NEED_CAP = ("reading conntrack over ctnetlink needs CAP_NET_ADMIN in the network namespace "
            "(run as root, or grant the capability)")

# /proc/net/stat/nf_conntrack column -> our name (net/netfilter/nf_conntrack_standalone.c)
PROC_COLUMNS = {"found": "found", "invalid": "invalid", "insert": "insert", "insert_failed": "insert_failed",
                "drop": "drop", "early_drop": "early_drop", "icmp_error": "error",
                "search_restart": "search_restart", "clashres": "clash_resolve", "chainlength": "chain_toolong"}


@dataclass
class ConntrackStats:
    """Conntrack fill and per-CPU statistics (summed) of one namespace."""
    available: bool                       # the conntrack module is loaded in this kernel
    entries: int | None = None
    max: int | None = None
    buckets: int | None = None
    stats: dict = field(default_factory=dict)
    cpus: int = 0
    source: str | None = None             # "ctnetlink" | "procfs"
    notes: list = field(default_factory=list)

    @property
    def utilization(self) -> float | None:
        """entries / max, None when either is unknown."""
        if self.entries is None or not self.max:
            return None
        return self.entries / self.max

    def to_json(self) -> dict:
        """The `conntrack` object of `nat --json`."""
        return {
            "available": self.available,
            "entries": self.entries,
            "max": self.max,
            "buckets": self.buckets,
            "utilization": self.utilization,
            "stats": {k: self.stats.get(k) for k in ctnetlink.STAT_NAMES},
            "source": self.source,
        }


def _sysctl(name: str) -> int | None:
    try:
        with open(os.path.join(SYSCTL_DIR, name)) as f:
            text = f.read().strip()
    except FileNotFoundError:
        return None
    except PermissionError:
        return None
    try:
        return int(text)
    except ValueError:
        raise SystemReadError(f"{SYSCTL_DIR}/{name}: expected a number, got {text[:40]!r}")


def parse_proc_stat(text: str) -> tuple[dict[str, int], int]:
    """/proc/net/stat/nf_conntrack -> (counters summed over CPUs, number of CPU rows).

    One header line naming the columns, one hex row per CPU. `entries` repeats the
    namespace's count on every row, so it is not summed (and not returned)."""
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise SystemReadError("/proc/net/stat/nf_conntrack is empty")
    header = lines[0]
    sums: dict[str, int] = {}
    for row in lines[1:]:
        if len(row) != len(header):
            raise SystemReadError(f"/proc/net/stat/nf_conntrack: a row has {len(row)} columns, "
                                  f"the header {len(header)}")
        for name, value in zip(header, row):
            ours = PROC_COLUMNS.get(name)
            if ours is None:
                continue
            try:
                sums[ours] = sums.get(ours, 0) + int(value, 16)
            except ValueError:
                raise SystemReadError(f"/proc/net/stat/nf_conntrack: {name} is not hex: {value!r}")
    return sums, len(lines) - 1


def read_stats() -> ConntrackStats:
    """Stats of the calling thread's namespace (enter it first with netns.entered)."""
    count = _sysctl("nf_conntrack_count")
    if count is None:
        return ConntrackStats(available=False,
                              notes=["conntrack is not loaded in this kernel (no nf_conntrack): "
                                     "nothing is tracked or NATed here"])
    out = ConntrackStats(available=True, entries=count, max=_sysctl("nf_conntrack_max"),
                         buckets=_sysctl("nf_conntrack_buckets"))
    try:
        sock = ctnetlink.open_socket()
        try:
            sums, cpus, entries, maximum = ctnetlink.read_stats(sock)
        finally:
            sock.close()
    except ctnetlink.CtnetlinkError as e:
        if e.errno == errno.EPERM:
            raise NotPermitted(NEED_CAP)
        out.notes.append(f"ctnetlink unavailable ({e}); statistics from /proc/net/stat/nf_conntrack")
        return _from_proc(out)
    out.stats, out.cpus, out.source = sums, cpus, "ctnetlink"
    if entries is not None:
        out.entries = entries
    if maximum is not None:
        out.max = maximum
    return out


def _from_proc(out: ConntrackStats) -> ConntrackStats:
    path = proc_net_path("stat/nf_conntrack")
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        out.notes.append("no /proc/net/stat/nf_conntrack either (CONFIG_NF_CONNTRACK_PROCFS off): "
                         "conntrack statistics unknown")
        return out
    except PermissionError:
        raise NotPermitted(NEED_CAP)
    out.stats, out.cpus = parse_proc_stat(text)
    out.source = "procfs"
    return out
