"""Arrival streams: when each connect happens and to which (source, destination)
pair, generated in numpy chunks so the event loop only iterates."""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from .workload import Workload

CHUNK = 65536
IN_A_ROW_GAP = 0.001  # --connects without --rate: one connect per millisecond


def chunks(w: Workload, gen: np.random.Generator) -> Iterator[tuple[list, list, list]]:
    """Yields (times, pair ids, lifetimes) lists, times ascending."""
    k = w.pairs
    limit = w.connects if w.connects is not None else math.inf
    end = w.duration if w.duration is not None else math.inf
    done = 0
    t0 = 0.0
    while done < limit:
        n = int(min(CHUNK, limit - done))
        idx = np.arange(done, done + n)
        if w.in_a_row:
            times = idx * IN_A_ROW_GAP
            kids = idx % k
            lives = np.full(n, np.inf)
        else:
            if w.arrivals == "fixed":
                times = idx / w.rate_per_s
                kids = idx % k
            else:
                times = t0 + np.cumsum(gen.exponential(1.0 / w.rate_per_s, n))
                kids = gen.integers(0, k, n)
            lives = w.lifetime.sample(gen, n)
        if times[-1] >= end:
            keep = int(np.searchsorted(times, end, side="left"))
            times, kids, lives = times[:keep], kids[:keep], lives[:keep]
            if keep:
                yield times.tolist(), kids.tolist(), lives.tolist()
            return
        t0 = float(times[-1])
        done += n
        yield times.tolist(), kids.tolist(), lives.tolist()


def end_time(w: Workload) -> float:
    """Sim time at which the run stops: the last arrival's slot (a run without a rate opens
    back to back), the duration, or the time the connects take at the rate."""
    if w.in_a_row:
        return max(1, w.connects or 0) * IN_A_ROW_GAP
    if w.duration is not None:
        if w.connects is not None and w.arrivals == "fixed":
            return min(w.duration, w.connects / w.rate_per_s)
        return w.duration
    return (w.connects or 1) / w.rate_per_s
