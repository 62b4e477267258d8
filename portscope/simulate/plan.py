"""The closed-form capacity plan: Little's law per (source IP, destination) pair.

A connect() port stays taken for the connection's lifetime plus TIME_WAIT
(60 s), so one pair needs rate x (lifetime + TIME_WAIT) ports on average, and
has |range| - |reserved| - |bind-held| of them. bind(0) and UDP hold ports for
the whole host, so for them the pair is the host.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from .alloc_base import GLOBAL
from .workload import Workload

GLOBAL_MODELS = ("linux-bind", "udp")


@dataclass(frozen=True)
class Plan:
    algorithm: str
    rate: float | None
    destinations: int
    sources: int
    hold_s: float                 # mean time a port stays taken: lifetime + TIME_WAIT
    rate_per_pair: float | None
    need_per_pair: float          # ports one pair holds at steady state (Little's law)
    capacity_per_pair: int
    utilization: float
    fits: bool
    onset_s: float | None         # when a fixed-rate run starts failing (None: never)
    max_rate_per_pair: float      # new connections/s one pair can sustain
    sources_needed: int | None    # source IPs needed at this range (None: does not help)
    range_size_needed: int        # ports the range needs with the current sources (> 64512: impossible)
    reuse: dict                   # the same numbers with tcp_tw_reuse=1

    def to_json(self) -> dict:
        return asdict(self)


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


def plan(w: Workload) -> Plan:
    glob = w.algorithm in GLOBAL_MODELS
    capacity = w.space.usable(w.algorithm)
    skip = len(w.space.skip)
    pairs = 1 if glob else w.pairs
    tw = w.effective_time_wait

    def numbers(tw_s: float) -> dict:
        holds = _holds(w, tw_s)
        hold = (w.lifetime.mean if not w.in_a_row else math.inf) + tw_s  # exact mean; samples for the onset
        if w.in_a_row:
            per_pair = math.ceil((w.connects or 0) / pairs)
            need, rate_pp, onset = float(per_pair), None, None
            if per_pair > capacity:
                onset = capacity * pairs * 0.001  # 1 ms apart, round-robin over pairs
        else:
            rate_pp = w.rate / pairs
            need = rate_pp * hold
            onset = _onset(rate_pp, holds, capacity) if capacity else 0.0
            if onset is not None and w.duration is not None and onset >= w.duration:
                onset = None  # the run ends first
        per_dst = need * (w.sources if not glob else 1)
        return {"hold_s": round(hold, 6), "need_per_pair": round(need, 3),
                "utilization": round(need / capacity, 4) if capacity else math.inf,
                "fits": need <= capacity and onset is None,
                "onset_s": None if onset is None else round(onset, 3),
                "max_rate_per_pair": round(capacity / hold, 3) if hold and math.isfinite(hold) else 0.0,
                "sources_needed": None if glob or not capacity else max(1, math.ceil(per_dst / capacity)),
                "range_size_needed": math.ceil(need) + skip,
                "rate_per_pair": rate_pp}

    base = numbers(tw)
    if glob or w.in_a_row:
        reuse = {}
    else:
        reuse = numbers(min(tw, w.tw_reuse_delay_ms / 1000.0))
        reuse.pop("rate_per_pair")
    return Plan(algorithm=w.algorithm, rate=w.rate, destinations=w.destinations, sources=w.sources,
                hold_s=base["hold_s"], rate_per_pair=base["rate_per_pair"],
                need_per_pair=base["need_per_pair"], capacity_per_pair=capacity,
                utilization=base["utilization"], fits=base["fits"], onset_s=base["onset_s"],
                max_rate_per_pair=base["max_rate_per_pair"], sources_needed=base["sources_needed"],
                range_size_needed=base["range_size_needed"], reuse=reuse)


MAX_CHECK_CONNECTS = 3_000_000


def _simulate(w: Workload, p_hold: float, onset: float | None) -> dict:
    from .engine import run
    sim_w = w
    if not w.in_a_row:
        horizon = max(1.5 * p_hold if math.isfinite(p_hold) else 0.0, 1.2 * (onset or 0.0), 1.0)
        dur = min(w.duration or math.inf, horizon, MAX_CHECK_CONNECTS / w.rate)
        sim_w = replace(w, duration=dur)
    r = run(sim_w, timeseries=False, record=False)
    return {"simulated_s": None if sim_w.duration is None else round(sim_w.duration, 3),
            "connects": r.connects, "failures": r.failures, "first_failure_time": r.first_failure_time,
            "ports_used_max": r.ports_used_max}


def check(w: Workload, p: Plan) -> dict:
    """Run the simulation the plan speaks about (bounded) and say whether they agree:
    both see failures or neither does, and the onsets are within 10%. When the plan
    says the workload does not fit, also simulate its two remedies: the number of
    source IPs it asks for, and tcp_tw_reuse=1."""
    out = _simulate(w, p.hold_s, p.onset_s)
    sim_onset = out["first_failure_time"]
    agree = (out["failures"] == 0) == (p.onset_s is None)
    if agree and p.onset_s is not None and sim_onset is not None:
        agree = abs(sim_onset - p.onset_s) <= 0.1 * max(p.onset_s, 1e-9) + 1e-3
    out["agrees"] = agree
    if p.fits or w.in_a_row:
        return out
    if p.sources_needed is not None and p.sources_needed != w.sources and p.sources_needed <= 64:
        r = _simulate(replace(w, sources=p.sources_needed), p.hold_s, None)
        out["with_sources_needed"] = {"sources": p.sources_needed, "failures": r["failures"],
                                      "agrees": r["failures"] == 0}
    if p.reuse and w.tw_reuse != 1:
        r = _simulate(replace(w, tw_reuse=1), p.hold_s, p.reuse.get("onset_s"))
        out["with_tw_reuse"] = {"failures": r["failures"], "agrees": (r["failures"] == 0) == p.reuse["fits"]}
    return out
