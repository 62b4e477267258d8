"""Linux: read and write the port sysctls through procfs, per network namespace.

Writes go straight to /proc/sys (what `sysctl -w` does) so they work inside a
namespace entered by setns() without needing procps installed.
"""
from __future__ import annotations

import errno
import os

from .. import netns as _netns
from ..errors import BadInput, NotPermitted, SystemReadError
from ..ports import PortRange, PortSet
from . import HostFacts, NamedRange

SYSCTL_DIR = "/proc/sys/net/ipv4"
DEFAULT_RANGE = PortRange(32768, 60999)

PORT_RANGE = "ip_local_port_range"
RESERVED = "ip_local_reserved_ports"
UNPRIV = "ip_unprivileged_port_start"


def sysctl_path(name: str) -> str:
    return os.path.join(SYSCTL_DIR, name)


def sysctl_key(name: str) -> str:
    """The dotted name `sysctl` and /etc/sysctl.d use: net.ipv4.NAME."""
    return "net.ipv4." + name


def read_text(path: str, missing: str | None = None) -> str | None:
    """A small file's text; None when it is absent, or SystemReadError(missing) if given."""
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        if missing:
            raise SystemReadError(missing)
        return None
    except PermissionError:
        raise NotPermitted(f"cannot read {path}: permission denied")
    except OSError as e:
        raise SystemReadError(f"cannot read {path}: {e.strerror or e}")


def read_sysctl(name: str, required: bool = True) -> str | None:
    path = sysctl_path(name)
    return read_text(path, f"{path} is missing: is this a Linux kernel with IPv4?" if required else None)


def write_sysctl(name: str, value: str) -> None:
    """One write of the whole value; the kernel validates it and answers EINVAL if it refuses."""
    path = sysctl_path(name)
    try:
        # unbuffered: the kernel must see one write() with the whole value
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        raise SystemReadError(f"{path} is missing: this kernel has no {sysctl_key(name)}")
    except PermissionError:
        raise _denied(name)
    except OSError as e:
        if e.errno in (errno.EROFS,):
            raise NotPermitted(f"cannot write {sysctl_key(name)}: /proc/sys is read-only here (a container?)")
        raise
    try:
        data = value.encode()
        n = os.write(fd, data)
        if n != len(data):
            raise SystemReadError(f"short write to {path} ({n} of {len(data)} bytes)")
    except PermissionError:
        raise _denied(name)
    except OSError as e:
        if e.errno == errno.EPERM:
            raise NotPermitted(f"cannot write {sysctl_key(name)}: not permitted (needs CAP_NET_ADMIN)")
        if e.errno == errno.EINVAL:
            raise BadInput(f"the kernel refused {sysctl_key(name)}={value!r} (EINVAL)")
        raise SystemReadError(f"cannot write {path}: {e.strerror or e}")
    finally:
        os.close(fd)


def _denied(name: str) -> NotPermitted:
    # "run as root" is advice only for someone who is not root
    hint = "run as root" if os.geteuid() else "even as root: a container or security module forbids it"
    return NotPermitted(f"cannot write {sysctl_key(name)}: permission denied ({hint})")


def parse_int(name: str, text: str) -> int:
    from ..numparse import _WHOLE, MAX_DIGITS
    s = text.strip()
    if len(s) > MAX_DIGITS or not _WHOLE.fullmatch(s):
        raise SystemReadError(f"malformed value in {sysctl_path(name)}: {s!r}")
    return int(s)


def parse_range(text: str) -> PortRange:
    parts = text.split()
    from ..numparse import is_digits
    if len(parts) != 2 or not all(is_digits(p) for p in parts):
        raise SystemReadError(f"malformed value in {sysctl_path(PORT_RANGE)}: {text.strip()!r}")
    try:
        return PortRange(int(parts[0]), int(parts[1]))
    except Exception:
        raise SystemReadError(f"malformed value in {sysctl_path(PORT_RANGE)}: {text.strip()!r}")


def parse_reserved(text: str) -> PortSet:
    try:
        return PortSet.parse(text)
    except Exception:
        raise SystemReadError(f"malformed value in {sysctl_path(RESERVED)}: {text.strip()!r}")


def _read_here(netns: str | None) -> HostFacts:
    rng = parse_range(read_sysctl(PORT_RANGE))
    reserved = parse_reserved(read_sysctl(RESERVED))
    unpriv = read_sysctl(UNPRIV, required=False)
    reuse = read_sysctl("tcp_tw_reuse", required=False)
    delay = read_sysctl("tcp_tw_reuse_delay", required=False)
    fin = read_sysctl("tcp_fin_timeout", required=False)
    sources = {k: sysctl_path(k) for k, v in (
        (PORT_RANGE, 1), (RESERVED, 1), (UNPRIV, unpriv), ("tcp_tw_reuse", reuse),
        ("tcp_tw_reuse_delay", delay), ("tcp_fin_timeout", fin)) if v is not None}
    if unpriv is None:
        sources[UNPRIV] = "fixed PROT_SOCK 1024 (kernel older than 4.11)"
    if netns:
        sources["netns"] = netns
    return HostFacts(
        os="linux",
        ephemeral=rng,
        reserved=reserved,
        # kernels before 4.11 have no knob: the boundary is the fixed PROT_SOCK 1024
        unprivileged_port_start=parse_int(UNPRIV, unpriv) if unpriv is not None else 1024,
        os_default=DEFAULT_RANGE,
        # one range for TCP, UDP, UDP-Lite, SCTP and DCCP, IPv4 and IPv6 alike
        ranges=(NamedRange("default", rng),),
        tcp_tw_reuse=parse_int("tcp_tw_reuse", reuse) if reuse is not None else None,
        tcp_tw_reuse_delay_ms=parse_int("tcp_tw_reuse_delay", delay) if delay is not None else None,
        tcp_fin_timeout=parse_int("tcp_fin_timeout", fin) if fin is not None else None,
        netns=netns,
        sources=sources,
    )


def read_facts(netns: str | None = None) -> HostFacts:
    with _netns.entered(netns):
        return _read_here(netns)
