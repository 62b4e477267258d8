"""The closed-form capacity plan: Little's law per port pool.

A connect() port stays taken for the connection's lifetime plus TIME_WAIT
(60 s), so one (source IP, destination) pair needs rate x (lifetime + TIME_WAIT)
ports on average, and has |range| - |reserved| - |bind-held| of them. bind(0)
holds a port for every destination, so its pool is a source IP; UDP autobind
holds it for the whole host. Those pools are the plan's "pairs".

For the Linux step-2 walks over a range whose ends have the same parity the
capacity is a band (space.Capacity): a pool fails holding anything from `min`
to `max` ports, so the plan gives the earliest and the latest onset, and the
check accepts any simulated onset between them.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Callable

import numpy as np

from .alloc_base import GLOBAL, SOURCE, TUPLE
from .arrivals import IN_A_ROW_GAP
from .space import Capacity
from .workload import Workload

MAX_CHECK_CONNECTS = 3_000_000
ONSET_TOLERANCE = 0.10  # a simulated onset within 10% of the closed form agrees


@dataclass(frozen=True)
class Plan:
    """The closed-form capacity plan (`simulate --plan`): need against capacity per pool, and
    when and how the workload would fail."""

    algorithm: str
    rate: float | None
    destinations: int
    sources: int
    hold_s: float                 # mean time a port stays taken: lifetime + TIME_WAIT
    rate_per_pair: float | None
    need_per_pair: float          # ports one pool holds at steady state (Little's law)
    capacity_per_pair: int        # ports one pool is sure to get (capacity.min)
    capacity: dict                # {min, max, per, note}: see space.Capacity
    utilization: float            # need / capacity_per_pair
    fits: bool                    # no failure: neither within the run nor at steady state
    onset_s: float | None         # earliest first failure (None: none within the run)
    onset_s_max: float | None     # latest first failure (None: may never fail); = onset_s unless min < max
    max_rate_per_pair: float      # new connections/s one pool can sustain
    sources_needed: int | None    # source IPs needed at this range (None: does not help)
    range_size_needed: int        # ports the range needs with the current sources (> 64512: impossible)
    reuse: dict                   # the same numbers with tcp_tw_reuse=1

    def to_json(self) -> dict:
        """Every field by name; infinities and NaN as null (JSON has neither)."""
        return _finite(asdict(self))


def _holds(w: Workload, tw: float, n: int = 20000):
    gen = np.random.default_rng(w.seed)
    life = w.lifetime.sample(gen, n) if not w.in_a_row else np.full(n, np.inf)
    return life + tw


def _onset(rate: float, holds, capacity: int) -> float | None:
    """Earliest t with rate * E[min(t, hold)] >= capacity (fixed-rate arrivals)."""
    if rate * float(np.mean(holds)) < capacity:
        return None
    lo, hi = 0.0, capacity / rate * 1.0001
    while rate * float(np.mean(np.minimum(hi, holds))) < capacity:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        if rate * float(np.mean(np.minimum(mid, holds))) >= capacity:
            hi = mid
        else:
            lo = mid
    return hi


def first_index(w: Workload, held: int) -> int:
    """In a row (round-robin over the pairs): the 0-based index of the connect
    that finds pool 0 holding `held` ports. Pool 0 is the first to reach any
    count, so a run whose pools each fail holding `min`..`max` ports has its first
    failure between first_index(min) and first_index(max)."""
    p, d = w.pairs, w.destinations
    if w.scope == TUPLE:
        return held * p
    if w.scope == SOURCE:  # pool 0 = the first source IP: pairs 0..d-1
        return (held // d) * p + held % d
    return held


def in_a_row_demand(w: Workload) -> int:
    """Ports pool 0 must hold for `connects` in a row. The round-robin order fills it
    first (see first_index), so this is the demand on the busiest pool."""
    n, p, d = w.connect_count, w.pairs, w.destinations
    if w.scope == TUPLE:
        return -(-n // p)
    if w.scope == SOURCE:
        return (n // p) * d + min(n % p, d)
    return n


def onsets(w: Workload, tw_s: float, cap: Capacity) -> tuple[float | None, float | None]:
    """(earliest, latest) first failure in simulated seconds, ignoring --duration:
    earliest None = no failure; latest None = a failure is not certain."""
    if w.in_a_row:
        n = w.connect_count
        lo, hi = first_index(w, cap.min), first_index(w, cap.max)
        return (lo * IN_A_ROW_GAP if n > lo else None, hi * IN_A_ROW_GAP if n > hi else None)
    holds = _holds(w, tw_s)
    rate_pp = w.rate_per_s / w.pools
    return (_onset(rate_pp, holds, cap.min) if cap.min else 0.0,
            _onset(rate_pp, holds, cap.max) if cap.max else 0.0)


def plan(w: Workload) -> Plan:
    """The capacity plan of workload `w`, from Little's law and the allocator's capacity (no event loop)."""
    cap = w.capacity
    scope = w.scope
    capacity = cap.min
    skip = len(w.space.skip)
    pools = w.pools

    def numbers(tw_s: float) -> dict:
        hold = (w.lifetime.mean if not w.in_a_row else math.inf) + tw_s  # exact mean; samples for the onset
        lo, hi = onsets(w, tw_s, cap)
        if w.in_a_row:
            need, rate_pp = float(in_a_row_demand(w)), None
        else:
            rate_pp = w.rate_per_s / pools
            need = rate_pp * hold
            if w.duration is not None:  # the run ends first
                lo = None if lo is not None and lo >= w.duration else lo
                hi = None if hi is not None and hi >= w.duration else hi
        per_dst = need * (w.sources if scope != GLOBAL else 1)  # what more source IPs would share
        return {"hold_s": round(hold, 6), "need_per_pair": round(need, 3),
                "utilization": round(need / capacity, 4) if capacity else math.inf,
                "fits": need <= capacity and lo is None,
                "onset_s": None if lo is None else round(lo, 3),
                "onset_s_max": None if hi is None else round(hi, 3),
                "max_rate_per_pair": round(capacity / hold, 3) if hold and math.isfinite(hold) else 0.0,
                "sources_needed": None if scope == GLOBAL or not capacity else max(1, math.ceil(per_dst / capacity)),
                "range_size_needed": math.ceil(need) + skip,
                "rate_per_pair": rate_pp}

    base = numbers(w.effective_time_wait)
    if w.algorithm in ("linux-bind", "udp") or w.in_a_row:
        reuse = {}  # UDP has no TIME_WAIT; bind(0) conflicts with TIME_WAIT whatever tcp_tw_reuse says
    else:
        reuse = numbers(min(w.effective_time_wait, w.tw_reuse_delay_ms / 1000.0))
        reuse.pop("rate_per_pair")
    return Plan(algorithm=w.algorithm, rate=w.rate, destinations=w.destinations, sources=w.sources,
                hold_s=base["hold_s"], rate_per_pair=base["rate_per_pair"],
                need_per_pair=base["need_per_pair"], capacity_per_pair=capacity, capacity=cap.to_json(),
                utilization=base["utilization"], fits=base["fits"], onset_s=base["onset_s"],
                onset_s_max=base["onset_s_max"], max_rate_per_pair=base["max_rate_per_pair"],
                sources_needed=base["sources_needed"], range_size_needed=base["range_size_needed"],
                reuse=reuse)


def check_span(w: Workload, hold: float, onset: float | None) -> float | None:
    """How long the check simulates a rate run: long enough to reach steady state
    (1.5 x the hold time) and to see the latest predicted onset (x 1.2), at least
    1 s, at most --duration and MAX_CHECK_CONNECTS connects. None: in a row."""
    if w.in_a_row:
        return None
    horizon = max(1.5 * hold if math.isfinite(hold) else 0.0, 1.2 * (onset or 0.0), 1.0)
    span = min(w.duration or math.inf, horizon, MAX_CHECK_CONNECTS / w.rate_per_s)
    if w.connects is not None and w.arrivals == "fixed":
        span = min(span, w.connects / w.rate_per_s)
    return span


def _simulate(w: Workload, hold: float, onset: float | None, progress=None) -> dict:
    from .engine import run
    span = check_span(w, hold, onset)
    sim_w = w if span is None else replace(w, duration=span)
    r = run(sim_w, timeseries=False, record=False, progress=progress)
    return {"simulated_s": None if span is None else round(span, 3),
            "connects": r.connects, "failures": r.failures, "first_failure_time": r.first_failure_time,
            "ports_used_max": r.ports_used_max}


def _agrees(sim: dict, lo: float | None, hi: float | None, span: float, timing: bool, exact: bool) -> bool:
    """Does a simulated run fit the plan's (earliest, latest) onsets? Failures are
    required when even the latest onset falls inside the span, allowed when the
    earliest does; with `timing` the first failure must also fall between them
    (within 10% for rate runs; exactly for runs in a row)."""
    rel, eps = (0.0, 1e-9) if exact else (ONSET_TOLERANCE, 1e-3)
    if sim["failures"] == 0:
        return hi is None or hi * (1 + rel) + eps >= span
    if lo is None or lo * (1 - rel) - eps > span:
        return False
    if not timing:
        return True
    t = sim["first_failure_time"]
    return lo * (1 - rel) - eps <= t <= (math.inf if hi is None else hi * (1 + rel) + eps)


def check(w: Workload, p: Plan, progress: Callable[[str, float], None] | None = None) -> dict:
    """Run the simulation the plan speaks about (bounded) and say whether they agree:
    both see failures or neither does, and the simulated onset lies between the
    plan's earliest and latest onset (within 10%). When the plan says the workload
    does not fit, also simulate its two remedies: the number of source IPs it asks
    for, and tcp_tw_reuse=1. `duration_default`: no --duration or --connects bounded
    the run, so the check picked its own span (check_span). `progress(label, share)`, if
    given, hears how far each simulation is."""
    def step(label):
        return None if progress is None else (lambda share: progress(label, share))

    cap = w.capacity
    tw = w.effective_time_wait
    lo, hi = onsets(w, tw, cap)
    out = _simulate(w, p.hold_s, hi if hi is not None else lo, step("checking the plan"))
    span = w.connect_count * IN_A_ROW_GAP if w.in_a_row else out["simulated_s"]
    out["agrees"] = _agrees(out, lo, hi, span, timing=True, exact=w.in_a_row)
    out["duration_default"] = not w.in_a_row and w.duration is None and w.connects is None
    if p.fits or w.in_a_row:
        return out
    if p.sources_needed is not None and p.sources_needed != w.sources and p.sources_needed <= 64:
        r = _simulate(replace(w, sources=p.sources_needed), p.hold_s, None,
                      step(f"checking {p.sources_needed} source IPs"))
        out["with_sources_needed"] = {"sources": p.sources_needed, "failures": r["failures"],
                                      "agrees": r["failures"] == 0}
    if p.reuse and w.tw_reuse != 1:
        rw = replace(w, tw_reuse=1)
        rlo, rhi = onsets(w, min(tw, w.tw_reuse_delay_ms / 1000.0), cap)
        r = _simulate(rw, p.hold_s, rhi if rhi is not None else rlo, step("checking tcp_tw_reuse=1"))
        out["with_tw_reuse"] = {"failures": r["failures"],
                                "agrees": _agrees(r, rlo, rhi, r["simulated_s"], timing=False, exact=False)}
    return out


def _finite(v):
    """JSON has no Infinity: a port never released (--connects) holds for `null` seconds."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v
