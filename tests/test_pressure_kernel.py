"""analyze() against the real kernel, in private namespaces with tiny ranges.

A driver process inside the namespace opens sockets on command (connect, bind-before-connect,
IP_BIND_ADDRESS_NO_PORT, UDP) until the kernel refuses; we compare the count with what
analyze() predicted beforehand and with what it reports afterwards.
"""
from __future__ import annotations

import pytest

from portscope.host import facts as host_facts
from portscope.pressure import analyze
from portscope.sockets import snapshot

from conftest import DESTS, Driver, analyze_ns

LOW, HIGH = 40000, 40019          # 20 ports: connect() loops stay tiny


@pytest.fixture
def small(netns, driver):
    """A namespace with range 40000-40019, tcp_tw_reuse 0, and a driver inside."""
    netns.sysctl("net.ipv4.ip_local_port_range", f"{LOW} {HIGH}")
    netns.sysctl("net.ipv4.tcp_tw_reuse", "0")
    return netns, driver


def test_connect_two_destinations_exhaust_independently(small):
    ns, drive = small
    for p in (5001, 5002):
        drive(op="listen", port=p)
    before = analyze_ns(ns)
    predicted = before.new_destination_capacity("tcp")
    assert predicted == 20
    out = drive(op="open", dests=DESTS, until="all")
    assert out["error"] == "EADDRNOTAVAIL"
    assert out["opened"] == [predicted, predicted]
    res = analyze_ns(ns)
    for _, port in DESTS:
        d = res.destination("127.0.0.1", port)
        assert (d.in_use, d.capacity, d.utilization) == (20, 20, 1.0)
    assert res.global_.tcp_exclusive == 0 and res.global_.bind_held == 0
    assert {"destination-critical"} <= {f.id for f in res.findings}


def test_reserved_and_listener_reduce_capacity_by_their_count(small):
    ns, drive = small
    ns.sysctl("net.ipv4.ip_local_reserved_ports", "40002-40004")      # 3 inside
    drive(op="listen", port=5001)
    drive(op="listen", port=40010)                                      # 1 listener inside
    before = analyze_ns(ns)
    assert before.global_.reserved_in_range == 3 and before.listener_ports == (40010,)
    predicted = before.new_destination_capacity("tcp")
    assert predicted == 20 - 3 - 1
    out = drive(op="open", dests=DESTS[:1])
    assert (out["opened"], out["error"]) == ([predicted], "EADDRNOTAVAIL")
    d = analyze_ns(ns).destination("127.0.0.1", 5001)
    assert (d.in_use, d.capacity, d.utilization) == (predicted, predicted, 1.0)


def test_bind_before_connect_exhausts_the_global_pool(small):
    ns, drive = small
    for p in (5001, 5002):
        drive(op="listen", port=p)
    out = drive(op="open", dests=DESTS, mode="bind")
    assert out["error"] == "EADDRINUSE"
    assert sum(out["opened"]) == analyze_ns(ns).global_.capacity == 20
    res = analyze_ns(ns)
    g = res.global_
    assert (g.in_use, g.tcp_exclusive, g.bind_held) == (20, 20, 20)
    for _, port in DESTS:
        assert res.destination("127.0.0.1", port).utilization == 1.0
    assert {"bind-before-connect", "pool-critical"} <= {f.id for f in res.findings}


def test_bind_address_no_port_is_per_destination_again(small):
    ns, drive = small
    for p in (5001, 5002):
        drive(op="listen", port=p)
    out = drive(op="open", dests=DESTS, mode="nobind", until="all")
    assert out["opened"] == [20, 20] and out["error"] == "EADDRNOTAVAIL"
    res = analyze_ns(ns)
    assert res.global_.bind_held == 0
    assert [res.destination("127.0.0.1", p).utilization for _, p in DESTS] == [1.0, 1.0]


def test_partial_bind_before_connect_is_seen_and_blocks_connect(small):
    ns, drive = small
    for p in (5001, 5002):
        drive(op="listen", port=p)
    assert drive(op="open", dests=DESTS[1:], mode="bind", n=4)["opened"] == [4]
    res = analyze_ns(ns)
    assert res.global_.bind_held == 4 and res.global_.bind_inferred == 4
    predicted = res.new_destination_capacity("tcp")
    assert predicted == 16
    out = drive(op="open", dests=DESTS[:1])
    assert out["opened"] == [predicted]


def test_udp_exhausts_globally_at_predicted_count(small):
    ns, drive = small
    drive(op="listen", port=5001)
    assert drive(op="open", dests=DESTS[:1], n=3)["opened"] == [3]     # TCP does not count for UDP
    predicted = analyze_ns(ns).new_destination_capacity("udp")
    assert predicted == 20
    out = drive(op="open", dests=[["127.0.0.1", 0]], mode="udp")
    assert (out["opened"], out["error"]) == ([predicted], "EADDRINUSE")
    res = analyze_ns(ns)
    assert res.global_.udp == res.global_.udp_exclusive == 20
    assert res.new_destination_capacity("udp") == 0
    # ... and TCP keeps its own table: the destination still has all 20 ports
    assert res.destination("127.0.0.1", 5001).capacity == 20
    assert "udp-pool" in {f.id for f in res.findings}


def test_mixed_workload_counts_exactly_the_bound_sockets(netns):
    """The docs demo, which once took connect()'s second pass for bind(0): 70 connect()s
    past the even half of a 100-port range (a listener on an even port), plus 4 bind(0)
    sockets toward another destination and 12 UDP sockets."""
    netns.sysctl("net.ipv4.ip_local_port_range", "40000 40099")
    drive = Driver(netns)
    try:
        for p in (5001, 5432, 40050):
            drive(op="listen", port=p)
        assert drive(op="open", dests=[["127.0.0.1", 5432]], n=70)["opened"] == [70]
        assert drive(op="open", dests=DESTS[:1], mode="bind", n=4)["opened"] == [4]
        assert drive(op="open", dests=[["127.0.0.1", 0]], mode="udp", n=12)["opened"] == [12]
        res = analyze_ns(netns)
        g = res.global_
        assert (g.bind_held, g.listeners, g.udp, g.tcp_exclusive) == (4, 1, 12, 5)
        d = res.destination("127.0.0.1", 5432)
        assert (d.in_use, d.bind_held, d.capacity) == (70, 0, 100 - 5)
        # the kernel agrees: exactly capacity - in_use more connect()s fit
        out = drive(op="open", dests=[["127.0.0.1", 5432]])
        assert (out["opened"], out["error"]) == ([25], "EADDRNOTAVAIL")
    finally:
        drive.close()


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_random_workload_predictions_match_the_kernel(netns, seed):
    """A seeded mix of reserved ports, listeners inside the range, UDP sockets, a program
    that binds before connecting, plain connect()s and TIME_WAIT. Then each destination is
    exhausted with connect(): the kernel must accept exactly capacity - in_use more, as
    analyze() said beforehand (plain connect()s to one destination do not take ports from
    another, so the order of the exhaustions does not matter)."""
    import random
    rnd = random.Random(seed)
    low, high = 40000, 40029
    netns.sysctl("net.ipv4.ip_local_port_range", f"{low} {high}")
    netns.sysctl("net.ipv4.tcp_tw_reuse", "0")
    ports = list(range(low, high + 1))
    rnd.shuffle(ports)
    reserved = sorted(ports[:rnd.randint(0, 3)])
    inside = ports[len(reserved):len(reserved) + rnd.randint(0, 2)]
    if reserved:
        netns.sysctl("net.ipv4.ip_local_reserved_ports", ",".join(map(str, reserved)))
    drive = Driver(netns)
    try:
        for p in [5001, 5002, 5003, 5009] + inside:
            drive(op="listen", port=p, serve=p == 5001)
        ops = ([("udp", 1)] * rnd.randint(0, 5) + [("bind", 5009)] * rnd.randint(0, 6)
               + [("connect", 5001)] * rnd.randint(0, 12) + [("connect", 5002)] * rnd.randint(0, 12)
               + [("churn", 5001)] * rnd.randint(0, 4))
        rnd.shuffle(ops)
        for kind, port in ops:
            if kind == "udp":
                out = drive(op="open", dests=[["127.0.0.1", 0]], mode="udp", n=1)
            elif kind == "churn":
                out = drive(op="churn", dests=[["127.0.0.1", port]], n=1)
            else:
                out = drive(op="open", dests=[["127.0.0.1", port]], mode=kind, n=1)
            assert out["opened"] == [1], (seed, kind, out)
        res = analyze_ns(netns)
        left = {}
        for port in (5001, 5002, 5009):
            d = res.destination("127.0.0.1", port)
            left[port] = (d.capacity - d.in_use) if d else res.new_destination_capacity("tcp")
        left[5003] = res.new_destination_capacity("tcp")
        udp_left = res.new_destination_capacity("udp")
        got = {}
        for port in (5001, 5002, 5009, 5003):
            out = drive(op="open", dests=[["127.0.0.1", port]])
            got[port] = out["opened"][0]
        got_udp = drive(op="open", dests=[["127.0.0.1", 0]], mode="udp")["opened"][0]
        assert (got, got_udp) == (left, udp_left), (seed, ops, reserved, inside)
    finally:
        drive.close()


def test_procfs_fallback_agrees_with_netlink(netns, monkeypatch):
    """Where sock_diag is refused, /proc/net gives the same answer for the same sockets
    (procfs has no AUTO bit: bind(0) is still found by parity; a port bound by number,
    which only the AUTO bit reveals, is the one difference, and it is checked)."""
    netns.sysctl("net.ipv4.ip_local_port_range", "40000 40029")
    drive = Driver(netns)
    try:
        for p in (5001, 5002, 40007):
            drive(op="listen", port=p)
        drive(op="open", dests=DESTS[:1], n=12)
        drive(op="open", dests=DESTS[1:], mode="bind", n=3)
        drive(op="open", dests=[["127.0.0.1", 0]], mode="udp", n=4)
        f = host_facts(netns.name)
        plain = analyze(f, snapshot(protos=("tcp", "udp"), netns=netns.name, facts=f, backend="procfs"))
        by = {b: analyze(f, snapshot(protos=("tcp", "udp"), netns=netns.name, facts=f, backend=b))
              for b in ("netlink", "procfs")}
        assert by["procfs"].backend == "procfs"
        assert by["netlink"].to_json()["global"] == by["procfs"].to_json()["global"]
        assert [d.to_json() for d in by["netlink"].destinations] == [d.to_json() for d in by["procfs"].destinations]
        # the CLI path falls back too when netlink is refused
        from portscope.pressure import read_sockets
        from portscope.sockets import netlink

        def refused(*a, **k):
            raise netlink.NetlinkRefused("test")
        monkeypatch.setattr(netlink, "read_table", refused)
        t = read_sockets(f, netns.name)
        assert t.backend == "procfs"
        assert analyze(f, t).global_ == by["netlink"].global_
        monkeypatch.undo()
        # bind(addr, P) + connect, P a free even (connect()-parity) port chosen by number
        used = set(snapshot(protos=("tcp",), netns=netns.name, facts=f).local_port)
        free = next(p for p in range(40000, 40030, 2) if p not in used)
        assert drive(op="open", dests=DESTS[1:], mode="bind", lport=free, n=1)["opened"] == [1]
        nl = analyze(f, snapshot(protos=("tcp", "udp"), netns=netns.name, facts=f, backend="netlink"))
        pf = analyze(f, snapshot(protos=("tcp", "udp"), netns=netns.name, facts=f, backend="procfs"))
        assert nl.global_.bind_held == plain.global_.bind_held + 1 == pf.global_.bind_held + 1
        d = nl.destination("127.0.0.1", 5001)
        assert d.capacity == pf.destination("127.0.0.1", 5001).capacity - 1
        # ... and netlink's number is the kernel's
        assert drive(op="open", dests=DESTS[:1])["opened"] == [d.capacity - d.in_use]
    finally:
        drive.close()


def test_bound_only_sockets_hold_their_ports(small):
    """bind() without connect()/listen() (BOUND_INACTIVE, e.g. kept after a failed connect):
    invisible to plain dumps, but they hold their ports for every destination."""
    ns, drive = small
    drive(op="listen", port=5001)
    assert drive(op="open", dests=DESTS[:1], mode="bindonly", n=3)["opened"] == [3]
    from portscope.pressure import read_sockets
    f = host_facts(ns.name)
    res = analyze(f, read_sockets(f, ns.name))
    assert (res.global_.bind_held, res.global_.tcp_exclusive) == (3, 3)
    predicted = res.new_destination_capacity("tcp")
    assert predicted == 17
    out = drive(op="open", dests=DESTS[:1])
    assert (out["opened"], out["error"]) == ([predicted], "EADDRNOTAVAIL")


def test_equal_parity_range_capacity_is_what_connect_can_count_on(netns):
    """Range 40000-40010 (11 ports, ends of equal parity): connect() scans a window of
    remaining & ~1 = 10 ports whose start moves with the perturbation table, so one
    destination gets 10 or 11 ports (measured 11,11,11,10,11,11). The capacity is the 10 it
    can count on; a destination that got 11 is at 100%, not 110%; UDP autobind scans every
    port and keeps all 11."""
    netns.sysctl("net.ipv4.ip_local_port_range", "40000 40010")
    drive = Driver(netns)
    dests = [["127.0.0.1", 5001 + i] for i in range(6)]
    try:
        for _, p in dests:
            drive(op="listen", port=p)
        before = analyze_ns(netns)
        assert before.global_.capacity == 11                       # ports of the pool
        predicted = before.new_destination_capacity("tcp")
        assert predicted == 10
        assert before.new_destination_capacity("udp") == 11
        opened = [drive(op="open", dests=dests[:1])["opened"][0]]
        # alone, exhausted by plain connect() (10 or 11): not taken for bind(0)
        first = analyze_ns(netns)
        assert first.global_.bind_held == 0 and first.destination("127.0.0.1", 5001).capacity == predicted
        opened += [drive(op="open", dests=[d])["opened"][0] for d in dests[1:]]
        assert all(predicted <= n <= predicted + 1 for n in opened), opened
        res = analyze_ns(netns)
        for (_, port), n in zip(dests, opened):
            d = res.destination("127.0.0.1", port)
            assert (d.in_use, d.capacity, d.utilization) == (n, predicted, 1.0)
        f = [f for f in res.findings if f.id == "range-same-parity"][0]
        assert "one port still free" in f.message and f.evidence["connect_window"] == 10
        assert all(0.0 <= d.to_json()["utilization"] <= 1.0 for d in res.destinations)
    finally:
        drive.close()


def test_equal_parity_range_with_both_ends_reserved_loses_nothing(netns):
    """A window leaves out LOW or HIGH only: with both reserved, every connect() reaches
    every usable port, so all 9 of 40001-40009 are certain, for each destination."""
    netns.sysctl("net.ipv4.ip_local_port_range", "40000 40010")
    netns.sysctl("net.ipv4.ip_local_reserved_ports", "40000,40010")
    drive = Driver(netns)
    dests = [["127.0.0.1", 5001 + i] for i in range(4)]
    try:
        for _, p in dests:
            drive(op="listen", port=p)
        before = analyze_ns(netns)
        assert before.new_destination_capacity("tcp") == 9 and before.connect_window_loss == 0
        opened = [drive(op="open", dests=[d])["opened"][0] for d in dests]
        assert opened == [9] * len(dests)
        res = analyze_ns(netns)
        for _, port in dests:
            d = res.destination("127.0.0.1", port)
            assert (d.in_use, d.capacity, d.utilization) == (9, 9, 1.0)
    finally:
        drive.close()


def test_equal_parity_range_bind_before_connect_pool(netns):
    """bind(0) scans the same kind of window (remaining & ~1 ports, leaving out LOW or HIGH): in
    40000-40010 it gets 10 or 11 ports. Whichever it was, at the refusal the TCP pool
    reads 100% and no new destination is promised a port."""
    netns.sysctl("net.ipv4.ip_local_port_range", "40000 40010")
    drive = Driver(netns)
    try:
        # two destinations, as above: one destination holding all 11 ports by bind(0) looks
        # exactly like connect()'s second pass (the documented limit of the inference)
        for _, p in DESTS:
            drive(op="listen", port=p)
        out = drive(op="open", dests=DESTS, mode="bind")
        n = sum(out["opened"])
        assert out["error"] == "EADDRINUSE" and n in (10, 11), out
        res = analyze_ns(netns)
        assert res.global_.tcp_exclusive == n and res.new_destination_capacity("tcp") == 0
        f = [f for f in res.findings if f.id == "pool-critical"][0]
        assert f.evidence["held"] == f.evidence["capacity"] == n
    finally:
        drive.close()
