"""macOS and FreeBSD: parse `sysctl net.inet.ip.portrange` output.

Both print `name: value` (one per line); `sysctl name=value` prints
`name: old -> new`. Unknown lines are ignored so a full `sysctl -a` works too.
Two more values are read when the system has them: `net.inet.tcp.msl` (TIME_WAIT
is twice it) and, on macOS, `kern.osrelease` (the privileged-port rule changed
in macOS 10.14, Darwin 18).
"""
from __future__ import annotations

import re

from ..errors import BadInput, PortscopeError, SystemReadError
from ..ports import PortRange, PortSet
from ._common import HostFacts, NamedRange, Plan, Runner, Step, run_command

TYPE_CHECKING = False     # not typing's: importing typing would cost `portscope range` a third of the interpreter's start-up
if TYPE_CHECKING:
    from typing import Sequence

PREFIX = "net.inet.ip.portrange."
KEYS = ("first", "last", "hifirst", "hilast", "lowfirst", "lowlast",
        "reservedhigh", "reservedlow", "randomized")
READ_ARGV = ("sysctl", PREFIX.rstrip("."))
MSL_ARGV = ("sysctl", "net.inet.tcp.msl")
OSRELEASE_ARGV = ("sysctl", "kern.osrelease")
# macOS 10.14 (Darwin 18) lets any user bind ports below 1024 on the wildcard address;
# a specific address still needs root. Seen in homebrew-bootstrap#93, mitmproxy#3437 and
# apple/container#2269 (measured with plain sockets); Apple documents no knob for it.
DARWIN_WILDCARD_FREE_FROM = 18

# shipped defaults: FreeBSD sys/netinet/in_pcb.c (IPPORT_EPHEMERALFIRST 10000), XNU in_pcb.c (49152)
OS_DEFAULT = {"freebsd": PortRange(10000, 65535), "darwin": PortRange(49152, 65535)}
IPPORT_RESERVED = 1024

_LINE = re.compile(r"^\s*net\.inet\.ip\.portrange\.([a-z]+)\s*[:=]\s*(?:(-?\d{1,9})\s*->\s*)?(-?\d{1,9})\s*$", re.ASCII)
_MSL = re.compile(r"^\s*net\.inet\.tcp\.msl\s*[:=]\s*(?:\d{1,9}\s*->\s*)?(\d{1,9})\s*$", re.M | re.ASCII)
_OSREL = re.compile(r"^\s*kern\.osrelease\s*[:=]\s*(\d+)((?:\.\d+)*)\s*$", re.M | re.ASCII)



def parse_sysctl(text: str) -> dict[str, int]:
    """{short key: value} for every portrange line (the new value of `old -> new`)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m:
            out[m.group(1)] = int(m.group(3))
    return out


def _range(a: int, b: int, what: str) -> PortRange:
    # lowfirst/lowlast (1023/600) are allocated downward: normalise to low..high
    lo, hi = min(a, b), max(a, b)
    try:
        return PortRange(lo, hi)
    except BadInput:
        raise SystemReadError(f"malformed sysctl {PREFIX}{what}: {a}..{b} is not a port range")


def facts_from_sysctl(text: str, osname: str) -> HostFacts:
    """HostFacts from `sysctl net.inet.ip.portrange` output of a darwin or freebsd host."""
    if osname not in OS_DEFAULT:
        raise BadInput(f"unknown BSD flavour {osname!r} (expected darwin or freebsd)")
    v = parse_sysctl(text)
    if "first" not in v or "last" not in v:
        raise SystemReadError(f"no {PREFIX}first/last in sysctl output")
    eph = _range(v["first"], v["last"], "first/last")
    ranges = [NamedRange("default", eph)]
    if "hifirst" in v and "hilast" in v:
        ranges.append(NamedRange("hi", _range(v["hifirst"], v["hilast"], "hifirst/hilast")))
    if "lowfirst" in v and "lowlast" in v:
        ranges.append(NamedRange("low", _range(v["lowfirst"], v["lowlast"], "lowfirst/lowlast")))
    sources = {k: f"sysctl {PREFIX}{k}" for k in v}
    # FreeBSD: binding a port in [reservedlow, reservedhigh] needs privilege; macOS has no
    # knob and uses the fixed IPPORT_RESERVED boundary
    if "reservedhigh" in v:
        hi, lo = v["reservedhigh"], v.get("reservedlow", 0)
        unpriv = hi + 1 if hi >= lo else 0
        priv_low = lo if hi >= lo else 0
    else:
        unpriv, priv_low = IPPORT_RESERVED, 0
        sources["unprivileged_port_start"] = "fixed IPPORT_RESERVED (1024)"
    m = _MSL.search(text)
    msl = int(m.group(1)) if m else None
    if msl is not None:
        sources["tcp_msl_ms"] = "sysctl net.inet.tcp.msl"
    r = _OSREL.search(text)
    release = r.group(1) + r.group(2) if r else None
    wildcard_free = False
    if osname == "darwin":
        if r is not None:
            sources["os_release"] = "sysctl kern.osrelease"
            wildcard_free = int(r.group(1)) >= DARWIN_WILDCARD_FREE_FROM
        else:
            # every macOS Apple still supports is 10.14 or later
            wildcard_free = True
            sources["os_release"] = "not read: assumed macOS 10.14 (Darwin 18) or later"
    return HostFacts(
        os=osname,
        ephemeral=eph,
        reserved=PortSet(),   # BSD has no reserved-ports list
        unprivileged_port_start=unpriv,
        os_default=OS_DEFAULT[osname],
        ranges=tuple(ranges),
        privileged_low=priv_low,
        sources=sources,
        tcp_msl_ms=msl,
        os_release=release,
        wildcard_bind_unprivileged=wildcard_free,
    )


def _optional(runner: Runner, argv: Sequence[str]) -> str:
    """Output of a command whose value has a documented default: "" when it fails."""
    try:
        return runner(argv)
    except PortscopeError:
        return ""


def read_facts(osname: str, runner: Runner | None = None) -> HostFacts:
    """Facts of this macOS / FreeBSD host, from `sysctl net.inet.ip.portrange` (plus the MSL
    and, on macOS, the Darwin version, when the system answers)."""
    runner = runner or run_command
    text = runner(READ_ARGV)
    extra = [_optional(runner, MSL_ARGV)]
    if osname == "darwin":
        extra.append(_optional(runner, OSRELEASE_ARGV))
    return facts_from_sysctl("\n".join([text, *extra]), osname)


def set_argv(key: str, value: int) -> tuple[str, ...]:
    """`sysctl -w net.inet.ip.portrange.KEY=N` (FreeBSD accepts -w for compatibility)."""
    if key not in KEYS:
        raise BadInput(f"unknown portrange sysctl {key!r}")
    return ("sysctl", "-w", f"{PREFIX}{key}={value}")


# --------------------------------------------------------------------------- changes

def plan_range(new: PortRange, facts: HostFacts) -> tuple[list[Step], dict]:
    """Steps (first/last in an order that keeps first <= last) and persistent settings."""
    cur = {r.name: r.range for r in facts.ranges}.get("default", facts.ephemeral)
    first_old, last_old = str(cur.low), str(cur.high)
    # widening downward first/upward last first keeps first <= last at every moment
    order = (("first", first_old, new.low), ("last", last_old, new.high))
    if new.low > cur.high:
        order = order[::-1]
    steps = [Step(PREFIX + k, old, str(val), set_argv(k, val), set_argv(k, int(old)))
             for k, old, val in order if old != str(val)]
    return steps, {PREFIX + "first": str(new.low), PREFIX + "last": str(new.high)}


class Executor:
    """Runs `sysctl -w` through the runner and reads back with `sysctl net.inet.ip.portrange`."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def read(self, step: Step) -> str:
        """The step's setting as the OS reports it now ("" if absent)."""
        v = parse_sysctl(self.runner(READ_ARGV)).get(step.key[len(PREFIX):])
        return "" if v is None else str(v)

    def do(self, step: Step) -> None:
        """Run the step's command."""
        self.runner(step.argv)

    def undo(self, step: Step) -> None:
        """Run the command that puts the step's old value back."""
        self.runner(step.undo_argv)

    def reread(self, plan: Plan) -> HostFacts:
        """The host facts after the change."""
        return read_facts(plan.os, self.runner)
