"""Validated, atomic, rolled-back changes to the port settings.

A change is planned first (pure: every check runs, nothing is touched), then
applied step by step; each step is read back, and any failure undoes the steps
already done (and the drop-in file) so the system ends exactly as it started.

Linux writes /proc/sys directly (the same effect as the printed `sysctl -w`,
and it works inside a namespace entered with setns). macOS/FreeBSD and Windows
run their native commands through an injectable runner, so tests can feed a
fake one that behaves like the real OS.
"""
from __future__ import annotations

import os
import shlex
import subprocess
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Sequence

from .. import netns as _netns
from ..errors import BadInput, NotPermitted, PortscopeError, SystemReadError, Unsupported
from ..ports import MIN_USABLE_RANGE, PortRange, PortSet
from . import HostFacts
from ..fsutil import atomic_write
from .linux import read_text

SYSCTL_DIR_ENV = "PORTSCOPE_SYSCTL_DIR"
DEFAULT_SYSCTL_DIR = "/etc/sysctl.d"
DROPIN_NAME = "90-portscope.conf"
BSD_SYSCTL_CONF = "/etc/sysctl.conf"

RANGE_KEY = "net.ipv4.ip_local_port_range"
RESERVED_KEY = "net.ipv4.ip_local_reserved_ports"

Runner = Callable[[Sequence[str]], str]


# --------------------------------------------------------------------------- running commands

def run_command(argv: Sequence[str], timeout: float = 30) -> str:
    """The default runner: run argv, return stdout, map failures to portscope errors."""
    try:
        p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise Unsupported(f"`{argv[0]}` is not available on this system")
    except subprocess.TimeoutExpired:
        raise SystemReadError(f"`{shlex.join(argv)}` did not finish within {timeout:.0f} s")
    if p.returncode != 0:
        msg = " ".join((p.stderr or p.stdout or "").split()) or f"exit status {p.returncode}"
        low = msg.lower()
        if any(w in low for w in ("permission", "not permitted", "elevation", "administrator", "must be root")):
            raise NotPermitted(f"`{shlex.join(argv)}` failed: {msg}")
        raise SystemReadError(f"`{shlex.join(argv)}` failed: {msg}")
    return p.stdout


# --------------------------------------------------------------------------- plan types

@dataclass(frozen=True)
class Step:
    """One setting changed by one command; `old`/`new` are normalised read-back values."""

    key: str                      # net.ipv4.ip_local_port_range, net.inet.ip.portrange.first, ipv4/tcp
    old: str
    new: str
    argv: tuple[str, ...]         # the command that makes the change (printed by --dry-run)
    undo_argv: tuple[str, ...]


@dataclass(frozen=True)
class FileWrite:
    path: str
    old: str | None               # None: the file does not exist yet
    new: str


@dataclass(frozen=True)
class Plan:
    os: str
    action: str                   # "range set" | "reserve add" | "reserve remove"
    netns: str | None
    before: HostFacts
    steps: tuple[Step, ...] = ()
    persist: FileWrite | None = None
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def changes_anything(self) -> bool:
        return bool(self.steps) or (self.persist is not None and self.persist.old != self.persist.new)

    def commands(self) -> list[str]:
        """Exactly what would run, as shell lines one can paste."""
        prefix = netns_prefix(self.netns)
        out = [shlex.join(prefix + s.argv) for s in self.steps]
        if self.persist is not None and self.persist.old != self.persist.new:
            keys = [ln for ln in self.persist.new.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
            out.append(f"# write {self.persist.path} atomically (temp file + rename), setting:")
            out.extend(f"#   {ln}" for ln in keys)
        return out


@dataclass(frozen=True)
class Result:
    plan: Plan
    after: HostFacts
    read_back: dict = field(default_factory=dict)   # key -> value read after writing
    persisted: str | None = None


def _portscope(netns: str | None) -> str:
    """The portscope command line that acts on the same namespace as this plan."""
    return f"portscope --netns {netns}" if netns else "portscope"


def netns_prefix(netns: str | None) -> tuple[str, ...]:
    if not netns:
        return ()
    if netns.startswith("pid:"):
        return ("nsenter", "-t", netns[4:], "-n")
    return ("ip", "netns", "exec", netns)


# --------------------------------------------------------------------------- input checks

def parse_int(text, what: str) -> int:
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    from ..numparse import _WHOLE, MAX_DIGITS
    s = str(text).strip()
    # ASCII only (str.isdigit() is true for "٤٠٠٠٠"); a sign is allowed so that -5 gets the range message
    if len(s) > MAX_DIGITS or not _WHOLE.fullmatch(s) or s.startswith("+"):
        raise BadInput(f"{what} must be an integer written in digits 0-9, got {text!r}")
    return int(s)


def check_range(low, high) -> PortRange:
    lo, hi = parse_int(low, "LOW"), parse_int(high, "HIGH")
    for v, what in ((lo, "LOW"), (hi, "HIGH")):
        if not 1 <= v <= 65535:
            raise BadInput(f"{what} must be in 1..65535, got {v}")
    if lo > hi:
        raise BadInput(f"LOW {lo} is above HIGH {hi}")
    return PortRange(lo, hi)


def parse_ports(text: str) -> PortSet:
    try:
        ports = PortSet.parse(text)
    except BadInput as e:
        msg = str(e)
        raise BadInput(msg if repr(str(text)) in msg else f"bad port list {str(text)!r}: {msg}") from None
    if not ports:
        raise BadInput("no ports given (expected e.g. 8080,9000-9010)")
    return ports


# --------------------------------------------------------------------------- sockets (range set checks)

@dataclass(frozen=True)
class SocketFacts:
    """What the range-set checks need from the live socket table."""

    listeners: dict                 # port -> "tcp"/"udp"/"tcp+udp": servers bound explicitly
    ephemeral_in_use: frozenset     # local ports the kernel handed out (EPH_LOCAL sockets)
    backend: str | None = None


def socket_facts(netns: str | None, facts: HostFacts) -> SocketFacts:
    from ..sockets import snapshot
    from ..sockets import table as T

    tab = snapshot(protos=("tcp", "udp"), netns=netns, facts=facts)
    listeners: dict[int, str] = {}
    eph: set[int] = set()
    for i in range(len(tab)):
        port = tab.local_port[i]
        proto = tab.proto[i]
        if tab.ephemeral[i] == T.EPH_LOCAL:
            eph.add(port)
        is_server = False
        if proto == T.PROTO_TCP and tab.state[i] == T.TCP_LISTEN:
            is_server = True
        elif proto == T.PROTO_UDP and tab.remote_port[i] == 0:
            auto = tab.auto_bound[i]
            # procfs cannot say who chose the port: count it only outside today's range
            is_server = auto == T.AUTO_NO or (auto == T.AUTO_UNKNOWN and port not in facts.ephemeral)
        if is_server:
            name = T.PROTO_NAMES[proto]
            prev = listeners.get(port)
            listeners[port] = name if prev in (None, name) else "tcp+udp"
    return SocketFacts(listeners, frozenset(eph - set(listeners)), tab.backend)


# --------------------------------------------------------------------------- drop-in files

def sysctl_dir(override: str | None = None) -> str:
    return override or os.environ.get(SYSCTL_DIR_ENV) or DEFAULT_SYSCTL_DIR


def _line_key(line: str) -> str | None:
    s = line.strip()
    if not s or s[0] in "#;" or "=" not in s:
        return None
    k = s.split("=", 1)[0].strip().lstrip("-")   # "-key = v" means "ignore errors" to systemd
    return k.replace("/", ".")


def edit_conf(text: str | None, settings: dict[str, str], sep: str = " = ") -> str:
    """Set keys in a sysctl.conf-style text, keeping every other line as it was."""
    lines = (text or "").splitlines()
    if text is None:
        lines = ["# Written by portscope (`portscope range set/reserve ... --persist`).",
                 "# Applied at boot by systemd-sysctl / `sysctl --system`."]
    done: set[str] = set()
    out = []
    for ln in lines:
        k = _line_key(ln)
        if k in settings:
            if k in done:
                continue           # drop duplicates: the last one would win and confuse readers
            out.append(f"{k}{sep}{settings[k]}")
            done.add(k)
        else:
            out.append(ln)
    out.extend(f"{k}{sep}{v}" for k, v in settings.items() if k not in done)
    return "\n".join(out) + "\n"


def _restore_file(path: str, old: str | None) -> None:
    if old is None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    else:
        atomic_write(path, old)


def _later_overrides(directory: str, ours: str, keys: Iterable[str]) -> list[str]:
    """Other drop-ins sorting after ours that set the same keys (they win at boot)."""
    keys = set(keys)
    found = []
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".conf"))
    except OSError:
        return found
    for n in names:
        if n <= ours:
            continue
        text = read_text(os.path.join(directory, n)) or ""
        hit = sorted({k for k in map(_line_key, text.splitlines()) if k in keys})
        if hit:
            found.append(f"{os.path.join(directory, n)} also sets {', '.join(hit)} and is applied after "
                         f"{ours}, so it wins at boot")
    return found


def _persist_plan(osname: str, netns: str | None, settings: dict[str, str],
                  directory: str | None) -> tuple[FileWrite, list[str]]:
    if netns:
        raise BadInput("--persist cannot be combined with --netns: files under /etc/sysctl.d are applied "
                       "at boot to the host's namespace, not to a named or container namespace")
    if osname == "linux":
        d = sysctl_dir(directory)
        path = os.path.join(d, DROPIN_NAME)
        sep = " = "
    elif osname in ("darwin", "freebsd"):
        path = directory and os.path.join(directory, "sysctl.conf") or BSD_SYSCTL_CONF
        d = os.path.dirname(path)
        sep = "="
    else:
        raise Unsupported(f"--persist is not needed on {osname}: netsh changes are persistent")
    from ..fsutil import check_writable_dir
    check_writable_dir(d, "persist in")
    old = read_text(path)
    fw = FileWrite(path, old, edit_conf(old, settings, sep))
    warnings = _later_overrides(d, os.path.basename(path), settings) if osname == "linux" else []
    return fw, warnings


# --------------------------------------------------------------------------- planning

def _linux_step(key: str, old: str, new: str) -> Step:
    return Step(key, old, new, ("sysctl", "-w", f"{key}={new}"), ("sysctl", "-w", f"{key}={old}"))


def _fmt_ports(ports: Iterable[int], limit: int = 12) -> str:
    ps = sorted(ports)
    s = str(PortSet.of(ps[:limit]))
    return s + (f" and {len(ps) - limit} more" if len(ps) > limit else "")


def plan_range(low, high, *, facts: HostFacts, sockets: SocketFacts | None = None, force: bool = False,
               persist: bool = False, sysctl_dir: str | None = None, reserve_listeners: bool = False,
               protos: Sequence[str] | None = None) -> Plan:
    """Check everything about `range set LOW HIGH` and say exactly what would be done."""
    new = check_range(low, high)
    osname = facts.os
    warnings: list[str] = []
    notes: list[str] = []
    floor = facts.unprivileged_port_start
    if osname in ("darwin", "freebsd"):
        floor = max(floor, 1024)   # FreeBSD clamps first/last to >= IPPORT_RESERVED
    if new.low < floor:
        what = "ip_unprivileged_port_start" if osname == "linux" else "the privileged-port boundary"
        raise BadInput(f"LOW {new.low} is below {what} ({floor}): ephemeral ports must be unprivileged")
    if osname == "windows":
        from . import windows
        windows.check_settable(new)
    elif osname not in ("linux", "darwin", "freebsd"):
        raise Unsupported(f"changing the range is not supported on {osname}")
    if osname != "windows" and protos:
        raise BadInput(f"--proto applies to Windows only: {osname} has one range for every protocol")

    reserved_after = facts.reserved
    steps: list[Step] = []

    serving = new.size - facts.reserved.count_in(new) if osname == "linux" else new.size
    if serving < MIN_USABLE_RANGE:
        why = (f"the range {new} leaves {serving} usable port{'s' if serving != 1 else ''}"
               + (f" ({facts.reserved.count_in(new)} of its {new.size} reserved)" if serving != new.size else "")
               + ": each destination could hold one connection at a time and the next connect() "
               f"would fail (EADDRNOTAVAIL); a range needs at least {MIN_USABLE_RANGE} usable ports, "
               "as `lab exhaust` does")
        if not force:
            raise BadInput(f"{why} (use --force to do it anyway)")
        warnings.append(f"--force: {why}")

    if osname == "linux" and new.same_parity:
        warnings.append(f"LOW {new.low} and HIGH {new.high} have the same parity; the kernel prefers "
                        f"different parity (connect() walks ports of LOW's parity first) and logs a warning")

    if sockets is not None and osname == "linux":
        exposed = sorted(p for p in sockets.listeners if p in new and p not in facts.reserved)
        if exposed:
            if reserve_listeners:
                reserved_after = facts.reserved.union(PortSet.of(exposed))
                steps.append(_linux_step(RESERVED_KEY, str(facts.reserved), str(reserved_after)))
                notes.append(f"reserving listening ports {_fmt_ports(exposed)} first, so the kernel never "
                             f"hands them out to outgoing connections")
            else:
                warnings.append(f"listening servers on {_fmt_ports(exposed)} would fall inside the new range "
                                f"unreserved: an outgoing connection could take the port while the server "
                                f"restarts. Reserve them: {_portscope(facts.netns)} reserve add {PortSet.of(exposed)} "
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
    elif sockets is None and osname == "linux":
        notes.append("socket checks skipped (no socket table): listeners and ports in use were not checked")

    if osname == "linux":
        cur = facts.ephemeral
        if new != cur:
            steps.append(_linux_step(RANGE_KEY, f"{cur.low} {cur.high}", f"{new.low} {new.high}"))
        settings = {RANGE_KEY: f"{new.low} {new.high}"}
        if reserved_after != facts.reserved:
            settings[RESERVED_KEY] = str(reserved_after)
    elif osname in ("darwin", "freebsd"):
        from . import bsd
        cur = {r.name: r.range for r in facts.ranges}.get("default", facts.ephemeral)
        first_old, last_old = str(cur.low), str(cur.high)
        # widening downward first/upward last first keeps first <= last at every moment
        order = (("first", first_old, new.low), ("last", last_old, new.high))
        if new.low > cur.high:
            order = order[::-1]
        for k, old, val in order:
            if old != str(val):
                steps.append(Step(bsd.PREFIX + k, old, str(val), bsd.set_argv(k, val), bsd.set_argv(k, int(old))))
        settings = {bsd.PREFIX + "first": str(new.low), bsd.PREFIX + "last": str(new.high)}
    else:
        from . import windows
        want = set(protos or windows.PROTOS)
        bad = want - set(windows.PROTOS)
        if bad:
            raise BadInput(f"unknown protocol {sorted(bad)[0]!r} (Windows has tcp and udp ranges)")
        for r in facts.ranges:
            if r.proto in want and r.range != new:
                fam = "ipv4" if r.family == 4 else "ipv6"
                steps.append(Step(f"{fam}/{r.proto}", str(r.range), str(new),
                                  windows.set_argv(fam, r.proto, new), windows.set_argv(fam, r.proto, r.range)))
        settings = {}

    if not steps:
        notes.append(f"the range is already {new} ({new.size:,} ports); nothing to change")
    fw = None
    if persist:
        fw, more = _persist_plan(osname, facts.netns, settings, sysctl_dir)
        warnings.extend(more)
    return Plan(osname, "range set", facts.netns, facts, tuple(steps), fw, tuple(warnings), tuple(notes))


def plan_reserve(op: str, ports_text: str, *, facts: HostFacts, persist: bool = False,
                 sysctl_dir: str | None = None, protos: Sequence[str] | None = None,
                 force: bool = False) -> Plan:
    """`reserve add|remove PORTS`: the new list is computed from the current one, never replaced blindly."""
    if op not in ("add", "remove"):
        raise BadInput(f"unknown reserve operation {op!r}")
    ports = parse_ports(ports_text)
    if facts.os == "windows":
        if persist:
            raise Unsupported("--persist is not needed on windows: netsh exclusions are persistent")
        return _plan_windows_exclusions(op, ports, facts, protos)
    if protos:
        raise BadInput("--proto applies to Windows only: the Linux reserved list covers every protocol")
    if facts.os != "linux":
        raise Unsupported(f"a reserved-ports list exists on Linux and Windows (exclusions) only, not on {facts.os}")
    old = facts.reserved
    warnings, notes = [], []
    if op == "add":
        new = old.union(ports)
        already = ports.difference(ports.difference(old))
        if new == old:
            notes.append(f"{ports} already reserved; nothing to change")
        elif len(already):
            notes.append(f"already reserved: {already}")
        left = facts.ephemeral.size - new.count_in(facts.ephemeral)
        if left < MIN_USABLE_RANGE and new != old:
            # the same rule as range set: a range that cannot serve is refused, with the reason
            why = (f"reserving {ports} leaves {left} usable port{'s' if left != 1 else ''} of the ephemeral "
                   f"range {facts.ephemeral}: connect() would fail at once (EADDRNOTAVAIL); at least "
                   f"{MIN_USABLE_RANGE} must stay usable")
            if not force:
                raise BadInput(f"{why} (use --force to do it anyway)")
            warnings.append(f"--force: {why}")
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
    steps = (_linux_step(RESERVED_KEY, str(old), str(new)),) if new != old else ()
    fw = None
    if persist:
        fw, more = _persist_plan("linux", facts.netns, {RESERVED_KEY: str(new)}, sysctl_dir)
        warnings.extend(more)
    return Plan("linux", f"reserve {op}", facts.netns, facts, steps, fw, tuple(warnings), tuple(notes))


def _plan_windows_exclusions(op: str, ports: PortSet, facts: HostFacts, protos) -> Plan:
    """Windows keeps exclusions per protocol and family; only administered ones (`*`) can be deleted,
    and only whole, so removing part of one deletes it and adds the rest back."""
    from . import windows
    want = set(protos or windows.PROTOS)
    if want - set(windows.PROTOS):
        raise BadInput(f"unknown protocol {sorted(want - set(windows.PROTOS))[0]!r} (Windows has tcp and udp)")
    steps: list[Step] = []
    warnings: list[str] = []
    notes: list[str] = []
    for s in facts.reserved_sets:
        if s.proto not in want:
            continue
        fam = "ipv4" if s.family == 4 else "ipv6"
        cur = s.ports
        key = f"excluded {fam}/{s.proto}"

        def step(argv, undo, new_set, cur_set):
            steps.append(Step(key, str(cur_set), str(new_set), argv, undo))
            return new_set

        if op == "add":
            for r in ports.difference(cur).ranges:
                cur = step(windows.add_excluded_argv(fam, s.proto, r), windows.delete_excluded_argv(fam, s.proto, r),
                           cur.union(PortSet([r])), cur)
        else:
            fixed = ports.difference(ports.difference(s.ports.difference(s.administered)))
            if fixed:
                warnings.append(f"{s.name}: {fixed} excluded by the system (not administered), cannot be removed")
            for r in s.administered.ranges:
                if not PortSet([r]).difference(PortSet([r]).difference(ports)):
                    continue
                cur = step(windows.delete_excluded_argv(fam, s.proto, r), windows.add_excluded_argv(fam, s.proto, r),
                           cur.difference(PortSet([r])), cur)
                for piece in PortSet([r]).difference(ports).ranges:
                    cur = step(windows.add_excluded_argv(fam, s.proto, piece),
                               windows.delete_excluded_argv(fam, s.proto, piece), cur.union(PortSet([piece])), cur)
    if not steps:
        notes.append("nothing to change")
    return Plan("windows", f"reserve {op}", None, facts, tuple(steps), None, tuple(warnings), tuple(notes))


# --------------------------------------------------------------------------- executing

class LinuxSysctl:
    """Reads and writes net.ipv4.* through /proc/sys of the calling thread's namespace."""

    def read(self, key: str) -> str:
        from . import linux
        name = key.rsplit(".", 1)[1]
        text = linux.read_sysctl(name)
        if name == "ip_local_reserved_ports":
            return str(linux.parse_reserved(text))
        return " ".join(text.split())

    def write(self, key: str, value: str) -> None:
        from . import linux
        # a trailing newline: a zero-byte write would not clear an empty reserved list
        linux.write_sysctl(key.rsplit(".", 1)[1], value + "\n")


class _LinuxExec:
    def __init__(self, sysctl):
        self.sysctl = sysctl or LinuxSysctl()

    def read(self, step: Step) -> str:
        return self.sysctl.read(step.key)

    def do(self, step: Step) -> None:
        self.sysctl.write(step.key, step.new)

    def undo(self, step: Step) -> None:
        self.sysctl.write(step.key, step.old)


class _BsdExec:
    def __init__(self, runner: Runner):
        self.runner = runner

    def read(self, step: Step) -> str:
        from . import bsd
        v = bsd.parse_sysctl(self.runner(bsd.READ_ARGV)).get(step.key[len(bsd.PREFIX):])
        return "" if v is None else str(v)

    def do(self, step: Step) -> None:
        self.runner(step.argv)

    def undo(self, step: Step) -> None:
        self.runner(step.undo_argv)


class _WindowsExec(_BsdExec):
    def read(self, step: Step) -> str:
        from . import windows
        if step.key.startswith("excluded "):
            fam, proto = step.key.split()[1].split("/")
            return str(windows.parse_excluded(self.runner(windows.excluded_argv(fam, proto)))[0])
        fam, proto = step.key.split("/")
        return str(windows.parse_dynamicport(self.runner(windows.dynamic_argv(fam, proto))))


def _reread(plan: Plan, runner: Runner) -> HostFacts:
    if plan.os == "linux":
        from . import linux
        return linux._read_here(plan.netns)
    if plan.os == "windows":
        from . import windows
        return windows.read_facts(runner)
    from . import bsd
    return bsd.read_facts(plan.os, runner)


def apply(plan: Plan, *, sysctl=None, runner: Runner | None = None,
          write_file: Callable[[str, str], None] = atomic_write) -> Result:
    """Do the plan; on any failure undo what was done and re-raise (one line)."""
    runner = runner or run_command
    ex = _LinuxExec(sysctl) if plan.os == "linux" else _WindowsExec(runner) if plan.os == "windows" else _BsdExec(runner)
    ctx = _netns.entered(plan.netns) if plan.os == "linux" else nullcontext()
    done: list[Step] = []
    wrote_file = False
    read_back: dict[str, str] = {}
    with ctx:
        try:
            for i, step in enumerate(plan.steps):
                now = ex.read(step)
                if now != step.old:
                    raise SystemReadError(f"{step.key} changed since it was read ({step.old!r} -> {now!r}); "
                                          f"run the command again")
                ex.do(step)
                done.append(step)
                got = ex.read(step)
                read_back[step.key] = got
                if got != step.new:
                    raise SystemReadError(f"read back {step.key}: expected {step.new!r}, got {got!r}")
            if plan.persist is not None and plan.persist.old != plan.persist.new:
                write_file(plan.persist.path, plan.persist.new)
                wrote_file = True
            after = _reread(plan, runner)
        except BaseException as e:
            problems = _rollback(ex, done, plan.persist if wrote_file else None)
            if isinstance(e, (KeyboardInterrupt, SystemExit)) and not problems:
                raise
            reason = str(e) if isinstance(e, PortscopeError) else f"{type(e).__name__}: {e}"
            if problems:
                raise SystemReadError(f"{reason}; ROLLBACK FAILED, fix by hand: {'; '.join(problems)}") from e
            undone = f"rolled back {len(done)} change(s), settings are as before" if done or wrote_file \
                else "nothing was changed"
            err = type(e)(f"{reason} ({undone})") if isinstance(e, PortscopeError) \
                else SystemReadError(f"{reason} ({undone})")
            raise err from e
    return Result(plan, after, read_back, plan.persist.path if wrote_file else None)


def _rollback(ex, done: list[Step], fw: FileWrite | None) -> list[str]:
    problems = []
    if fw is not None:
        try:
            _restore_file(fw.path, fw.old)
        except Exception as e:
            problems.append(f"restore {fw.path}: {e}")
    for step in reversed(done):
        try:
            ex.undo(step)
            if ex.read(step) != step.old:
                raise SystemReadError("value did not come back")
        except Exception as e:
            problems.append(f"{shlex.join(step.undo_argv)} ({e})")
    return problems


# --------------------------------------------------------------------------- the facade

def range_set(low, high, *, netns: str | None = None, dry_run: bool = False, persist: bool = False,
              force: bool = False, reserve_listeners: bool = False, sysctl_dir: str | None = None,
              check_sockets: bool = True, facts: HostFacts | None = None, runner: Runner | None = None,
              sysctl=None, protos: Sequence[str] | None = None) -> tuple[Plan, Result | None]:
    check_range(low, high)   # bad numbers fail before any system read
    if facts is None:
        from . import facts as read
        facts = read(netns)
    sockets = None
    if check_sockets and facts.os == "linux":
        try:
            sockets = socket_facts(netns, facts)
        except ImportError:
            sockets = None
    plan = plan_range(low, high, facts=facts, sockets=sockets, force=force, persist=persist,
                      sysctl_dir=sysctl_dir, reserve_listeners=reserve_listeners, protos=protos)
    if dry_run or not plan.changes_anything:
        return plan, None
    return plan, apply(plan, sysctl=sysctl, runner=runner)


def reserve_change(op: str, ports: str, *, netns: str | None = None, dry_run: bool = False,
                   persist: bool = False, sysctl_dir: str | None = None, facts: HostFacts | None = None,
                   sysctl=None, runner: Runner | None = None,
                   protos: Sequence[str] | None = None, force: bool = False) -> tuple[Plan, Result | None]:
    parse_ports(ports)
    if facts is None:
        from . import facts as read
        facts = read(netns)
    plan = plan_reserve(op, ports, facts=facts, persist=persist, sysctl_dir=sysctl_dir, protos=protos,
                        force=force)
    if dry_run or not plan.changes_anything:
        return plan, None
    return plan, apply(plan, sysctl=sysctl, runner=runner)
