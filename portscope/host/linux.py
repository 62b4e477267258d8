"""Linux: read the port sysctls from procfs, per network namespace."""
from __future__ import annotations

import os

from .. import netns as _netns
from ..errors import NotPermitted, SystemReadError
from ..ports import PortRange, PortSet
from . import HostFacts, NamedRange

SYSCTL_DIR = "/proc/sys/net/ipv4"
DEFAULT_RANGE = PortRange(32768, 60999)


def sysctl_path(name: str) -> str:
    return os.path.join(SYSCTL_DIR, name)


def read_sysctl(name: str, required: bool = True) -> str | None:
    path = sysctl_path(name)
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        if required:
            raise SystemReadError(f"{path} is missing: is this a Linux kernel with IPv4?")
        return None
    except PermissionError:
        raise NotPermitted(f"cannot read {path}: permission denied")


def parse_int(name: str, text: str) -> int:
    s = text.strip()
    try:
        return int(s)
    except ValueError:
        raise SystemReadError(f"malformed value in {sysctl_path(name)}: {s!r}")


def parse_range(text: str) -> PortRange:
    parts = text.split()
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise SystemReadError(f"malformed value in {sysctl_path('ip_local_port_range')}: {text.strip()!r}")
    try:
        return PortRange(int(parts[0]), int(parts[1]))
    except Exception:
        raise SystemReadError(f"malformed value in {sysctl_path('ip_local_port_range')}: {text.strip()!r}")


def parse_reserved(text: str) -> PortSet:
    try:
        return PortSet.parse(text)
    except Exception:
        raise SystemReadError(f"malformed value in {sysctl_path('ip_local_reserved_ports')}: {text.strip()!r}")


def _read_here(netns: str | None) -> HostFacts:
    rng = parse_range(read_sysctl("ip_local_port_range"))
    reserved = parse_reserved(read_sysctl("ip_local_reserved_ports"))
    unpriv = read_sysctl("ip_unprivileged_port_start", required=False)
    reuse = read_sysctl("tcp_tw_reuse", required=False)
    delay = read_sysctl("tcp_tw_reuse_delay", required=False)
    fin = read_sysctl("tcp_fin_timeout", required=False)
    return HostFacts(
        os="linux",
        ephemeral=rng,
        reserved=reserved,
        # kernels before 4.11 have no knob: the boundary is the fixed PROT_SOCK 1024
        unprivileged_port_start=parse_int("ip_unprivileged_port_start", unpriv) if unpriv is not None else 1024,
        os_default=DEFAULT_RANGE,
        ranges=(NamedRange("default", rng),),
        tcp_tw_reuse=parse_int("tcp_tw_reuse", reuse) if reuse is not None else None,
        tcp_tw_reuse_delay_ms=parse_int("tcp_tw_reuse_delay", delay) if delay is not None else None,
        tcp_fin_timeout=parse_int("tcp_fin_timeout", fin) if fin is not None else None,
        netns=netns,
        sources={"ip_local_port_range": sysctl_path("ip_local_port_range")},
    )


def read_facts(netns: str | None = None) -> HostFacts:
    with _netns.entered(netns):
        return _read_here(netns)
