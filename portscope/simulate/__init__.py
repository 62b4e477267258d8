"""The kernel's port allocator at scale: allocator models, workloads, an event
loop, plots and a closed-form capacity plan. See docs/simulate.md."""
from __future__ import annotations

from typing import Any

from .allocators import ALGORITHMS
from .result import Result
from .workload import Lifetime, Workload, parse_rate, workload


def run(w: Workload, **kw: Any) -> "Result":
    """Simulate workload `w` with the event loop (see simulate.engine.run)."""
    from .engine import run as _run
    return _run(w, **kw)


def run_simulation(**kw: Any) -> "Result":
    """One call: run_simulation(range="40000-40039", connects=100) -> Result. The keywords
    are `workload()`'s (the `simulate` command's options); timeseries=False skips the series."""
    timeseries = kw.pop("timeseries", True)
    return run(workload(**kw), timeseries=timeseries)


simulate = run_simulation       # the name earlier releases used


__all__ = ["ALGORITHMS", "Lifetime", "Workload", "parse_rate", "run", "run_simulation", "simulate", "workload"]
