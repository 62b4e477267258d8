"""The forecast's integer client keys against the set-of-5-tuples semantics they replaced,
on random socket tables (hypothesis).

Before, a read's client sockets were a set of (laddr, raddr, lport, rport, proto) tuples and
the rate of a destination was how many of the later read's tuples the earlier one lacked.
Now each is one integer (ports, proto and a number for the (laddr, raddr) pair, shared by
the reads compared). These tests hold the new keys, the diff, the renumbering and
compaction, and the forecast built on them, to that old definition; and the cached
loopback test to the uncached one it replaced.
"""
from __future__ import annotations

import socket
from collections import Counter
from ipaddress import ip_address
from itertools import compress

from hypothesis import given, settings
from hypothesis import strategies as st

from portscope.forecast import (
    PairIds,
    _reuse_applies,
    client_keys,
    compacted,
    dest_key,
    forecast,
    local_port,
    renumbered,
)
from portscope.pressure import analyze, row_masks, truncate
from portscope.sockets.table import AUTO_NO, AUTO_UNKNOWN, AUTO_YES, SocketTable
from test_pressure_model import facts

ADDRS4 = [socket.inet_pton(socket.AF_INET, a) for a in ("192.0.2.1", "192.0.2.2", "198.51.100.7", "127.0.0.1")]
ADDRS6 = [socket.inet_pton(socket.AF_INET6, a) for a in ("2001:db8::1", "2001:db8::2", "::1", "::ffff:127.0.0.1")]
# ports in and out of the range 40000-40019, the range's ends, 0 and 65535
LPORTS = [0, 1023, 39999, 40000, 40001, 40007, 40018, 40019, 40020, 65535]
RPORTS = [0, 53, 80, 443, 40005, 65535]

row = st.tuples(
    st.sampled_from([6, 17, 136]),                       # TCP, UDP, UDP-Lite
    st.sampled_from([1, 2, 6, 7, 8, 10, 13]),            # EST, SYN_SENT, TIME_WAIT, CLOSE, CLOSE_WAIT, LISTEN, BOUND_INACTIVE
    st.booleans(),                                       # IPv6
    st.integers(0, 3), st.sampled_from(LPORTS),          # laddr, lport
    st.integers(0, 3), st.sampled_from(RPORTS),          # raddr, rport
    st.sampled_from([AUTO_NO, AUTO_YES, AUTO_UNKNOWN]),
)


def table(rows, one_src: bool = False, one_dst: bool = False) -> SocketTable:
    """The rows as a table; one_src / one_dst: every row from / to the first address."""
    t = SocketTable(backend="netlink")
    for proto, state, v6, la, lp, ra, rp, auto in rows:
        la, ra = (0 if one_src else la), (0 if one_dst else ra)
        pool = ADDRS6 if v6 else ADDRS4
        t.append(proto, 6 if v6 else 4, state, pool[la], lp, pool[ra], rp, 0, 0, auto)
    return t


def old_tuples(f, t: SocketTable) -> set:
    """The old client_tuples(): one tuple per client socket analyze() counts."""
    m = row_masks(f, t)
    return set(compress(zip(t.proto, t.local_addr, t.local_port, t.remote_addr, t.remote_port), m.client))


def old_new_per_destination(f, a: SocketTable, b: SocketTable) -> Counter:
    """The old diff: new 5-tuples of b, per (proto, laddr, raddr, rport)."""
    return Counter((p, la, ra, rp) for p, la, lp, ra, rp in old_tuples(f, b) - old_tuples(f, a))


def as_tuples(ck) -> set:
    return {(p, la, local_port(k), ra, rp) for k in ck.keys for p, la, ra, rp in (dest_key(k, ck.pairs),)}


def new_per_destination(a, b) -> Counter:
    return Counter(dest_key(k, b.pairs) for k in b.keys - a.keys)


two_tables = st.tuples(st.lists(row, max_size=40), st.lists(row, max_size=40), st.lists(row, max_size=40))
one_address = st.sampled_from([(False, False), (True, False), (False, True), (True, True)])


@settings(max_examples=400, deadline=None)
@given(two_tables, one_address)
def test_keys_and_their_diff_match_the_tuple_sets(parts, one):
    """Shared, kept apart (renumbered) or compacted, with or without the analysis as a hint
    (whole or truncated; tables with one local and/or one remote address take its short
    cuts), the keys hold exactly the old tuples, and b's keys missing from a's give the old
    per-destination counts of new connections."""
    common, only_a, only_b = parts
    f = facts(40000, 40019)
    a, b = table(common + only_a, *one), table(only_b + common, *one)   # rows in another order too
    ka = client_keys(f, a)
    assert as_tuples(ka) == old_tuples(f, a) and len(ka.keys) == len(old_tuples(f, a))
    want = old_new_per_destination(f, a, b)
    kb = client_keys(f, b, pairs=ka.pairs)                      # the web view: b numbers as a does
    assert as_tuples(kb) == old_tuples(f, b)
    assert new_per_destination(ka, kb) == want
    apart = client_keys(f, b)                                   # numbered on its own: renumber a
    assert new_per_destination(renumbered(ka, apart.pairs), apart) == want
    small = compacted(ka, slack=0)                              # only the pairs a's keys use
    assert as_tuples(small) == as_tuples(ka)
    assert len(small.pairs.pairs) <= len(ka.pairs.pairs)
    assert new_per_destination(small, client_keys(f, b, pairs=small.pairs)) == want
    for res in (analyze(f, b), analyze(f, b, top=1)):
        hinted = client_keys(f, b, pairs=ka.pairs, result=res)
        assert as_tuples(hinted) == old_tuples(f, b)
        assert new_per_destination(ka, hinted) == want


@settings(max_examples=200, deadline=None)
@given(two_tables, st.sampled_from([None, 0, 1, 3, 100]), st.sampled_from([0, 1, 2]), one_address)
def test_forecast_rates_and_top_match_the_old_definition(parts, top, reuse, one):
    """Each destination's rate is the old count of new 5-tuples over the elapsed time; the
    forecast with `top` is the full forecast truncated (the destinations beyond top are no
    longer given forecast fields, only summed); keys and analysis passed in give the same."""
    common, only_a, only_b = parts
    f = facts(40000, 40019, reuse=reuse)
    a, b = table(common + only_a, *one), table(only_b + common, *one)
    full = forecast(f, [(0.0, a), (2.0, b)], interval=2.0)
    want = old_new_per_destination(f, a, b)
    for d in full.destinations:
        key = (d.key[0], ip_address(d.src).packed, ip_address(d.dst).packed, d.dport)
        key = ({"tcp": 6, "udp": 17, "udplite": 136}[d.proto],) + key[1:]
        assert d.rate_per_s == want.get(key, 0) / 2.0
    assert full.forecast["new_connections"] == sum(want.values())
    got = forecast(f, [(0.0, a), (2.0, b)], top=top, interval=2.0)
    assert got.to_json() == truncate(full, top).to_json()
    ka = client_keys(f, a)
    kept = forecast(f, [(0.0, None), (2.0, b)], top=top, interval=2.0, base=analyze(f, b), keys=[ka, None])
    assert kept.to_json() == got.to_json()
    from portscope.web.data import Reading, step         # the web view's path: hinted keys
    _, prev = step(Reading(0.0, 0.0, f, a, analyze(f, a)), None, top)
    res, _ = step(Reading(2.0, 0.0, f, b, analyze(f, b)), prev, top)
    assert res.to_json() == {**got.to_json(), "forecast": {**got.to_json()["forecast"], "interval_s": 2.0}}


def old_reuse_applies(tw_reuse, src, dst):
    """_reuse_applies() before the loopback test was cached per address."""
    def mapped(a):
        m = getattr(ip_address(a), "ipv4_mapped", None)
        return bool(m and m.is_loopback)
    if tw_reuse == 1:
        return True
    if tw_reuse == 2:
        try:
            return ip_address(src).is_loopback or ip_address(dst).is_loopback or mapped(src) or mapped(dst)
        except ValueError:
            return False
    return False


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([None, 0, 1, 2]),
       *[st.sampled_from(["127.0.0.1", "192.0.2.1", "::1", "2001:db8::1", "::ffff:127.0.0.5",
                          "::ffff:192.0.2.1", "not-an-ip", ""])] * 2)
def test_cached_loopback_test_answers_as_before(reuse, src, dst):
    assert _reuse_applies(reuse, src, dst) == old_reuse_applies(reuse, src, dst)


def test_pair_numbers_are_kept_and_the_overflow_starts_afresh(monkeypatch):
    """A pair keeps its number from read to read; past MAX_PAIRS the numbering starts again,
    and a forecast across the two numberings still counts only the really new sockets."""
    import portscope.forecast as fc
    f = facts(40000, 40019)
    rows_a = [(6, 1, False, 0, 40001, 1, 80, AUTO_YES), (6, 1, False, 0, 40002, 2, 80, AUTO_YES)]
    rows_b = rows_a + [(6, 1, False, 0, 40003, 3, 80, AUTO_YES)]
    pairs = PairIds()
    ka = client_keys(f, table(rows_a), pairs=pairs)
    before = dict(pairs)
    kb = client_keys(f, table(rows_b), pairs=pairs)
    assert kb.pairs is pairs and all(pairs[p] == n for p, n in before.items()) and len(pairs) == 3
    # a pair never seen: 4 pairs numbered, more than 3; the table alone has 3
    rows_c = [rows_a[0], rows_b[2], (6, 1, False, 1, 40004, 0, 80, AUTO_YES)]
    monkeypatch.setattr(fc, "MAX_PAIRS", 3)
    kc = client_keys(f, table(rows_c), pairs=pairs)
    assert kc.pairs is not pairs and len(kc.pairs) == 3 and as_tuples(kc) == old_tuples(f, table(rows_c))
    monkeypatch.setattr(fc, "MAX_PAIRS", 1 << 24)
    res = forecast(f, [(0.0, None), (1.0, table(rows_c))], base=analyze(f, table(rows_c)), keys=[ka, kc])
    assert res.forecast["new_connections"] == 2 == sum(old_new_per_destination(f, table(rows_a), table(rows_c)).values())
