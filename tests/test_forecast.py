"""Forecast: rates from samples, steady state, sustainable rate, time to exhaustion.

Synthetic samples pin the arithmetic; the kernel tests feed a paced connection rate inside
a namespace and compare with what the kernel shows (ss) a TIME_WAIT period later.
"""
from __future__ import annotations

import time

import pytest

from portscope.forecast import forecast, sample
from portscope.host import facts as host_facts
from portscope.sockets import snapshot
from test_pressure_model import EST, TW, T, facts  # noqa: F401


def tables_with_rate(rate, seconds, step, start_open=0, low=40000):
    """Samples of a client opening `rate`/s new connections that go straight to TIME_WAIT."""
    out, port = [], low
    t = T()
    t.connect(range(port, port + start_open), state=EST)
    port += start_open
    out.append((0.0, t.t))
    made = 0
    for k in range(1, int(seconds / step) + 1):
        total = int(rate * k * step)
        t2 = T().connect(range(low, low + start_open), state=EST)
        t2.connect(range(low + start_open, low + start_open + total), state=TW)
        made = total
        out.append((k * step, t2.t))
    return out, made


def test_rate_steady_state_and_sustainable():
    f = facts(40000, 40999, reuse=0)                 # 1000 ports, TIME_WAIT 60 s
    samples, made = tables_with_rate(5, 10, 2, start_open=10)
    res = forecast(f, samples, interval=2.0)
    d = res.worst
    assert d.rate_per_s == pytest.approx(5.0)
    assert d.steady_state_time_wait == 300                  # 5/s * 60 s
    assert d.steady_state_in_use == 10 + 300
    assert d.sustainable_rate_per_s == pytest.approx((1000 - 10) / 60)
    assert d.seconds_to_exhaustion is None                  # 310 of 1000: not heading there
    j = res.to_json()
    assert {"rate_per_s", "sustainable_rate_per_s", "seconds_to_exhaustion"} <= set(j["destinations"][0])
    assert j["forecast"]["samples"] == 6 and j["forecast"]["new_connections"] == made


def test_heading_for_exhaustion():
    f = facts(40000, 40099, reuse=0)                 # 100 ports: sustainable 100/60 = 1.7/s
    samples, made = tables_with_rate(5, 4, 1)
    res = forecast(f, samples)
    d = res.worst
    assert d.in_use == 20 and d.rate_per_s == pytest.approx(5.0)
    assert d.seconds_to_exhaustion == pytest.approx((100 - 20) / 5.0)
    assert res.findings[0].id == "destination-forecast-exhaustion"


def test_loopback_reuse_changes_the_hold_time():
    # tcp_tw_reuse=2 (the default): loopback TIME_WAIT ports can be taken over after 1 s
    f = facts(40000, 40099, reuse=2)
    samples, _ = tables_with_rate(5, 4, 1)
    d = forecast(f, samples).worst                  # 10.0.0.x: not loopback, no reuse
    assert d.sustainable_rate_per_s == pytest.approx(100 / 60)
    samples_lo = []
    for t, tab in samples:
        n = len(tab)
        lo = T().connect(range(40000, 40000 + n), state=TW, src="127.0.0.1", dst="127.0.0.1")
        samples_lo.append((t, lo.t))
    d = forecast(f, samples_lo).worst
    assert d.sustainable_rate_per_s == pytest.approx(100 / 1.0)
    assert d.seconds_to_exhaustion is None
    assert d.steady_state_time_wait == 300          # the table still shows 60 s of TIME_WAIT


def test_needs_two_samples():
    with pytest.raises(ValueError):
        forecast(facts(), [(0.0, T().t)])


def test_sample_spacing_with_fake_clock():
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(round(s, 6))
        now[0] += s

    def take():
        now[0] += 0.25             # each snapshot takes 0.25 s
        return len(slept)

    out = sample(take, 2.0, 3, sleep=sleep, clock=lambda: now[0])
    assert [round(t, 3) for t, _ in out] == [0.125, 2.125, 4.125]
    assert slept == [1.75, 1.75]


def ss_count(ns, *filt):
    return len(ns.ss("-tan", *filt))


def test_forecast_kernel_heading_for_exhaustion(netns, driver):
    netns.sysctl("net.ipv4.ip_local_port_range", "40000 40099")
    netns.sysctl("net.ipv4.tcp_tw_reuse", "0")
    drive = driver
    drive(op="listen", port=5001, serve=True)
    drive(op="rate", dst="127.0.0.1", dport=5001, rate=10, seconds=3)
    f = host_facts(netns.name)
    take = lambda: snapshot(protos=("tcp",), sport=f.ephemeral, netns=netns.name, facts=f)
    time.sleep(0.3)
    res = forecast(f, sample(take, 1.0, 3), interval=1.0)
    d = res.destination("127.0.0.1", 5001)
    assert d.rate_per_s == pytest.approx(10, rel=0.2)
    assert d.sustainable_rate_per_s == pytest.approx(100 / 60, rel=0.05)
    assert d.seconds_to_exhaustion is not None and 0 < d.seconds_to_exhaustion < 10
    assert res.findings[0].id == "destination-forecast-exhaustion"


@pytest.mark.slow
def test_forecast_rate_and_time_wait_plateau(netns, driver):
    """A steady 20/s for ~80 s: the rate within 10%, and the TIME_WAIT plateau predicted
    from the first 10 s within 10% of what ss shows 60 s later."""
    rate, load_s = 20, 82
    netns.sysctl("net.ipv4.tcp_tw_reuse", "0")     # loopback reuse (2) would cap the plateau
    drive = driver
    drive(op="listen", port=5001, serve=True)
    drive(op="rate", dst="127.0.0.1", dport=5001, rate=rate, seconds=load_s)
    f = host_facts(netns.name)
    take = lambda: snapshot(protos=("tcp",), sport=f.ephemeral, netns=netns.name, facts=f)
    time.sleep(1.0)
    res = forecast(f, sample(take, 2.0, 6), interval=2.0)
    end = time.monotonic()
    d = res.destination("127.0.0.1", 5001)
    assert d.rate_per_s == pytest.approx(rate, rel=0.10)
    assert d.steady_state_time_wait == pytest.approx(rate * 60, rel=0.10)
    assert d.seconds_to_exhaustion is None
    time.sleep(max(0.0, end + 60 - time.monotonic()))
    shown = ss_count(netns, "state", "time-wait", "dst", "127.0.0.1:5001")
    assert shown == pytest.approx(d.steady_state_time_wait, rel=0.10)


def five_tuples(ck):
    """A client_keys() result as the 5-tuples (proto, laddr, lport, raddr, rport) it holds."""
    from portscope.forecast import dest_key, local_port
    return {(p, la, local_port(k), ra, rp) for k in ck.keys for p, la, ra, rp in (dest_key(k, ck.pairs),)}


def test_precomputed_keys_and_analysis_give_the_same_forecast():
    """The exporter's web view keeps only the previous read's client keys and passes the
    analysis it already has: the forecast is the one computed from the two tables."""
    from portscope.forecast import client_keys
    from portscope.pressure import analyze
    from portscope.web.data import Reading, step
    f = facts(40000, 40099, reuse=0)
    (t0, first), *_, (t1, last) = tables_with_rate(5, 4, 1)[0]
    want = forecast(f, [(t0, first), (t1, last)], top=3, interval=t1 - t0).to_json()
    got = forecast(f, [(t0, None), (t1, last)], top=3, interval=t1 - t0, base=analyze(f, last),
                   keys=[client_keys(f, first), None])
    assert got.to_json() == want
    res, kept = step(Reading(t0, 0.0, f, first, analyze(f, first)), None, 3)
    assert res.forecast is None and kept is not None and five_tuples(kept[1]) == five_tuples(client_keys(f, first))
    res, _ = step(Reading(t1, 0.0, f, last, analyze(f, last)), kept, 3)
    assert res.to_json() == want and res.findings[0].id == "destination-forecast-exhaustion"
    with pytest.raises(ValueError):
        forecast(f, [(t0, None), (t1, last)])


def test_client_keys_are_one_per_client_socket_and_name_its_destination():
    """client_keys() packs lport, rport, proto and the (laddr, raddr) pair's number into one
    integer: every client socket analyze() counts gives one key, and dest_key() and
    local_port() read back its 5-tuple, across families, protocols and the extreme port
    numbers."""
    from itertools import compress

    from portscope.forecast import client_keys
    from portscope.pressure import row_masks
    from portscope.sockets.table import SocketTable
    f = facts(1024, 65535, reuse=0)
    t = SocketTable(backend="netlink")
    v4a, v4b = bytes([192, 0, 2, 1]), bytes([198, 51, 100, 7])
    v6a, v6b = bytes.fromhex("20010db8" + "0" * 23 + "1"), bytes.fromhex("20010db8" + "0" * 23 + "2")
    rows = [(6, 4, 1, v4a, 1024, v4b, 1), (6, 4, 6, v4a, 65535, v4b, 65535), (6, 4, 1, v4a, 40000, v4b, 443),
            (6, 4, 1, v4a, 40000, v4b, 444), (17, 4, 1, v4a, 40000, v4b, 443), (6, 6, 1, v6a, 50000, v6b, 53),
            (17, 6, 7, v6a, 50001, v6b, 65534), (136, 4, 1, v4a, 50002, v4b, 255)]
    for proto, fam, state, la, lp, ra, rp in rows:
        t.append(proto, fam, state, la, lp, ra, rp)
    m = row_masks(f, t)
    want = set(compress(zip(t.proto, t.local_addr, t.local_port, t.remote_addr, t.remote_port), m.client))
    keys = client_keys(f, t)
    assert len(keys.keys) == len(want) >= 6
    assert five_tuples(keys) == want
    assert client_keys(f, t, m).keys == keys.keys
