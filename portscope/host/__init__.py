"""How this host hands out ports: one backend per OS behind one result type.

`facts()` is the facade: it picks the backend for the running OS (Linux live,
or the one named by `os_name`, fed with recorded command output in tests).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

from ..ports import PortRange, PortSet


@dataclass(frozen=True)
class NamedRange:
    """One of several ranges an OS keeps (Windows per protocol/family, BSD hi/low)."""

    name: str                   # e.g. "default", "hi", "low", "tcp/ipv4"
    range: PortRange
    proto: str | None = None    # "tcp" | "udp" | None for all
    family: int | None = None   # 4 | 6 | None for both


@dataclass(frozen=True)
class NamedSet:
    """Reserved/excluded ports kept per protocol and family (Windows exclusions)."""

    name: str                   # e.g. "tcp/ipv4"
    ports: PortSet
    proto: str | None = None
    family: int | None = None
    administered: PortSet = field(default_factory=PortSet)  # Windows `*`: added by an admin


@dataclass(frozen=True)
class HostFacts:
    """Every backend returns exactly this shape (the contract tests check it)."""

    os: str                          # "linux" | "darwin" | "freebsd" | "windows"
    ephemeral: PortRange             # the range connect()/bind(0) draw from (TCP/IPv4 on Windows)
    reserved: PortSet                # never auto-assigned (Linux reserved list, Windows exclusions)
    unprivileged_port_start: int     # ports below need privilege to bind (0: no privileged ports)
    os_default: PortRange            # this OS's shipped default ephemeral range
    ranges: tuple[NamedRange, ...] = ()
    tcp_tw_reuse: int | None = None  # Linux: 0 off, 1 on, 2 loopback only
    tcp_tw_reuse_delay_ms: int | None = None
    tcp_fin_timeout: int | None = None
    netns: str | None = None
    reserved_sets: tuple[NamedSet, ...] = ()   # per protocol/family (Windows); () elsewhere
    privileged_low: int = 0                    # FreeBSD reservedlow: privileged ports are [low, start-1]
    sources: dict = field(default_factory=dict, compare=False)  # where each value was read
    tcp_msl_ms: int | None = None              # BSD/macOS net.inet.tcp.msl, when read
    tcp_timed_wait_delay: int | None = None    # Windows TcpTimedWaitDelay (s), when set and read
    os_release: str | None = None              # macOS kern.osrelease (Darwin version), when read
    wildcard_bind_unprivileged: bool = False   # macOS 10.14+: ports below the boundary are free on 0.0.0.0/::

    @property
    def time_wait_seconds(self) -> int:
        """How long a closed connection holds its 4-tuple here (see time_wait_source)."""
        return time_wait(self)[0]

    @property
    def time_wait_source(self) -> str:
        """Where time_wait_seconds comes from: read from the system, or a named default."""
        return time_wait(self)[1]


# TIME_WAIT when the system does not say: each with the place that states it.
# Linux has no knob at all, so its value is never "read".
TIME_WAIT_DEFAULTS = {
    "linux": (60, "fixed: TCP_TIMEWAIT_LEN (60*HZ) in include/net/tcp.h, no sysctl changes it"),
    "freebsd": (60, "default, not read: 2 x net.inet.tcp.msl, whose default is 30000 ms "
                    "(TCPTV_MSL 30 s in sys/netinet/tcp_timer.h)"),
    "darwin": (30, "default, not read: 2 x net.inet.tcp.msl, whose default is 15000 ms "
                   "(TCPTV_MSL 15 s in XNU bsd/netinet/tcp_timer.h)"),
    "windows": (120, "default, not read: TcpTimedWaitDelay is not set; Microsoft's Windows Server 2003 "
                     "TCP/IP registry reference gives 120 s (its Windows 2000 page said 240 s)"),
}


def time_wait(f: "HostFacts") -> tuple[int, str]:
    """(seconds, source) of TIME_WAIT on the host the facts describe."""
    if f.os in ("freebsd", "darwin") and f.tcp_msl_ms is not None:
        # both kernels arm the 2MSL timer with 2 * tcp_msl; the sysctl is in milliseconds
        return round(2 * f.tcp_msl_ms / 1000), f"read: 2 x sysctl net.inet.tcp.msl ({f.tcp_msl_ms} ms)"
    if f.os == "windows" and f.tcp_timed_wait_delay is not None:
        return f.tcp_timed_wait_delay, ("read: TcpTimedWaitDelay under "
                                        "HKLM\\SYSTEM\\CurrentControlSet\\Services\\Tcpip\\Parameters")
    return TIME_WAIT_DEFAULTS.get(f.os, (60, f"default, not read: no value known for {f.os}"))


def current_os() -> str:
    p = sys.platform
    if p.startswith("linux"):
        return "linux"
    if p == "darwin":
        return "darwin"
    if p.startswith("freebsd"):
        return "freebsd"
    if p.startswith("win"):
        return "windows"
    return p


def facts(netns: str | None = None) -> HostFacts:
    """Host facts of the running system (Linux: of `netns` when given)."""
    from ..errors import Unsupported

    osname = current_os()
    if osname == "linux":
        from . import linux
        return linux.read_facts(netns)
    if netns:
        raise Unsupported("--netns is available on Linux only")
    if osname in ("darwin", "freebsd"):
        from . import bsd
        return bsd.read_facts(osname)
    if osname == "windows":
        from . import windows
        return windows.read_facts()
    raise Unsupported(f"unsupported operating system: {osname}")


IANA_DYNAMIC = PortRange(49152, 65535)   # RFC 6335 section 6


def _range_dict(r: PortRange) -> dict:
    return {"low": r.low, "high": r.high, "size": r.size}


def iana_comparison(rng: PortRange) -> str:
    """One plain sentence comparing an ephemeral range with IANA's dynamic range."""
    iana = IANA_DYNAMIC
    if rng == iana:
        return f"Same as IANA's dynamic range {iana.low}-{iana.high} (RFC 6335)."
    both = max(0, min(rng.high, iana.high) - max(rng.low, iana.low) + 1)
    below = max(0, min(rng.high, iana.low - 1) - rng.low + 1)     # ports in IANA's system/user ranges
    unused = iana.size - both
    parts = [f"{rng.size:,} ports vs IANA's {iana.size:,} ({iana.low}-{iana.high})"]
    if below:
        parts.append(f"{below:,} of yours lie below {iana.low}, in the range IANA registers for services "
                     f"(a server registered on one of them can collide with outgoing connections)")
    if unused:
        parts.append(f"{unused:,} ports of IANA's dynamic range are not used for outgoing connections here")
    return "; ".join(parts) + "."


def as_dict(f: HostFacts) -> dict:
    """The `portscope range --json` shape (documented in docs/range.md)."""
    in_range = f.reserved.count_in(f.ephemeral)
    d = {
        "os": f.os,
        "netns": f.netns,
        "ephemeral": _range_dict(f.ephemeral),
        "reserved": str(f.reserved),
        "reserved_count": len(f.reserved),
        "reserved_in_range": in_range,
        "usable_ephemeral": f.ephemeral.size - in_range,
        "unprivileged_port_start": f.unprivileged_port_start,
        "same_parity": f.ephemeral.same_parity,
        "os_default": _range_dict(f.os_default),
        "is_os_default": f.ephemeral == f.os_default,
        "iana_dynamic": _range_dict(IANA_DYNAMIC),
        "overlap_with_iana_dynamic": max(0, min(f.ephemeral.high, IANA_DYNAMIC.high)
                                         - max(f.ephemeral.low, IANA_DYNAMIC.low) + 1),
        "comparison": iana_comparison(f.ephemeral),
        "ranges": [dict(name=r.name, **_range_dict(r.range), proto=r.proto, family=r.family) for r in f.ranges],
        "tcp_tw_reuse": f.tcp_tw_reuse,
        "tcp_tw_reuse_delay_ms": f.tcp_tw_reuse_delay_ms,
        "tcp_fin_timeout": f.tcp_fin_timeout,
        "time_wait_seconds": f.time_wait_seconds,
        "time_wait_source": f.time_wait_source,
        "sources": dict(f.sources),
    }
    if f.reserved_sets:
        d["reserved_sets"] = [{"name": s.name, "proto": s.proto, "family": s.family, "ports": str(s.ports),
                               "count": len(s.ports), "administered": str(s.administered)}
                              for s in f.reserved_sets]
    if f.privileged_low:
        d["privileged_low"] = f.privileged_low
    return d
