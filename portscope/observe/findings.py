"""Findings from what was observed: failures the kernel returned and TIME_WAIT counters.

Ids: connect-failures, bind-failures, udp-autobind-failures (eBPF rows), tw-bucket-overflow,
tw-recycling (counters). Same Finding shape as the model's findings (pressure.Finding).
"""
from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from ..findings import Finding
from ..remedies import portscope
from ..remedies import shell as ns_exec

if TYPE_CHECKING:
    from .watch import Observation

FINDING_IDS = ("connect-failures", "bind-failures", "udp-autobind-failures",
               "tw-bucket-overflow", "tw-recycling")
TW_NEAR = 0.90          # tw >= 90% of tcp_max_tw_buckets: about to overflow


def _F(fid, sev, msg, remedy, evidence):
    return Finding(id=fid, severity=sev, message=msg, remedy=remedy, evidence=evidence)


def _ps(obs) -> str:
    """`portscope ` or the same naming the watched namespace, for remedies."""
    return portscope(obs.netns, "").rstrip() + " "


def _dest(f) -> str:
    if f.dst is None:
        return "(no address)"
    return f"[{f.dst}]:{f.dport}" if ":" in f.dst else f"{f.dst}:{f.dport}"


def _worst(rows):
    """(total, worst destination and its count, worst process and its count)."""
    total = sum(f.count for f in rows)
    by_dst = Counter()
    by_proc = Counter()
    for f in rows:
        by_dst[_dest(f)] += f.count
        by_proc[(f.pid, f.comm)] += f.count
    dst, dn = by_dst.most_common(1)[0]
    (pid, comm), pn = by_proc.most_common(1)[0]
    return total, (dst, dn), (pid, comm, pn)


def _secs(s: float) -> str:
    return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"


def failure_findings(obs: "Observation") -> list:
    """connect-failures, bind-failures, udp-autobind-failures from the counted rows."""
    out = []
    pre = ns_exec(obs.netns)
    rows = [f for f in obs.failures if f.syscall == "connect" and f.errno == "EADDRNOTAVAIL"]
    if rows:
        total, (dst, dn), (pid, comm, pn) = _worst(rows)
        out.append(_F(
            "connect-failures", "critical",
            f"{total} connect() calls failed with EADDRNOTAVAIL in {_secs(obs.seconds)}: no free local "
            f"port; {dn / total:.0%} to {dst}, {pn / total:.0%} from pid {pid} ({comm})",
            f"reuse connections to {dst} (a pool, keep-alive) instead of one per request; or widen the "
            f"range: {_ps(obs)}range set LOW HIGH (each source address, destination and port has the whole "
            f"range: more source addresses also help); {pre}sysctl -w net.ipv4.tcp_tw_reuse=1 lets "
            f"connect() take TIME_WAIT ports (needs TCP timestamps)",
            {"count": total, "destination": dst, "destination_count": dn, "pid": pid, "comm": comm,
             "process_count": pn}))
    rows = [f for f in obs.failures if f.syscall == "bind" and f.errno == "EADDRINUSE" and f.dport == 0]
    if rows:
        total, (dst, dn), (pid, comm, pn) = _worst(rows)
        out.append(_F(
            "bind-failures", "critical",
            f"{total} bind(port 0) calls failed with EADDRINUSE in {_secs(obs.seconds)}: the ephemeral "
            f"range is used up for explicit binds; {pn / total:.0%} from pid {pid} ({comm})",
            "set IP_BIND_ADDRESS_NO_PORT (24) on the socket before bind() so the port is chosen at "
            f"connect() and shared across destinations; or widen the range: {_ps(obs)}range set LOW HIGH",
            {"count": total, "pid": pid, "comm": comm, "process_count": pn}))
    rows = [f for f in obs.failures if f.errno == "EAGAIN"]
    if rows:
        total, (dst, dn), (pid, comm, pn) = _worst(rows)
        out.append(_F(
            "udp-autobind-failures", "critical",
            f"{total} UDP {'/'.join(sorted({f.syscall + '()' for f in rows}))} calls failed with EAGAIN in "
            f"{_secs(obs.seconds)}: no free local port to autobind; {pn / total:.0%} from pid {pid} ({comm})",
            "every unconnected UDP socket holds its own port for all destinations: reuse sockets "
            f"(one socket per peer set, not per request) or widen the range: {_ps(obs)}range set LOW HIGH",
            {"count": total, "destination": dst, "pid": pid, "comm": comm, "process_count": pn}))
    return out


def counter_findings(obs: "Observation") -> list:
    """tw-bucket-overflow and tw-recycling from the TcpExt / sockstat counters."""
    out = []
    c, pre = obs.counters, ns_exec(obs.netns)
    over, mx, tw = c.get("TCPTimeWaitOverflow", 0), c.get("tcp_max_tw_buckets"), c.get("tw", 0)
    if over > 0 or (mx and tw >= TW_NEAR * mx):
        new = max(2 * (mx or 0), 262144)
        what = (f"{over} sockets skipped TIME_WAIT in {_secs(obs.seconds)} (tcp_max_tw_buckets {mx} hit)"
                if over > 0 else f"{tw} TIME_WAIT sockets, {tw / mx:.0%} of tcp_max_tw_buckets {mx}")
        out.append(_F(
            "tw-bucket-overflow", "critical" if over > 0 else "warning",
            f"{what}: past the limit the kernel closes sockets without TIME_WAIT, so a late segment "
            f"of an old connection can land in a new one on the same 4-tuple",
            f"{pre}sysctl -w net.ipv4.tcp_max_tw_buckets={new}  # and cut connection churn (keep-alive, pooling)",
            {"TCPTimeWaitOverflow": over, "tw": tw, "tcp_max_tw_buckets": mx}))
    rec = c.get("TWRecycled", 0)
    if rec > 0:
        out.append(_F(
            "tw-recycling", "warning",
            f"{rec} connect() calls in {_secs(obs.seconds)} took over a TIME_WAIT port (TWRecycled): "
            f"clients stay alive only through tcp_tw_reuse, which needs TCP timestamps on both ends and "
            f"a TIME_WAIT older than tcp_tw_reuse_delay (1 s); a peer or middlebox without timestamps, "
            f"or a faster churn, turns it into EADDRNOTAVAIL",
            "reuse connections (pooling / keep-alive) or widen the range "
            f"({_ps(obs)}range set LOW HIGH) so connect() finds free ports without recycling",
            {"TWRecycled": rec}))
    return out


def evaluate(obs: "Observation") -> list:
    """All observed findings, most severe first."""
    out = failure_findings(obs) + counter_findings(obs)
    order = {"critical": 0, "warning": 1, "info": 2}
    return sorted(out, key=lambda f: order.get(f.severity, 9))
