"""What every host backend shares: the facts shape, the plan/step/result types of a change,
the command runner and the checks of user input. Backends import this module only; the
facade (`host/__init__`) and the engine (`host/engine`) put the pieces together.
"""
from __future__ import annotations

from ..errors import BadInput, NotPermitted, SystemReadError, Unsupported
from ..netns import parse as parse_netns
from ..numparse import is_whole
from ..ports import IANA_DYNAMIC, PortRange, PortSet
from ..value import Frozen

TYPE_CHECKING = False     # not typing's: importing typing would cost `portscope range` a third of the interpreter's start-up
if TYPE_CHECKING:
    from typing import Callable, Iterable, Protocol, Sequence

    Runner = Callable[[Sequence[str]], str]
else:
    Protocol = object       # Sysctl is a protocol for the checker; nothing isinstance()s it
    Runner = None           # an annotation only (from __future__ import annotations)


class Sysctl(Protocol):
    """What the Linux executor reads and writes settings through (linux.LinuxSysctl, or a
    fake in tests that behaves like the kernel)."""

    def read(self, key: str) -> str:
        """The setting's normalised value, e.g. "32768 60999" for net.ipv4.ip_local_port_range."""
        ...

    def write(self, key: str, value: str) -> None:
        """Set `key` to `value` (the kernel, or the fake, may refuse)."""
        ...


# --------------------------------------------------------------------------- facts

class NamedRange(Frozen):
    """One of several ranges an OS keeps (Windows per protocol/family, BSD hi/low)."""

    __slots__ = ("name", "range", "proto", "family")
    name: str                   # e.g. "default", "hi", "low", "tcp/ipv4"
    range: PortRange
    proto: str | None           # "tcp" | "udp" | None for all
    family: int | None          # 4 | 6 | None for both

    def __init__(self, name: str, range: PortRange, proto: str | None = None, family: int | None = None) -> None:
        self._init(name=name, range=range, proto=proto, family=family)


NO_PORTS = PortSet()


class NamedSet(Frozen):
    """Reserved/excluded ports kept per protocol and family (Windows exclusions)."""

    __slots__ = ("name", "ports", "proto", "family", "administered")
    name: str                   # e.g. "tcp/ipv4"
    ports: PortSet
    proto: str | None
    family: int | None
    administered: PortSet       # Windows `*`: added by an admin

    def __init__(self, name: str, ports: PortSet, proto: str | None = None, family: int | None = None,
                 administered: PortSet = NO_PORTS) -> None:
        self._init(name=name, ports=ports, proto=proto, family=family, administered=administered)

    def to_json(self) -> dict:
        """One entry of `sets` in `reserve list --json`: ports as kernel list syntax, with count."""
        return {"name": self.name, "proto": self.proto, "family": self.family, "ports": str(self.ports),
                "count": len(self.ports), "administered": str(self.administered)}


class HostFacts(Frozen):
    """Every backend returns exactly this shape (the contract tests check it). Frozen;
    equal when every field but `sources` (where the values were read) is; `replace()`
    gives a changed copy."""

    __slots__ = ("os", "ephemeral", "reserved", "unprivileged_port_start", "os_default", "ranges",
                 "tcp_tw_reuse", "tcp_tw_reuse_delay_ms", "tcp_fin_timeout", "netns", "reserved_sets",
                 "privileged_low", "sources", "tcp_msl_ms", "tcp_timed_wait_delay", "os_release",
                 "wildcard_bind_unprivileged")
    _uncompared = ("sources",)
    os: str                          # "linux" | "darwin" | "freebsd" | "windows"
    ephemeral: PortRange             # the range connect()/bind(0) draw from (TCP/IPv4 on Windows)
    reserved: PortSet                # never auto-assigned (Linux reserved list, Windows exclusions)
    unprivileged_port_start: int     # ports below need privilege to bind (0: no privileged ports)
    os_default: PortRange            # this OS's shipped default ephemeral range
    ranges: tuple[NamedRange, ...]
    tcp_tw_reuse: int | None         # Linux: 0 off, 1 on, 2 loopback only
    tcp_tw_reuse_delay_ms: int | None
    tcp_fin_timeout: int | None
    netns: str | None
    reserved_sets: tuple[NamedSet, ...]   # per protocol/family (Windows); () elsewhere
    privileged_low: int                   # FreeBSD reservedlow: privileged ports are [low, start-1]
    sources: dict                         # where each value was read (not compared)
    tcp_msl_ms: int | None                # BSD/macOS net.inet.tcp.msl, when read
    tcp_timed_wait_delay: int | None      # Windows TcpTimedWaitDelay (s), when set and read
    os_release: str | None                # macOS kern.osrelease (Darwin version), when read
    wildcard_bind_unprivileged: bool      # macOS 10.14+: ports below the boundary are free on 0.0.0.0/::

    def __init__(self, os: str, ephemeral: PortRange, reserved: PortSet, unprivileged_port_start: int,
                 os_default: PortRange, ranges: tuple[NamedRange, ...] = (), tcp_tw_reuse: int | None = None,
                 tcp_tw_reuse_delay_ms: int | None = None, tcp_fin_timeout: int | None = None,
                 netns: str | None = None, reserved_sets: tuple[NamedSet, ...] = (), privileged_low: int = 0,
                 sources: dict | None = None, tcp_msl_ms: int | None = None,
                 tcp_timed_wait_delay: int | None = None, os_release: str | None = None,
                 wildcard_bind_unprivileged: bool = False) -> None:
        self._init(os=os, ephemeral=ephemeral, reserved=reserved, unprivileged_port_start=unprivileged_port_start,
                   os_default=os_default, ranges=ranges, tcp_tw_reuse=tcp_tw_reuse,
                   tcp_tw_reuse_delay_ms=tcp_tw_reuse_delay_ms, tcp_fin_timeout=tcp_fin_timeout, netns=netns,
                   reserved_sets=reserved_sets, privileged_low=privileged_low,
                   sources={} if sources is None else sources, tcp_msl_ms=tcp_msl_ms,
                   tcp_timed_wait_delay=tcp_timed_wait_delay, os_release=os_release,
                   wildcard_bind_unprivileged=wildcard_bind_unprivileged)

    def to_json(self) -> dict:
        """The `portscope range --json` document."""
        return facts_json(self)

    def brief_json(self) -> dict:
        """Range and reservations only: the before/after of a change's JSON."""
        return {"ephemeral": self.ephemeral.to_json(), "reserved": str(self.reserved),
                "ranges": [{"name": r.name, **r.range.to_json(), "proto": r.proto, "family": r.family}
                           for r in self.ranges]}

    def reserved_json(self) -> dict:
        """The `portscope reserve list --json` document."""
        r = self.reserved
        in_range = r.count_in(self.ephemeral)
        return {
            "reserved": str(r),
            "count": len(r),
            "in_range": in_range,
            "ranges": [x.to_json() for x in r.ranges],
            "ephemeral": self.ephemeral.to_json(),
            "usable_ephemeral": self.ephemeral.size - in_range,
            "netns": self.netns,
            **({"sets": [s.to_json() for s in self.reserved_sets]} if self.reserved_sets else {}),
        }

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


def facts_json(f: "HostFacts") -> dict:
    """The `portscope range --json` shape (documented in docs/range.md)."""
    in_range = f.reserved.count_in(f.ephemeral)
    d = {
        "os": f.os,
        "netns": f.netns,
        "ephemeral": f.ephemeral.to_json(),
        "reserved": str(f.reserved),
        "reserved_count": len(f.reserved),
        "reserved_in_range": in_range,
        "usable_ephemeral": f.ephemeral.size - in_range,
        "unprivileged_port_start": f.unprivileged_port_start,
        "same_parity": f.ephemeral.same_parity,
        "os_default": f.os_default.to_json(),
        "is_os_default": f.ephemeral == f.os_default,
        "iana_dynamic": IANA_DYNAMIC.to_json(),
        "overlap_with_iana_dynamic": max(0, min(f.ephemeral.high, IANA_DYNAMIC.high)
                                         - max(f.ephemeral.low, IANA_DYNAMIC.low) + 1),
        "comparison": iana_comparison(f.ephemeral),
        "ranges": [dict(name=r.name, **r.range.to_json(), proto=r.proto, family=r.family) for r in f.ranges],
        "tcp_tw_reuse": f.tcp_tw_reuse,
        "tcp_tw_reuse_delay_ms": f.tcp_tw_reuse_delay_ms,
        "tcp_fin_timeout": f.tcp_fin_timeout,
        "time_wait_seconds": f.time_wait_seconds,
        "time_wait_source": f.time_wait_source,
        "sources": dict(f.sources),
    }
    if f.reserved_sets:
        d["reserved_sets"] = [s.to_json() for s in f.reserved_sets]
    if f.privileged_low:
        d["privileged_low"] = f.privileged_low
    return d


# --------------------------------------------------------------------------- running commands and reading files

def run_command(argv: Sequence[str], timeout: float = 30) -> str:
    """The default runner: run argv, return stdout, map failures to portscope errors."""
    # imported here: `portscope range` on Linux runs no command, and subprocess costs a third
    # of the interpreter's own start-up
    import shlex
    import subprocess
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



# --------------------------------------------------------------------------- plan types

class Step(Frozen):
    """One setting changed by one command; `old`/`new` are normalised read-back values."""

    __slots__ = ("key", "old", "new", "argv", "undo_argv")
    key: str                      # net.ipv4.ip_local_port_range, net.inet.ip.portrange.first, ipv4/tcp
    old: str
    new: str
    argv: tuple[str, ...]         # the command that makes the change (printed by --dry-run)
    undo_argv: tuple[str, ...]

    def __init__(self, key: str, old: str, new: str, argv: tuple[str, ...], undo_argv: tuple[str, ...]) -> None:
        self._init(key=key, old=old, new=new, argv=argv, undo_argv=undo_argv)


class FileWrite(Frozen):
    """A file a change writes (the persisted setting), with what it held before for rollback."""

    __slots__ = ("path", "old", "new")
    path: str
    old: str | None               # None: the file does not exist yet
    new: str

    def __init__(self, path: str, old: str | None, new: str) -> None:
        self._init(path=path, old=old, new=new)


class Plan(Frozen):
    """Everything a change would do, checked and computed before anything is touched."""

    __slots__ = ("os", "action", "netns", "before", "steps", "persist", "warnings", "notes")
    os: str
    action: str                   # "range set" | "reserve add" | "reserve remove"
    netns: str | None
    before: HostFacts
    steps: tuple[Step, ...]
    persist: FileWrite | None
    warnings: tuple[str, ...]
    notes: tuple[str, ...]

    def __init__(self, os: str, action: str, netns: str | None, before: HostFacts, steps: tuple[Step, ...] = (),
                 persist: FileWrite | None = None, warnings: tuple[str, ...] = (), notes: tuple[str, ...] = ()) -> None:
        self._init(os=os, action=action, netns=netns, before=before, steps=steps, persist=persist,
                   warnings=warnings, notes=notes)

    @property
    def changes_anything(self) -> bool:
        """False when every setting and the persisted file already hold the new values."""
        return bool(self.steps) or (self.persist is not None and self.persist.old != self.persist.new)

    def commands(self) -> list[str]:
        """Exactly what would run, as shell lines one can paste."""
        ns = parse_netns(self.netns)
        prefix = ns.shell_prefix() if ns else ()
        import shlex
        out = [shlex.join(prefix + s.argv) for s in self.steps]
        if self.persist is not None and self.persist.old != self.persist.new:
            keys = [ln for ln in self.persist.new.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
            out.append(f"# write {self.persist.path} atomically (temp file + rename), setting:")
            out.extend(f"#   {ln}" for ln in keys)
        return out


class Result(Frozen):
    """An applied plan: the facts read afterwards and each step's read-back value."""

    __slots__ = ("plan", "after", "read_back", "persisted")
    plan: Plan
    after: HostFacts
    read_back: dict               # key -> value read after writing
    persisted: str | None

    def __init__(self, plan: Plan, after: HostFacts, read_back: dict | None = None,
                 persisted: str | None = None) -> None:
        self._init(plan=plan, after=after, read_back={} if read_back is None else read_back, persisted=persisted)


def change_json(plan: "Plan", result: "Result | None", dry_run: bool) -> dict:
    """The JSON document of `range set` / `reserve add|remove`."""
    return {
        "action": plan.action,
        "dry_run": dry_run,
        "changed": result is not None and bool(plan.steps),
        "commands": plan.commands(),
        "warnings": list(plan.warnings),
        "notes": list(plan.notes),
        "before": plan.before.brief_json(),
        "after": result.after.brief_json() if result else None,
        "read_back": dict(result.read_back) if result else {},
        "persisted": result.persisted if result else None,
    }


class SocketFacts(Frozen):
    """What the range-set checks need from the live socket table."""

    __slots__ = ("listeners", "ephemeral_in_use", "backend")
    listeners: dict                 # port -> "tcp"/"udp"/"tcp+udp": servers bound explicitly
    ephemeral_in_use: frozenset     # local ports the kernel handed out (EPH_LOCAL sockets)
    backend: str | None

    def __init__(self, listeners: dict, ephemeral_in_use: frozenset, backend: str | None = None) -> None:
        self._init(listeners=listeners, ephemeral_in_use=ephemeral_in_use, backend=backend)



# --------------------------------------------------------------------------- input checks

def parse_number(text: int | str, what: str) -> int:
    """An integer the user typed (ASCII digits, optional minus); BadInput otherwise."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    s = str(text).strip()
    # ASCII only (str.isdigit() is true for "٤٠٠٠٠"); a minus is allowed so that -5 gets the range message
    if s.startswith("+") or not is_whole(s):
        raise BadInput(f"{what} must be an integer written in digits 0-9, got {text!r}")
    return int(s)


def check_range(low: int | str, high: int | str) -> PortRange:
    """LOW..HIGH as the user typed them, as a range of 1..65535; BadInput naming the bad end."""
    lo, hi = parse_number(low, "LOW"), parse_number(high, "HIGH")
    for v, what in ((lo, "LOW"), (hi, "HIGH")):
        if not 1 <= v <= 65535:
            raise BadInput(f"{what} must be in 1..65535, got {v}")
    if lo > hi:
        raise BadInput(f"LOW {lo} is above HIGH {hi}")
    return PortRange(lo, hi)


def parse_ports(text: str) -> PortSet:
    """A non-empty port list ("8080,9000-9010"); BadInput quoting the text otherwise."""
    try:
        ports = PortSet.parse(text)
    except BadInput as e:
        msg = str(e)
        raise BadInput(msg if repr(str(text)) in msg else f"bad port list {str(text)!r}: {msg}") from None
    if not ports:
        raise BadInput("no ports given (expected e.g. 8080,9000-9010)")
    return ports


def fmt_ports(ports: Iterable[int], limit: int = 12) -> str:
    """The first `limit` ports (sorted) in list syntax, then how many more."""
    ps = sorted(ports)
    s = str(PortSet.of(ps[:limit]))
    return s + (f" and {len(ps) - limit} more" if len(ps) > limit else "")


