"""Windows: parse `netsh int ipv4|ipv6 show dynamicport tcp|udp` and `show excludedportrange`.

netsh output is localized ("Start Port", "Port de démarrage", "Startport"...),
so we read numbers by position, never labels.
"""
from __future__ import annotations

import re

from ..errors import BadInput, PortscopeError, SystemReadError
from ..ports import PortRange, PortSet
from . import bsd
from ._common import HostFacts, NamedRange, NamedSet, Plan, Runner, Step, run_command

TYPE_CHECKING = False     # not typing's: importing typing would cost `portscope range` a third of the interpreter's start-up
if TYPE_CHECKING:
    from typing import Mapping, Sequence

FAMILIES = ("ipv4", "ipv6")
PROTOS = ("tcp", "udp")
OS_DEFAULT = PortRange(49152, 65535)   # since Vista / Server 2008 (KB929851)
# netsh's limits. 255 ports is stated by secondary sources; the 1025 start is from the
# project's notes on Microsoft's troubleshooting page, whose wording was not confirmed
# here (docs/quiz.md, "Not confirmed"). Kept as a guard: netsh refuses lower starts.
MIN_START = 1025
MIN_COUNT = 255
TCPIP_PARAMETERS = r"HKLM\SYSTEM\CurrentControlSet\Services\Tcpip\Parameters"
TIMED_WAIT_ARGV = ("reg", "query", TCPIP_PARAMETERS, "/v", "TcpTimedWaitDelay")


# "Label : 49152"; the label may hold spaces, accents, CJK; the value ends the line
_VALUE = re.compile(r":\s*([0-9]{1,9})\s*$")          # ASCII digits: \d would take "٤٩١٥٢"
_EXCL = re.compile(r"^\s*([0-9]{1,9})\s+([0-9]{1,9})\s*(\*)?\s*$")
# "    TcpTimedWaitDelay    REG_DWORD    0x1e" (reg prints DWORDs in hex)
_DWORD = re.compile(r"^\s*TcpTimedWaitDelay\s+REG_DWORD\s+(0x[0-9a-fA-F]+|[0-9]+)\s*$", re.M)


def dynamic_argv(family: str, proto: str) -> tuple[str, ...]:
    """netsh command that shows the dynamic range of one family ("ipv4"/"ipv6") and protocol."""
    return ("netsh", "int", family, "show", "dynamicport", proto)


def excluded_argv(family: str, proto: str) -> tuple[str, ...]:
    """netsh command that shows the excluded port ranges of one family and protocol."""
    return ("netsh", "int", family, "show", "excludedportrange", f"protocol={proto}")


def set_argv(family: str, proto: str, rng: PortRange) -> tuple[str, ...]:
    """netsh command that sets the dynamic range (as start and count) of one family and protocol."""
    return ("netsh", "int", family, "set", "dynamic", proto, f"start={rng.low}", f"num={rng.size}")


def add_excluded_argv(family: str, proto: str, rng: PortRange) -> tuple[str, ...]:
    """netsh command that excludes `rng` from automatic assignment."""
    return ("netsh", "int", family, "add", "excludedportrange", f"protocol={proto}",
            f"startport={rng.low}", f"numberofports={rng.size}")


def delete_excluded_argv(family: str, proto: str, rng: PortRange) -> tuple[str, ...]:
    """netsh command that deletes the exclusion `rng` (it must match an administered one whole)."""
    return ("netsh", "int", family, "delete", "excludedportrange", f"protocol={proto}",
            f"startport={rng.low}", f"numberofports={rng.size}")


def check_settable(rng: PortRange) -> None:
    """netsh's own limits, checked before anything runs."""
    if rng.low < MIN_START:
        raise BadInput(f"Windows needs a start port >= {MIN_START}, got {rng.low}")
    if rng.size < MIN_COUNT:
        raise BadInput(f"Windows needs at least {MIN_COUNT} dynamic ports, got {rng.size}")


def parse_dynamicport(text: str) -> PortRange:
    """The range in `netsh ... show dynamicport` output (any display language); SystemReadError otherwise."""
    nums = [int(m.group(1)) for line in text.splitlines() if (m := _VALUE.search(line))]
    if len(nums) != 2:
        raise SystemReadError(f"cannot read netsh dynamicport output: expected 2 numbers, found {len(nums)}")
    start, count = nums
    if count < 1 or start < 1 or start + count - 1 > 65535:
        raise SystemReadError(f"netsh dynamicport gave start {start}, {count} ports: not a port range")
    return PortRange(start, start + count - 1)


def parse_excluded(text: str) -> tuple[PortSet, PortSet]:
    """(all exclusions, administered ones marked `*`)."""
    every, admin = [], []
    for line in text.splitlines():
        m = _EXCL.match(line)
        if not m:
            continue
        a, b = int(m.group(1)), int(m.group(2))
        if not (0 <= a <= b <= 65535):
            raise SystemReadError(f"bad excluded port range line {line.strip()!r}")
        every.append(PortRange(a, b))
        if m.group(3):
            admin.append(PortRange(a, b))
    return PortSet(every), PortSet(admin)


def parse_timed_wait_delay(text: str) -> int | None:
    """TcpTimedWaitDelay in seconds from `reg query ... /v TcpTimedWaitDelay`, None if absent."""
    m = _DWORD.search(text or "")
    return int(m.group(1), 0) if m else None


def facts_from_outputs(dynamic: Mapping[tuple[str, str], str],
                       excluded: Mapping[tuple[str, str], str] | None = None,
                       timed_wait: str | None = None) -> HostFacts:
    """Build facts from netsh outputs keyed by (family, proto), e.g. ("ipv4", "tcp")."""
    if ("ipv4", "tcp") not in dynamic:
        raise SystemReadError("need `netsh int ipv4 show dynamicport tcp` output at least")
    ranges = []
    for fam in FAMILIES:
        for proto in PROTOS:
            if (fam, proto) in dynamic:
                ranges.append(NamedRange(f"{proto}/{fam}", parse_dynamicport(dynamic[(fam, proto)]),
                                         proto=proto, family=4 if fam == "ipv4" else 6))
    sets = []
    for (fam, proto), text in sorted((excluded or {}).items()):
        every, admin = parse_excluded(text)
        sets.append(NamedSet(f"{proto}/{fam}", every, proto=proto, family=4 if fam == "ipv4" else 6,
                             administered=admin))
    tcp4 = next(s.ports for s in sets if s.name == "tcp/ipv4") if any(s.name == "tcp/ipv4" for s in sets) else PortSet()
    sources = {f"{p}/{f}": " ".join(dynamic_argv(f, p)) for f, p in dynamic}
    sources.update({f"excluded {p}/{f}": " ".join(excluded_argv(f, p)) for f, p in (excluded or {})})
    delay = parse_timed_wait_delay(timed_wait or "")
    if delay is not None:
        sources["tcp_timed_wait_delay"] = " ".join(TIMED_WAIT_ARGV)
    return HostFacts(
        os="windows",
        ephemeral=ranges[0].range,     # tcp/ipv4: what most tools mean by "the" range
        reserved=tcp4,
        unprivileged_port_start=0,     # Windows has no privileged ports
        os_default=OS_DEFAULT,
        ranges=tuple(ranges),
        reserved_sets=tuple(sets),
        sources=sources,
        tcp_timed_wait_delay=delay,
    )


def read_facts(runner: Runner | None = None) -> HostFacts:
    """Facts of this Windows host, from netsh's dynamicport and excludedportrange output."""
    runner = runner or run_command
    dyn = {(f, p): runner(dynamic_argv(f, p)) for f in FAMILIES for p in PROTOS}
    exc = {(f, p): runner(excluded_argv(f, p)) for f in FAMILIES for p in PROTOS}
    try:
        timed_wait = runner(TIMED_WAIT_ARGV)
    except PortscopeError:
        # reg exits 1 when the value is not set (the usual case): the default applies
        timed_wait = ""
    return facts_from_outputs(dyn, exc, timed_wait)


# --------------------------------------------------------------------------- changes

def wanted_protos(protos: Sequence[str] | None) -> set[str]:
    """The protocols a change applies to (all by default); BadInput for an unknown one."""
    want = set(protos or PROTOS)
    bad = want - set(PROTOS)
    if bad:
        raise BadInput(f"unknown protocol {sorted(bad)[0]!r} (Windows has tcp and udp ranges)")
    return want


def plan_range(new: PortRange, facts: HostFacts, protos: Sequence[str] | None) -> list[Step]:
    """One `netsh ... set dynamicport` step per (family, protocol) range that differs."""
    want = wanted_protos(protos)
    steps = []
    for r in facts.ranges:
        if r.proto in want and r.range != new:
            fam = "ipv4" if r.family == 4 else "ipv6"
            steps.append(Step(f"{fam}/{r.proto}", str(r.range), str(new),
                              set_argv(fam, r.proto, new), set_argv(fam, r.proto, r.range)))
    return steps


def plan_reserve(op: str, ports: PortSet, facts: HostFacts, protos: Sequence[str] | None) -> tuple[list[Step], list[str], list[str]]:
    """Windows keeps exclusions per protocol and family; only administered ones (`*`) can be deleted,
    and only whole, so removing part of one deletes it and adds the rest back."""
    want = wanted_protos(protos)
    steps: list[Step] = []
    warnings: list[str] = []
    notes: list[str] = []
    for s in facts.reserved_sets:
        if s.proto not in want:
            continue
        fam = "ipv4" if s.family == 4 else "ipv6"
        cur = s.ports
        key = f"excluded {fam}/{s.proto}"

        def step(argv, undo, new_set, cur_set, key=key):
            steps.append(Step(key, str(cur_set), str(new_set), argv, undo))
            return new_set

        if op == "add":
            for r in ports.difference(cur).ranges:
                cur = step(add_excluded_argv(fam, s.proto, r), delete_excluded_argv(fam, s.proto, r),
                           cur.union(PortSet([r])), cur)
        else:
            fixed = ports & s.ports.difference(s.administered)
            if fixed:
                warnings.append(f"{s.name}: {fixed} excluded by the system (not administered), cannot be removed")
            for r in s.administered.ranges:
                if not PortSet([r]) & ports:
                    continue
                cur = step(delete_excluded_argv(fam, s.proto, r), add_excluded_argv(fam, s.proto, r),
                           cur.difference(PortSet([r])), cur)
                for piece in PortSet([r]).difference(ports).ranges:
                    cur = step(add_excluded_argv(fam, s.proto, piece),
                               delete_excluded_argv(fam, s.proto, piece), cur.union(PortSet([piece])), cur)
    if not steps:
        notes.append("nothing to change")
    return steps, warnings, notes



class Executor(bsd.Executor):
    """netsh through the runner; reads back the range or the exclusion list a step changed."""

    def read(self, step: Step) -> str:
        """The step's range or exclusion list as netsh reports it now."""
        if step.key.startswith("excluded "):
            fam, proto = step.key.split()[1].split("/")
            return str(parse_excluded(self.runner(excluded_argv(fam, proto)))[0])
        fam, proto = step.key.split("/")
        return str(parse_dynamicport(self.runner(dynamic_argv(fam, proto))))

    def reread(self, plan: Plan) -> HostFacts:
        """The host facts after the change."""
        return read_facts(self.runner)
