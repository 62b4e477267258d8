"""`lab exhaust` with the kernel as the witness: the failures the eBPF counter saw in the lab
namespace, next to the failed calls the lab itself made (they must be equal)."""
from __future__ import annotations

import errno as E
import os
from collections import Counter
from typing import TYPE_CHECKING

from ..netns import resolve
from .loader import FailureCounter, LoadError
from .watch import describe

if TYPE_CHECKING:
    from ..lab import LabResult


class LabObserver:
    """Load the counter before the lab opens anything (`start`), learn the lab namespace's
    inode when it exists (`ready`), read after the run (`result`), close (`close`)."""

    def __init__(self) -> None:
        self.counter: FailureCounter | None = None
        self.note: str | None = None
        self.inode: int | None = None

    def start(self) -> None:
        """Load the counter (connect and bind); on failure, note why and go on without."""
        fc = FailureCounter(("connect", "bind"))
        try:
            fc.start()
            self.counter = fc
        except LoadError as e:
            self.note = describe(e)

    def ready(self, name: str) -> None:
        """The lab namespace exists: remember its inode."""
        self.inode = os.stat(resolve(name)).st_ino

    def close(self) -> None:
        """Close every BPF object."""
        if self.counter is not None:
            self.counter.close()
            self.counter = None

    def result(self, res: "LabResult") -> dict:
        """The `observed` object of the lab's JSON."""
        made = Counter((d.call, E.errorcode.get(d.errno, str(d.errno)))
                       for d in res.destinations if d.errno is not None)
        out: dict = {"backend": "bpf" if self.counter is not None else "counters", "failed_calls": sum(made.values()),
               "count": None, "failures": [], "match": None}
        if self.counter is None or self.inode is None:
            out["note"] = self.note
            return out
        me = os.getpid()
        rows = [f for f in self.counter.read() if f.netns == self.inode and f.pid == me]
        seen: Counter = Counter()
        for f in rows:
            seen[(f.syscall, f.errno)] += f.count
        out["count"] = sum(seen.values())
        out["failures"] = [{"syscall": f.syscall, "errno": f.errno, "count": f.count, "dst": f.dst,
                            "dport": f.dport} for f in sorted(rows, key=lambda f: (f.dst or "", f.dport or 0))]
        out["match"] = seen == made
        return out
