"""Allocator models and the event loop, without the kernel: invariants that
follow from the kernel's code and from RFC 6056, checked on simulated runs."""
from __future__ import annotations

import pytest

from portscope.errors import BadInput
from portscope.simulate import ALGORITHMS, Lifetime, alloc_linux, parse_rate, run, workload


def sim(**kw):
    kw.setdefault("range", "40000-40039")
    return run(workload(**kw))


def chosen(r):
    return [p for p in r.ports if p >= 0]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_model_fills_only_free_ports_and_is_deterministic(algorithm):
    kw = dict(range="40000-40063", reserved="40005,40040-40043", listeners="40050",
              algorithm=algorithm, connects=80, seed=7)
    a, b = sim(**kw), sim(**kw)
    assert list(a.ports) == list(b.ports)  # same seed, same run
    ports = chosen(a)
    assert len(ports) == len(set(ports))  # one destination, none closed: no port twice
    assert not {40005, 40040, 40041, 40042, 40043, 40050} & set(ports)
    assert all(40000 <= p <= 40063 for p in ports)
    if algorithm != "rfc6056-2":  # algorithm 2 may give up early (random tries)
        assert a.first_failure_index == len(ports) == 64 - 6


def test_connect_shares_ports_across_destinations_bind_does_not():
    c = sim(connects=200, destinations=4)
    b = sim(connects=200, destinations=4, algorithm="linux-bind")
    assert c.connects - c.failures == 4 * 40  # 40 per destination
    assert c.ports_used_max == 40  # the same 40 ports, each shared four ways
    assert b.connects - b.failures == 40  # bind(0) holds a port for everyone
    assert b.first_failure_index == 40


def test_sources_multiply_capacity():
    r = sim(connects=200, destinations=1, sources=3)
    assert r.connects - r.failures == 120
    assert r.ports_used_max == 120  # (source, port) pairs


def test_same_parity_range_walks_only_remaining_ports_per_pass():
    # 40000-40040: remaining = 40, so one start offset never reaches 40000
    counts = {len(chosen(sim(range="40000-40040", connects=50, seed=s))) for s in range(60)}
    assert counts == {40, 41}


def test_udp_has_no_parity_preference_and_no_time_wait():
    r = sim(range="40000-40999", algorithm="udp", connects=400, destinations=50)
    odd = sum(p & 1 for p in chosen(r))
    assert 120 < odd < 280
    steady = run(workload(range="40000-40099", algorithm="udp", rate="50/s", lifetime="1",
                          duration=30, destinations=5))
    assert steady.failures == 0 and steady.settings["time_wait"] == 0.0


def test_fast_path_is_exact():
    """The bitset walk must give the same ports and step counts as walking port
    by port, including TIME_WAIT take-over and the same-parity edge case."""
    cases = [
        dict(range="40000-40299", reserved="40010-40020", listeners="40100", rate="30/s",
             lifetime="exp:3", duration=60, time_wait=10, destinations=2),
        dict(range="40000-40299", rate="400/s", lifetime="uniform:0-2", duration=20, time_wait=10,
             tw_reuse=1, arrivals="poisson"),
        dict(range="40000-40300", reserved="40001,40003-40007", rate="60/s", lifetime="exp:1",
             duration=60, time_wait=10, destinations=2, sources=2, arrivals="poisson"),
        dict(range="40000-40299", rate="40/s", lifetime="0", duration=40, time_wait=10, algorithm="linux-bind"),
        dict(range="40001-40300", rate="40/s", lifetime="0", duration=40, time_wait=10, socket_range="40100-40200"),
    ]
    old = alloc_linux.HOT_STEPS
    try:
        for kw in cases:
            alloc_linux.HOT_STEPS = 48
            fast = run(workload(**kw))
            alloc_linux.HOT_STEPS = 10 ** 9
            slow = run(workload(**kw))
            assert list(fast.ports) == list(slow.ports), kw
            assert fast.steps_hist == slow.steps_hist, kw
            assert fast.search_steps["max"] > alloc_linux.HOT_STEPS or fast.search_steps["max"] > 48
    finally:
        alloc_linux.HOT_STEPS = old


def test_time_wait_blocks_and_onset_is_capacity_over_rate():
    # 300 ports, 10/s closed at once: every port sits in TIME_WAIT for 60 s
    r = run(workload(range="40000-40299", rate="10/s", lifetime="0", duration=70))
    assert r.first_failure_index == 300
    assert r.first_failure_time == pytest.approx(30.0)
    # the first TIME_WAIT expires at 60 s: failures from 30 s to 60 s only
    assert r.failures == pytest.approx(300, abs=2)
    assert max(r.series.time_wait) == 300


def test_tw_reuse_takes_over_time_wait_after_the_delay():
    kw = dict(range="40000-40299", rate="10/s", lifetime="0", duration=70)
    r1 = run(workload(tw_reuse=1, **kw))
    assert r1.failures == 0 and r1.tw_reused > 0
    r2 = run(workload(tw_reuse=2, **kw))  # loopback only: these destinations are not loopback
    assert r2.failures > 0 and r2.tw_reused == 0
    r3 = run(workload(tw_reuse=2, loopback=True, **kw))
    assert r3.failures == 0


def test_search_steps_grow_as_the_range_fills():
    r = run(workload(range="40000-40999", rate="50/s", lifetime="0", duration=30))
    early = r.steps_hist[1] / sum(r.steps_hist)
    assert early < 1.0 and r.search_steps["max"] > 10 and r.search_steps["mean"] > 1.0
    light = run(workload(range="40000-40999", rate="5/s", lifetime="0", duration=30))
    assert light.search_steps["mean"] < r.search_steps["mean"]


def test_predictability_ranks_the_algorithms():
    kw = dict(range="32768-60999", connects=3000, destinations=1)
    pred = {a: run(workload(algorithm=a, **kw), timeseries=False).predictability["same_destination"]["rate"]
            for a in ("linux", "sequential", "rfc6056-1", "rfc6056-3", "rfc6056-4", "rfc6056-5")}
    assert pred["sequential"] > 0.99 and pred["rfc6056-3"] > 0.99 and pred["rfc6056-4"] > 0.99
    # Linux: the slot advances by 2 * (1 + random(0..7)) when the first try is free: 1 in 8
    assert 0.09 < pred["linux"] < 0.16
    assert pred["rfc6056-1"] < 0.02 and pred["rfc6056-5"] < 0.02


def test_connect_uses_low_parity_first_bind_the_other():
    c = run(workload(range="40001-40100", connects=50))  # low is odd here
    assert all(p % 2 == 1 for p in chosen(c))
    b = run(workload(range="40001-40100", connects=50, algorithm="linux-bind"))
    assert all(p % 2 == 0 for p in chosen(b))
    # measured against each model's own first pass: low's parity for connect(), the other for bind(0)
    assert c.parity["before_other_parity"] == 50 and b.parity["before_other_parity"] == 50
    assert c.first_pass_parity == 1 and b.first_pass_parity == 0


def test_series_accounting_is_consistent():
    r = run(workload(range="40000-40999", rate="40/s", lifetime="exp:5", duration=100, time_wait=20,
                     arrivals="poisson"))
    s = r.series
    assert sum(s.failures) == r.failures
    assert all(p >= 0 for p in s.established + s.time_wait)
    assert all(e + w == p for e, w, p in zip(s.established, s.time_wait, s.ports_in_use))
    assert max(s.ports_in_use) <= r.ports_used_max


@pytest.mark.parametrize("text,mean", [("5", 5.0), ("exp:2", 2.0), ("uniform:1-3", 2.0), ("inf", float("inf"))])
def test_lifetime_parse(text, mean):
    assert Lifetime.parse(text).mean == mean


@pytest.mark.parametrize("text", ["", "exp", "uniform:3-1", "foo:1", "-1", "exp:-2", "exp:nan", "uniform:1"])
def test_lifetime_rejects(text):
    with pytest.raises(BadInput):
        Lifetime.parse(text)


def test_rate_and_workload_validation():
    assert parse_rate("500/s") == 500.0 and parse_rate(" 2.5 ") == 2.5
    for bad in ("0/s", "x", "-3", "inf"):
        with pytest.raises(BadInput):
            parse_rate(bad)
    with pytest.raises(BadInput):
        workload(range="40000-40039")  # neither connects nor rate
    open_ended = workload(range="40000-40039", rate="5/s")  # --plan takes it (it picks its own span)...
    with pytest.raises(BadInput, match="needs --duration"):
        run(open_ended)  # ...a run needs an end
    with pytest.raises(BadInput):
        workload(range="40000-40039", connects=5, destinations=0)
    with pytest.raises(BadInput):
        run(workload(range="40000-40039", connects=5, algorithm="udp", socket_range="40001-40002"))


def test_poisson_arrivals_per_pair():
    import numpy as np
    r = run(workload(range="32768-60999", rate="200/s", arrivals="poisson", duration=100, destinations=4,
                     lifetime="lognormal:2,0.5", seed=5), timeseries=False)
    assert 19000 < r.connects < 21000  # 20,000 expected, sd ~141
    from portscope.simulate import Lifetime
    lt = Lifetime.parse("lognormal:2,0.5")
    sample = lt.sample(np.random.default_rng(1), 200000)
    assert abs(sample.mean() - lt.mean) < 0.02 * lt.mean
    assert abs(float(np.median(sample)) - 2.0) < 0.05


def test_every_model_says_its_scope():
    import random as _random
    from portscope.simulate import allocators
    from portscope.simulate.space import make_space
    for name in ALGORITHMS:
        a = allocators.make(name, make_space("40000-40039"), _random.Random(0))
        assert a.scope == allocators.scope_of(name), name


def test_pair_hash_is_a_pure_function_of_the_pair():
    """No per-pair state has to be kept: the keyed hash is recomputed identically
    after its cache is dropped, and differs between pairs."""
    import random as _random
    from portscope.simulate.alloc_linux import LinuxConnect
    from portscope.simulate.space import make_space
    a = LinuxConnect(make_space("40000-40039"), _random.Random(3))
    first = [a.key_hash(k) for k in range(1000)]
    a._keys.clear()
    assert [a.key_hash(k) for k in range(1000)] == first and len(set(first)) == 1000


@pytest.mark.parametrize("rng,reserved,band", [
    ("40000-40010", "", (10, 11)), ("40000-40040", "40010,40021", (38, 39)),
    ("40000-40010", "40010", (9, 10)), ("40001-40011", "", (10, 11)), ("40000-40039", "", (40, 40)),
])
def test_each_pool_fails_inside_the_capacity_band(rng, reserved, band):
    """Equal-parity ends: each search walks `remaining` = size - 1 ports, so a pool
    fails holding min..max ports; the top of the band is common, the bottom occurs."""
    from collections import Counter
    w = workload(range=rng, reserved=reserved, connects=6 * 50, destinations=6)
    assert (w.capacity.min, w.capacity.max) == band
    seen = Counter()
    for seed in range(40):
        r = run(workload(range=rng, reserved=reserved, connects=6 * 50, destinations=6, seed=seed),
                timeseries=False)
        per = Counter(i % 6 for i, p in enumerate(r.ports) if p >= 0)
        seen.update(per.values())
    assert set(seen) <= set(range(band[0], band[1] + 1))
    assert set(seen) == set(band)  # both ends of the band occur over 240 pools


def test_bind_zero_pools_are_source_ips():
    """bind(IP, 0) on two source IPs: each IP holds its own 40 ports, and ports repeat
    across IPs; destinations do not matter."""
    r = sim(connects=120, sources=2, destinations=3, algorithm="linux-bind")
    assert r.capacity.per == "source" and r.first_failure_index == 79
    ports = chosen(r)
    assert len(ports) == 80 and len(set(ports)) == 40
    one = sim(connects=120, sources=1, destinations=3, algorithm="linux-bind")
    assert one.first_failure_index == 40 and one.capacity.per == "source"
    udp = sim(connects=120, sources=2, destinations=3, algorithm="udp")
    assert udp.first_failure_index == 40 and udp.capacity.per == "host"


def test_live_socket_bound_refuses_runs_too_big_to_hold():
    with pytest.raises(BadInput, match="sockets at once"):
        workload(connects=30_000_000, destinations=10_000)
    # a million pairs is fine when little is held at once
    w = workload(connects=1000, destinations=1_000_000, sources=1_000_000)
    assert w.live_bound(1000) == 1000
    w = workload(rate="100000/s", duration=100, destinations=1000)  # Little: ~6M held
    assert w.live_bound(1e7) < 2e7
