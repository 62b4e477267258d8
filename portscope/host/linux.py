"""Linux: read and write the port sysctls through procfs, per network namespace.

Writes go straight to /proc/sys (what `sysctl -w` does) so they work inside a
namespace entered by setns() without needing procps installed.
"""
from __future__ import annotations

import errno
import os

from .. import netns as _netns
from .. import remedies
from ..errors import BadInput, NotPermitted, SystemReadError
from ..numparse import is_digits, is_whole
from ..ports import PortRange, PortSet
from ._common import (
    HostFacts,
    NamedRange,
    Plan,
    SocketFacts,
    Step,
    Sysctl,
    fmt_ports,
    read_text,
)

SYSCTL_DIR = "/proc/sys/net/ipv4"
DEFAULT_RANGE = PortRange(32768, 60999)

PORT_RANGE = "ip_local_port_range"
RESERVED = "ip_local_reserved_ports"
UNPRIV = "ip_unprivileged_port_start"
RANGE_KEY = "net.ipv4." + PORT_RANGE
RESERVED_KEY = "net.ipv4." + RESERVED


def sysctl_path(name: str) -> str:
    """/proc/sys/net/ipv4/NAME."""
    return os.path.join(SYSCTL_DIR, name)


def sysctl_key(name: str) -> str:
    """The dotted name `sysctl` and /etc/sysctl.d use: net.ipv4.NAME."""
    return "net.ipv4." + name


def read_sysctl(name: str, required: bool = True) -> str | None:
    """The text of net.ipv4.NAME; a missing file raises if `required`, else gives None."""
    path = sysctl_path(name)
    return read_text(path, f"{path} is missing: is this a Linux kernel with IPv4?" if required else None)


def write_sysctl(name: str, value: str) -> None:
    """Write net.ipv4.NAME (see write_key)."""
    write_key(sysctl_key(name), value)


def write_key(key: str, value: str) -> None:
    """Write the sysctl KEY (dotted, e.g. net.core.somaxconn) of the calling thread's namespace:
    one write of the whole value; the kernel validates it and answers EINVAL if it refuses."""
    path = "/proc/sys/" + key.replace(".", "/")
    try:
        # unbuffered: the kernel must see one write() with the whole value
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        raise SystemReadError(f"{path} is missing: this kernel has no {key}")
    except PermissionError:
        raise _denied(key)
    except OSError as e:
        if e.errno in (errno.EROFS,):
            raise NotPermitted(f"cannot write {key}: /proc/sys is read-only here (a container?)")
        raise
    try:
        data = value.encode()
        n = os.write(fd, data)
        if n != len(data):
            raise SystemReadError(f"short write to {path} ({n} of {len(data)} bytes)")
    except PermissionError:
        raise _denied(key)
    except OSError as e:
        if e.errno == errno.EPERM:
            raise NotPermitted(f"cannot write {key}: not permitted (needs CAP_NET_ADMIN)")
        if e.errno == errno.EINVAL:
            raise BadInput(f"the kernel refused {key}={value!r} (EINVAL)")
        raise SystemReadError(f"cannot write {path}: {e.strerror or e}")
    finally:
        os.close(fd)


def _denied(key: str) -> NotPermitted:
    # "run as root" is advice only for someone who is not root
    hint = "run as root" if os.geteuid() else "even as root: a container or security module forbids it"
    return NotPermitted(f"cannot write {key}: permission denied ({hint})")


def parse_sysctl_int(name: str, text: str) -> int:
    """The integer in sysctl NAME's text; SystemReadError naming the file if it is not one."""
    s = text.strip()
    if not is_whole(s):
        raise SystemReadError(f"malformed value in {sysctl_path(name)}: {s!r}")
    return int(s)


def parse_range(text: str) -> PortRange:
    """ip_local_port_range's "LOW\tHIGH"; SystemReadError naming the file otherwise."""
    parts = text.split()
    if len(parts) != 2 or not all(is_digits(p) for p in parts):
        raise SystemReadError(f"malformed value in {sysctl_path(PORT_RANGE)}: {text.strip()!r}")
    try:
        return PortRange(int(parts[0]), int(parts[1]))
    except Exception:
        raise SystemReadError(f"malformed value in {sysctl_path(PORT_RANGE)}: {text.strip()!r}")


def parse_reserved(text: str) -> PortSet:
    """ip_local_reserved_ports' list; SystemReadError naming the file otherwise."""
    try:
        return PortSet.parse(text)
    except Exception:
        raise SystemReadError(f"malformed value in {sysctl_path(RESERVED)}: {text.strip()!r}")


def read_facts_here(netns: str | None) -> HostFacts:
    """Facts of the namespace the calling thread is in now (`netns` only labels them)."""
    # required reads raise when the file is missing, so these are never None
    rng = parse_range(read_sysctl(PORT_RANGE) or "")
    reserved = parse_reserved(read_sysctl(RESERVED) or "")
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
        unprivileged_port_start=parse_sysctl_int(UNPRIV, unpriv) if unpriv is not None else 1024,
        os_default=DEFAULT_RANGE,
        # one range for TCP, UDP, UDP-Lite, SCTP and DCCP, IPv4 and IPv6 alike
        ranges=(NamedRange("default", rng),),
        tcp_tw_reuse=parse_sysctl_int("tcp_tw_reuse", reuse) if reuse is not None else None,
        tcp_tw_reuse_delay_ms=parse_sysctl_int("tcp_tw_reuse_delay", delay) if delay is not None else None,
        tcp_fin_timeout=parse_sysctl_int("tcp_fin_timeout", fin) if fin is not None else None,
        netns=netns,
        sources=sources,
    )


def read_facts(netns: str | None = None) -> HostFacts:
    """Facts of `netns` (None: this process's own namespace)."""
    with _netns.entered(netns):
        return read_facts_here(netns)


# --------------------------------------------------------------------------- changes

def step(key: str, old: str, new: str) -> Step:
    """One sysctl write, printed as the `sysctl -w` that has the same effect."""
    return Step(key, old, new, ("sysctl", "-w", f"{key}={new}"), ("sysctl", "-w", f"{key}={old}"))


def plan_range(new: PortRange, facts: HostFacts, sockets: SocketFacts | None, *,
               reserve_listeners: bool, force: bool) -> tuple[list[Step], dict, list[str], list[str]]:
    """Steps, persistent settings, warnings and notes of setting the range to `new`."""
    warnings: list[str] = []
    notes: list[str] = []
    steps: list[Step] = []
    reserved_after = facts.reserved
    if new.same_parity:
        warnings.append(f"LOW {new.low} and HIGH {new.high} have the same parity; the kernel prefers "
                        f"different parity (connect() walks ports of LOW's parity first) and logs a warning")
    if sockets is not None:
        exposed = sorted(p for p in sockets.listeners if p in new and p not in facts.reserved)
        if exposed:
            if reserve_listeners:
                reserved_after = facts.reserved.union(PortSet.of(exposed))
                steps.append(step(RESERVED_KEY, str(facts.reserved), str(reserved_after)))
                notes.append(f"reserving listening ports {fmt_ports(exposed)} first, so the kernel never "
                             f"hands them out to outgoing connections")
            else:
                warnings.append(f"listening servers on {fmt_ports(exposed)} would fall inside the new range "
                                f"unreserved: an outgoing connection could take the port while the server "
                                f"restarts. Reserve them: "
                                f"{remedies.portscope(facts.netns, f'reserve add {PortSet.of(exposed)}')} "
                                f"(or add --reserve-listeners)")
        usable = new.size - reserved_after.count_in(new)
        in_use = len(sockets.ephemeral_in_use)
        if usable < in_use and not force:
            raise BadInput(f"the new range has {usable:,} usable ports but {in_use:,} ephemeral ports are in "
                           f"use now; new connections would fail at once (use --force to do it anyway)")
        if usable < in_use:
            warnings.append(f"--force: {in_use:,} ephemeral ports in use now, only {usable:,} usable in the new range")
        outside = [p for p in sockets.ephemeral_in_use if p not in new]
        if outside:
            notes.append(f"{len(outside):,} ephemeral ports in use now lie outside the new range; "
                         f"those connections keep working, new ones will not use these ports")
    else:
        notes.append("socket checks skipped (no socket table): listeners and ports in use were not checked")
    cur = facts.ephemeral
    if new != cur:
        steps.append(step(RANGE_KEY, f"{cur.low} {cur.high}", f"{new.low} {new.high}"))
    settings = {RANGE_KEY: f"{new.low} {new.high}"}
    if reserved_after != facts.reserved:
        settings[RESERVED_KEY] = str(reserved_after)
    return steps, settings, warnings, notes


def plan_reserve(op: str, ports: PortSet, facts: HostFacts) -> tuple[list[Step], dict, list[str], list[str]]:
    """`reserve add|remove`: the new list is computed from the current one, never replaced blindly."""
    old = facts.reserved
    warnings: list[str] = []
    notes: list[str] = []
    if op == "add":
        new = old.union(ports)
        already = ports & old
        if new == old:
            notes.append(f"{ports} already reserved; nothing to change")
        elif len(already):
            notes.append(f"already reserved: {already}")
        outside = len(ports) - ports.count_in(facts.ephemeral)
        if outside and new != old:
            notes.append(f"{outside:,} of these ports lie outside the ephemeral range {facts.ephemeral}; the "
                         f"kernel would not hand them out anyway (the reservation matters if the range grows)")
    else:
        new = old.difference(ports)
        missing = ports.difference(old)
        if missing:
            warnings.append(f"not reserved, so nothing to remove: {missing}")
        if new == old:
            notes.append("nothing to change")
    steps = [step(RESERVED_KEY, str(old), str(new))] if new != old else []
    return steps, {RESERVED_KEY: str(new)}, warnings, notes


class LinuxSysctl:
    """Reads and writes net.ipv4.* through /proc/sys of the calling thread's namespace."""

    def read(self, key: str) -> str:
        """net.ipv4.* `key`, whitespace normalised (the reserved list in canonical form)."""
        name = key.rsplit(".", 1)[1]
        text = read_sysctl(name) or ""
        if name == RESERVED:
            return str(parse_reserved(text))
        return " ".join(text.split())

    def write(self, key: str, value: str) -> None:
        """One write of `value` to net.ipv4.* `key`."""
        # a trailing newline: a zero-byte write would not clear an empty reserved list
        write_sysctl(key.rsplit(".", 1)[1], value + "\n")


class Executor:
    """Does, undoes and reads back Linux steps (inside the plan's namespace: the engine enters it)."""

    def __init__(self, sysctl: Sysctl | None = None) -> None:
        self.sysctl = sysctl or LinuxSysctl()

    def read(self, step: Step) -> str:
        """The step's setting now."""
        return self.sysctl.read(step.key)

    def do(self, step: Step) -> None:
        """Write the step's new value."""
        self.sysctl.write(step.key, step.new)

    def undo(self, step: Step) -> None:
        """Write the step's old value back."""
        self.sysctl.write(step.key, step.old)

    def reread(self, plan: Plan) -> HostFacts:
        """The facts of the (entered) namespace after the change."""
        return read_facts_here(plan.netns)
