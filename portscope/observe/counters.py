"""Kernel counters that need no eBPF, read per network namespace.

`/proc/net/netstat` TcpExt: TWRecycled (connect() took over a TIME_WAIT port),
TCPTimeWaitOverflow (tcp_max_tw_buckets was hit, so a socket skipped TIME_WAIT), TWKilled;
`/proc/net/sockstat` `TCP: ... tw N` (TIME_WAIT sockets now) and
`net.ipv4.tcp_max_tw_buckets`. All are per namespace: they are read through
/proc/thread-self/net after netns.entered(), the same files `nstat -az` reads.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import SystemReadError
from ..netns import entered, proc_net_path

COUNTERS = ("TWRecycled", "TCPTimeWaitOverflow", "TWKilled")


@dataclass(frozen=True)
class Sample:
    """One reading: cumulative TcpExt counters and two gauges."""
    tcpext: dict[str, int]
    tw: int
    tcp_max_tw_buckets: int | None


def parse_snmp_pairs(text: str, section: str) -> dict[str, int]:
    """The `Section: names` / `Section: values` line pairs of /proc/net/netstat or snmp."""
    lines = text.splitlines()
    for i in range(len(lines) - 1):
        a, b = lines[i].split(), lines[i + 1].split()
        if a and b and a[0] == f"{section}:" and b[0] == f"{section}:":
            if len(a) != len(b):
                raise SystemReadError(f"/proc/net/netstat: {section} names and values differ in length")
            try:
                return {k: int(v) for k, v in zip(a[1:], b[1:])}
            except ValueError:
                raise SystemReadError(f"/proc/net/netstat: non-numeric {section} value") from None
    return {}


def parse_sockstat_tw(text: str) -> int:
    """`tw N` of the `TCP:` line of /proc/net/sockstat."""
    for line in text.splitlines():
        if line.startswith("TCP:"):
            f = line.split()[1:]
            for k, v in zip(f[::2], f[1::2]):
                if k == "tw":
                    try:
                        return int(v)
                    except ValueError:
                        break
    raise SystemReadError("/proc/net/sockstat: no 'TCP: ... tw N' field")


def read(netns: str | None = None) -> Sample:
    """Read the counters of `netns` (None: this process's namespace)."""
    with entered(netns):
        with open(proc_net_path("netstat")) as f:
            tcpext = parse_snmp_pairs(f.read(), "TcpExt")
        with open(proc_net_path("sockstat")) as f:
            tw = parse_sockstat_tw(f.read())
        try:
            with open("/proc/sys/net/ipv4/tcp_max_tw_buckets") as f:
                mx: int | None = int(f.read().strip())
        except (OSError, ValueError):
            mx = None
    return Sample({k: tcpext.get(k, 0) for k in COUNTERS}, tw, mx)


def delta(before: Sample, after: Sample) -> dict:
    """The watch window's counters: TcpExt deltas, `tw` and `tcp_max_tw_buckets` at the end."""
    out: dict = {k: after.tcpext[k] - before.tcpext[k] for k in COUNTERS}
    out["tw"] = after.tw
    out["tcp_max_tw_buckets"] = after.tcp_max_tw_buckets
    return out
