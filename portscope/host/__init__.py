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
    sources: dict = field(default_factory=dict, compare=False)  # where each value was read

    @property
    def time_wait_seconds(self) -> int:
        """Linux TIME_WAIT is hard-coded at 60 s (TCP_TIMEWAIT_LEN), not tcp_fin_timeout."""
        return 60 if self.os == "linux" else 120 if self.os == "windows" else 30


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
