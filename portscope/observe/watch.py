"""Watch what the kernel refused over a window: the library behind `portscope watch`,
`report --observe` and the exporter's failure metrics.

    with Watcher(netns="blue", bpf=None) as w:   # None: eBPF if it loads, else counters
        obs = w.window(10)                      # blocks 10 s
    obs.to_json()

Failures come from the eBPF counter (loader.FailureCounter) and are attributed to the
network namespace of the calling task: with `netns` given only that namespace's failures
are kept (matched by namespace inode), without it every namespace's are (each row names its
namespace). The TcpExt/sockstat counters are always those of `netns` (this process's
namespace when None).
"""
from __future__ import annotations

import errno as E
import math
import os
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from ..errors import BadInput, NotPermitted, PortscopeError, Unsupported
from ..netns import resolve
from . import counters as C
from .findings import evaluate
from .loader import FailureCounter, LoadError
from .programs import Failure

MAX_SECONDS = 86400.0


def check_seconds(seconds: "float | str", what: str = "--seconds") -> float:
    """A watch window must be a finite number of seconds in (0, 86400]."""
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        raise BadInput(f"{what} must be a number of seconds, got {seconds!r}") from None
    if math.isnan(s) or math.isinf(s) or s <= 0 or s > MAX_SECONDS:
        raise BadInput(f"{what} must be more than 0 and at most {MAX_SECONDS:.0f} seconds, got {seconds}")
    return s


def netns_inode(spec: str | None) -> int | None:
    """The inode of namespace `spec` (NAME or pid:PID), as the programs record it."""
    if not spec:
        return None
    return os.stat(resolve(spec)).st_ino


@dataclass
class Observation:
    """What one window saw: failures, counter deltas, findings."""
    backend: str                              # "bpf" | "counters"
    seconds: float
    failures: list[Failure]
    counters: dict
    netns: str | None = None
    bpf_note: str | None = None               # why eBPF is not the backend
    findings: list = field(default_factory=list)

    def to_json(self) -> dict:
        """The `watch --json` document (docs/json.md)."""
        return {
            "backend": self.backend,
            "seconds": round(self.seconds, 3),
            "failures": [{"syscall": f.syscall, "errno": f.errno, "count": f.count, "pid": f.pid,
                          "comm": f.comm, "cgroup": f.cgroup, "netns": f.netns, "dst": f.dst,
                          "dport": f.dport} for f in self.failures],
            "counters": dict(self.counters),
            "findings": [f.to_json() for f in self.findings],
        }


def failure_key(f: Failure) -> tuple:
    """The identity of a row across reads: everything but the count."""
    return (f.syscall, f.errno, f.pid, f.comm, f.cgroup, f.netns, f.dst, f.dport)


def diff(before: list[Failure], after: list[Failure]) -> list[Failure]:
    """Failures counted between two reads of the same counter, most first."""
    old = {failure_key(f): f.count for f in before}
    out = [replace(f, count=f.count - old.get(failure_key(f), 0)) for f in after]
    return sorted((f for f in out if f.count > 0), key=lambda f: (-f.count, failure_key(f)))


class Watcher:
    """Owns the eBPF counter (when it loads) for the life of the `with` block.

    bpf=None tries eBPF and falls back to the counters, noting why in `bpf_note`;
    bpf=True raises LoadError instead; bpf=False does not try.
    """

    def __init__(self, netns: str | None = None, bpf: bool | None = None, *, own_netns_only: bool = False,
                 mode: str | None = None) -> None:
        self.netns, self.want_bpf, self.mode = netns, bpf, mode
        self.inode = netns_inode(netns)
        if self.inode is None and own_netns_only:
            self.inode = os.stat("/proc/thread-self/ns/net").st_ino
        self.counter: FailureCounter | None = None
        self.bpf_note: str | None = None
        self.load_error: LoadError | None = None

    def __enter__(self) -> "Watcher":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        """Load the eBPF counter unless told not to; see the class docstring for failures."""
        if self.want_bpf is False:
            self.bpf_note = "eBPF not asked for (--no-bpf)"
            return
        fc = FailureCounter(mode=self.mode)
        try:
            fc.start()
        except LoadError as e:
            self.load_error = e
            self.bpf_note = describe(e)
            if self.want_bpf:
                raise
            return
        self.counter = fc

    def close(self) -> None:
        """Unload the counter."""
        if self.counter is not None:
            self.counter.close()
            self.counter = None

    @property
    def backend(self) -> str:
        """"bpf" while the counter is loaded, else "counters"."""
        return "bpf" if self.counter is not None else "counters"

    def failures(self) -> list[Failure]:
        """Everything counted since start, in the watched namespace (all when none given)."""
        if self.counter is None:
            return []
        rows = self.counter.read()
        if self.inode is not None:
            rows = [f for f in rows if f.netns == self.inode]
        return rows

    def sample(self) -> C.Sample:
        """The namespace's TIME_WAIT counters now."""
        return C.read(self.netns)

    def observe(self, start: tuple[float, list[Failure], C.Sample],
                end: tuple[float, list[Failure], C.Sample]) -> Observation:
        """The Observation between two (time, failures, sample) snapshots, with findings."""
        obs = Observation(self.backend, end[0] - start[0], diff(start[1], end[1]),
                          C.delta(start[2], end[2]), self.netns, self.bpf_note)
        obs.findings = evaluate(obs)
        return obs

    def snapshot(self) -> tuple[float, list[Failure], C.Sample]:
        """(monotonic time, failures so far, counters) for `observe`."""
        return time.monotonic(), self.failures(), self.sample()

    def window(self, seconds: float, *, sleep: "Callable[[float], None] | None" = None) -> Observation:
        """Watch for `seconds` and return what happened. On Ctrl-C the window ends early and
        KeyboardInterrupt carries the partial Observation as `.observation`."""
        start = None
        try:
            start = self.snapshot()
            (sleep or time.sleep)(seconds)
        except KeyboardInterrupt as e:
            # before the window started there is nothing to show: observation None
            e.observation = (  # type: ignore[attr-defined]
                self.observe(start, self.snapshot()) if start is not None else None)
            raise
        return self.observe(start, self.snapshot())


def dest_label(f: Failure) -> str:
    """`addr:port` ([v6]:port) of a row, `-` without an address."""
    if f.dst is None:
        return "-"
    return f"[{f.dst}]:{f.dport}" if ":" in f.dst else f"{f.dst}:{f.dport}"


def describe(e: LoadError) -> str:
    """One line on why the eBPF counter did not load."""
    prog = f" (the kernel refused program {e.program})" if e.program else ""
    return f"eBPF failure counter not loaded{prog}: {e}"


def cli_error(e: LoadError) -> Exception:
    """NotPermitted (exit 3) or Unsupported (exit 4) for a counter that did not load. A
    verifier refusal (EACCES with a log) is Unsupported: no privilege would change it."""
    if isinstance(e.cause, PortscopeError):
        return type(e.cause)(describe(e))
    if not e.log and isinstance(e.cause, OSError) and e.cause.errno in (E.EPERM, E.EACCES):
        return NotPermitted(describe(e))
    return Unsupported(describe(e))


def observe(seconds: float, netns: str | None = None, bpf: bool | None = None, *,
            own_netns_only: bool = False) -> Observation:
    """Watch for `seconds`: the one-call form (report --observe)."""
    seconds = check_seconds(seconds)
    with Watcher(netns, bpf, own_netns_only=own_netns_only) as w:
        return w.window(seconds)
