"""The event-driven loop: arrivals in time order, connection closes on a heap,
TIME_WAIT expiries in a FIFO (they expire in the order connections closed).
Time jumps from event to event; nothing ticks."""
from __future__ import annotations

import gc
import heapq
import math
import random
import time
from array import array
from collections import deque
from typing import Any, Callable

import numpy as np

from ..errors import BadInput
from . import allocators, arrivals
from .alloc_base import GLOBAL, TUPLE
from .result import Result, Series, parity_stats, predictability
from .workload import MAX_SAMPLES, Workload

SERIES_POINTS = 200


def run(w: Workload, *, timeseries: bool = True, record: bool = True,
        progress: Callable[[float], None] | None = None) -> Result:
    """Simulate `w`. record=False skips the per-connect port log (parity and
    predictability then stay empty) to save memory on very long runs. `progress`, if
    given, is called with the simulated share done (0..1) once per chunk of arrivals."""
    # the loop makes millions of short-lived tuples and no reference cycles: the
    # cyclic GC would only rescan the live tables over and over
    gc_was = gc.isenabled()
    gc.disable()
    try:
        return _run(w, timeseries, record, progress)
    finally:
        if gc_was:
            gc.enable()


def _run(w: Workload, timeseries: bool, record: bool, progress=None) -> Result:
    w.require_end()
    started = time.perf_counter()
    rng = random.Random(w.seed)
    gen = np.random.default_rng(w.seed)
    alloc = allocators.make(w.algorithm, w.space, rng, socket_range=w.socket_range,
                            udp_hash_size=w.udp_hash_size)
    choose = alloc.choose
    scope = alloc.scope
    glob = scope == GLOBAL
    tup = scope == TUPLE
    dests = w.destinations
    # A pool is what the allocator shares ports within: a (source, destination)
    # pair (tuple), a source IP (source) or the host (global). Pools get their
    # port map when first used and lose it when it empties, so memory follows the
    # sockets held, not destinations x sources.
    used: dict = {}     # pool -> {port: -1.0 live | TIME_WAIT start}
    src_div = dests if tup else 1  # pool // src_div = the source IP holding the port
    reuse_after = w.reuse_after
    tw = w.effective_time_wait
    inf = math.inf

    bits = getattr(alloc, "bits", None)  # hot pools' free-port bitsets (linux models)
    if bits is None:
        bits = {}
    # only the linux models keep `bits` and have release/occupy: called only when bits is set
    release: Any = getattr(alloc, "release", None)
    occupy: Any = getattr(alloc, "occupy", None)
    eligq: deque = deque()  # (TIME_WAIT start, pool, port): tw_reuse may take it over from then on
    track_elig = reuse_after is not None and tw > 0

    closes: list = []   # heap of (close time, seq, pool, port)
    twq: deque = deque()  # (expiry, pool, port, TIME_WAIT start)
    held: dict = {}     # (source, port) -> sockets holding it, ESTABLISHED or TIME_WAIT
    held_max = 0
    n_est = n_tw = 0
    reused = 0
    seq = 0
    hist = [0] * (max(w.space.range.size, 1) + 2)
    ports_log = array("l")
    kids_log = array("l")
    failures = 0
    first_fail = None
    first_fail_t = None
    index = 0

    end = arrivals.end_time(w)
    step_t = w.interval or end / SERIES_POINTS
    if timeseries and end / step_t > MAX_SAMPLES:
        raise BadInput(f"--interval {step_t:g}s gives more than {MAX_SAMPLES} time-series points over {end:g}s")
    next_sample = step_t
    s_t, s_est, s_tw, s_ports, s_fail = [], [], [], [], []
    bin_fail = 0

    for times, kids, lives in arrivals.chunks(w, gen):
        if progress is not None and len(times):
            progress(min(1.0, times[0] / end) if end else 0.0)
        for t, kid, life in zip(times, kids, lives):
            while closes and closes[0][0] <= t:
                tc, _, ck, cp = heapq.heappop(closes)
                d = used[ck]
                n_est -= 1
                if tw > 0:
                    d[cp] = tc
                    twq.append((tc + tw, ck, cp, tc))
                    n_tw += 1
                    if track_elig:
                        eligq.append((tc, ck, cp))
                else:
                    del d[cp]
                    if bits and ck in bits:
                        release(ck, cp)
                    h = cp if glob else ((ck // src_div) << 16) | cp
                    c = held[h] - 1
                    if c:
                        held[h] = c
                    else:
                        del held[h]
                    if not d and not glob:  # the pool holds nothing: drop its state
                        del used[ck]
                        bits.pop(ck, None)
            while twq and twq[0][0] <= t:
                _, ck, cp, start = twq.popleft()
                d = used.get(ck)
                if d is not None and d.get(cp) == start:  # not taken over by tcp_tw_reuse meanwhile
                    del d[cp]
                    n_tw -= 1
                    if bits and ck in bits:
                        release(ck, cp)
                    h = cp if glob else ((ck // src_div) << 16) | cp
                    c = held[h] - 1
                    if c:
                        held[h] = c
                    else:
                        del held[h]
                    if not d and not glob:
                        del used[ck]
                        bits.pop(ck, None)
            while eligq and t - eligq[0][0] >= reuse_after:
                start, ck, cp = eligq.popleft()
                if ck in bits and used[ck].get(cp) == start:
                    release(ck, cp)
            if timeseries and t >= next_sample:
                while t >= next_sample:
                    s_t.append(round(next_sample, 6))
                    s_est.append(n_est)
                    s_tw.append(n_tw)
                    s_ports.append(len(held))
                    s_fail.append(bin_fail)
                    bin_fail = 0
                    next_sample += step_t
            pool = kid if tup else (0 if glob else kid // dests)
            d = used.get(pool)
            if d is None:
                d = used[pool] = {}
            port, steps = choose(pool, d, t, reuse_after)
            hist[steps] += 1
            if port < 0:
                failures += 1
                bin_fail += 1
                if first_fail is None:
                    first_fail, first_fail_t = index, t
                if not d and not glob:
                    del used[pool]
                    bits.pop(pool, None)
            else:
                if port in d:  # a TIME_WAIT taken over
                    n_tw -= 1
                    reused += 1
                else:
                    h = port if glob else ((pool // src_div) << 16) | port
                    held[h] = held.get(h, 0) + 1
                    if len(held) > held_max:
                        held_max = len(held)
                d[port] = -1.0
                n_est += 1
                if bits and pool in bits:
                    occupy(pool, port)
                if life != inf:
                    heapq.heappush(closes, (t + life, seq, pool, port))
                    seq += 1
            if record:
                ports_log.append(port)
                kids_log.append(kid)
            index += 1

    if timeseries:
        s_t.append(round(max(end, next_sample - step_t), 6))
        s_est.append(n_est)
        s_tw.append(n_tw)
        s_ports.append(len(held))
        s_fail.append(bin_fail)
    series = Series(s_t, s_est, s_tw, s_ports, s_fail) if timeseries else None
    low = alloc.low if hasattr(alloc, "low") else w.space.low
    first_pass = {"low": low & 1, "other": (low & 1) ^ 1}.get(alloc.parity or "")
    par = parity_stats(ports_log, first_pass, low & 1) if record else {}
    pred = predictability(ports_log, kids_log, w.space.range.size) if record else {}
    return Result(
        settings=w.settings(), connects=index, failures=failures, first_failure_index=first_fail,
        first_failure_time=None if first_fail_t is None else round(first_fail_t, 6),
        ports_used_max=held_max, capacity=w.capacity, steps_hist=hist, parity=par,
        predictability=pred, tw_reused=reused, series=series,
        elapsed_s=time.perf_counter() - started, ports=ports_log if record else None,
        first_pass_parity=first_pass,
    )
