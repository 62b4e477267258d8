"""The kernel's port allocator at scale: allocator models, workloads, an event
loop, plots and a closed-form capacity plan. See docs/simulate.md."""
from __future__ import annotations

from .allocators import ALGORITHMS
from .workload import Lifetime, Workload, parse_rate, workload


def run(w: Workload, **kw):
    from .engine import run as _run
    return _run(w, **kw)


def simulate(**kw):
    """One call: simulate(range="40000-40039", connects=100) -> Result."""
    timeseries = kw.pop("timeseries", True)
    return run(workload(**kw), timeseries=timeseries)


__all__ = ["ALGORITHMS", "Lifetime", "Workload", "parse_rate", "run", "simulate", "workload"]
