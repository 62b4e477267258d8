"""The outcome of a run, and the statistics derived from what the allocator chose."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from .space import Capacity


@dataclass(frozen=True)
class Series:
    """Sampled at fixed sim-time intervals: state at the end of each interval."""

    t: list
    established: list
    time_wait: list
    ports_in_use: list
    failures: list  # refused connects during the interval

    def to_json(self) -> dict:
        """The `timeseries` object of `simulate --json --timeseries`."""
        return {"t": self.t, "established": self.established, "time_wait": self.time_wait,
                "ports_in_use": self.ports_in_use, "failures": self.failures}


@dataclass(frozen=True)
class Result:
    """What one simulated run did: connects, failures, capacity, search steps, parity, predictability."""

    settings: dict
    connects: int
    failures: int
    first_failure_index: int | None
    first_failure_time: float | None
    ports_used_max: int
    capacity: Capacity
    steps_hist: list = field(repr=False)
    parity: dict = field(default_factory=dict)
    predictability: dict = field(default_factory=dict)
    tw_reused: int = 0
    series: Series | None = field(default=None, repr=False)
    elapsed_s: float = 0.0
    ports: object = field(default=None, repr=False)  # array of chosen ports in order, -1 = refused
    first_pass_parity: int | None = None  # 0 even, 1 odd: the model's first pass; None: no preference

    @property
    def search_steps(self) -> dict:
        """{"mean", "p99", "max"} of the candidates examined per allocation."""
        return steps_summary(self.steps_hist)

    def to_json(self, timeseries: bool = False) -> dict:
        """The `simulate --json` document (docs/json.md); the series only when `timeseries`."""
        out = {
            "connects": self.connects,
            "failures": self.failures,
            "first_failure_index": self.first_failure_index,
            "first_failure_time": self.first_failure_time,
            "ports_used_max": self.ports_used_max,
            "capacity_per_pair": self.capacity.min,
            "capacity": self.capacity.to_json(),
            "search_steps": self.search_steps,
            "parity": self.parity,
            "predictability": self.predictability,
            "time_wait_reused": self.tw_reused,
            "settings": self.settings,
            "elapsed_s": round(self.elapsed_s, 3),
        }
        if timeseries and self.series is not None:
            out["timeseries"] = self.series.to_json()
        return out


def steps_summary(hist: list) -> dict:
    """{"mean", "p99", "max"} of a histogram whose index is the step count."""
    n = sum(hist)
    if n == 0:
        return {"mean": 0.0, "p99": 0, "max": 0}
    total = sum(i * c for i, c in enumerate(hist))
    need = 0.99 * n
    acc = 0
    p99 = 0
    for i, c in enumerate(hist):
        acc += c
        if acc >= need:
            p99 = i
            break
    mx = max(i for i, c in enumerate(hist) if c)
    return {"mean": round(total / n, 4), "p99": p99, "max": mx}


def parity_stats(ports: Sequence[int], first_pass: int | None, low_parity: int) -> dict:
    """Counts of even/odd chosen ports, and how many were handed out before the
    first port whose parity differs from the model's first pass (connect(): low's
    parity; bind(0): the other one). Models without a parity preference
    (first_pass None) are measured against low's parity."""
    import numpy as np
    a = np.asarray(ports, dtype=np.int64)
    a = a[a >= 0]
    odd = int((a & 1).sum())
    ref = low_parity if first_pass is None else first_pass
    other = np.nonzero((a & 1) != ref)[0]
    return {"even": int(a.size - odd), "odd": odd,
            "before_other_parity": int(other[0]) if other.size else int(a.size)}


SAMPLE = 1_000_000


def predictability(ports: Sequence[int], kids: Sequence[int], size: int) -> dict:
    """How often an observer who saw the previous port guesses the next one, by
    guessing previous + the most common step (mod the range size). `global`: the
    previous port of the host, whatever the destination; `same_destination`: the
    previous port towards the same pair. Computed on the first 1M successes."""
    import numpy as np
    p = np.asarray(ports[:SAMPLE], dtype=np.int64)
    k = np.asarray(kids[:SAMPLE], dtype=np.int64)
    ok = p >= 0
    p, k = p[ok], k[ok]

    def hit_rate(d):
        if d.size == 0:
            return None
        d = np.mod(d, size)
        counts = np.bincount(d, minlength=1)
        step = int(counts.argmax())
        return {"rate": round(float(counts[step] / d.size), 4), "step": step}

    out = {"global": hit_rate(np.diff(p))}
    order = np.argsort(k, kind="stable")
    ps, ks = p[order], k[order]
    same = ks[1:] == ks[:-1]
    out["same_destination"] = hit_rate((ps[1:] - ps[:-1])[same])
    return out
