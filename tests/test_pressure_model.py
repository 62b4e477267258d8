"""analyze() on hand-built socket tables: the capacity arithmetic, exactly.

The kernel tests (test_pressure_kernel.py) check the same model against real exhaustion;
these pin each rule in isolation, including the cases a namespace cannot easily stage.
"""
from __future__ import annotations

import socket

import pytest

from portscope.host import HostFacts
from portscope.ports import PortRange, PortSet
from portscope.pressure import analyze, usable_ports
from portscope.sockets.table import AUTO_NO, AUTO_UNKNOWN, AUTO_YES, SocketTable

TCP, UDP = 6, 17
EST, TW, LISTEN, CLOSE = 1, 6, 10, 7


def facts(low=40000, high=40019, reserved="", reuse=2, os="linux"):
    return HostFacts(os=os, ephemeral=PortRange(low, high), reserved=PortSet.parse(reserved),
                     unprivileged_port_start=1024, os_default=PortRange(32768, 60999), tcp_tw_reuse=reuse)


class T:
    """Builds a SocketTable row by row."""

    def __init__(self, backend="test"):
        self.t = SocketTable(backend=backend)

    def add(self, proto, state, lport, rport=0, dst="10.0.0.2", src="10.0.0.1", auto=AUTO_YES, pid=None):
        t = self.t
        fam = 6 if ":" in src else 4
        af = socket.AF_INET6 if fam == 6 else socket.AF_INET
        any_ = "::" if fam == 6 else "0.0.0.0"
        t.append(proto, fam, state, socket.inet_pton(af, src), lport,
                 socket.inet_pton(af, dst if rport else any_), rport, 0, 0, auto)
        t.ephemeral.append(0); t.method.append(0)
        if pid is not None:
            if t.pid is None:
                from array import array
                t.pid, t.command = array("i"), []
            t.pid.append(pid); t.command.append(f"cmd{pid}")
        return self

    def connect(self, ports, dport=80, dst="10.0.0.2", state=EST, **kw):
        for p in ports:
            self.add(TCP, state, p, dport, dst=dst, **kw)
        return self


def dest(res, dport, dst="10.0.0.2", proto="tcp"):
    [d] = [d for d in res.destinations if d.dport == dport and d.dst == dst and d.proto == proto]
    return d


def ids(res):
    return {f.id for f in res.findings}


def test_empty_table_full_capacity():
    res = analyze(facts(), SocketTable(backend="test"))
    assert res.global_.capacity == 20 and res.global_.in_use == 0 and res.destinations == ()
    assert res.to_json()["global"] == {**res.to_json()["global"], "in_use": 0, "capacity": 20, "utilization": 0.0}


def test_default_range_capacity_and_sustainable_rate():
    f = facts(32768, 60999)
    res = analyze(f, SocketTable(backend="test"))
    assert res.global_.capacity == 28232          # inclusive: not 28231
    assert round(res.global_.capacity / res.time_wait_seconds) == 471


def test_reserved_only_inside_range_count():
    f = facts(reserved="1000-1010,40002-40004,40019,50000")
    assert analyze(f, SocketTable(backend="test")).global_.capacity == 20 - 3 - 1
    flags = usable_ports(f.ephemeral, f.reserved)
    assert flags[40001] and not flags[40002] and not flags[40019] and not flags[1005]


def test_same_parity_range_keeps_high():
    # verified on 6.18: HIGH is handed out too, so the pool has 21 ports...
    assert analyze(facts(40000, 40020), SocketTable(backend="test")).global_.capacity == 21


def test_equal_parity_range_connect_counts_on_one_port_less():
    # ...but each connect() scans only remaining & ~1 = 20 of them (one LOW-parity port
    # left out, a different one from call to call): a destination can count on 20
    res = analyze(facts(40000, 40020), T().connect(range(40000, 40021)).t)
    assert res.global_.capacity == 21 and res.new_destination_capacity("tcp") == 20
    assert res.new_destination_capacity("udp") == 21           # UDP autobind scans every port
    d = dest(res, 80)                                          # the kernel may hand out all 21
    assert (d.in_use, d.capacity, d.utilization, d.to_json()["utilization"]) == (21, 20, 1.0, 1.0)
    assert res.global_.bind_held == 0
    f = [f for f in res.findings if f.id == "range-same-parity"][0]
    assert f.evidence == {"low": 40000, "high": 40020, "connect_window": 20, "usable": 21, "connect_ports": 20}
    # different parity: every port is in the window
    assert analyze(facts(40000, 40019), SocketTable(backend="test")).new_destination_capacity() == 20


def test_equal_parity_loss_only_when_a_low_parity_port_is_free():
    # every LOW-parity (even) port reserved: the port the window skips is never usable anyway
    evens = ",".join(str(p) for p in range(40000, 40011, 2))
    res = analyze(facts(40000, 40010, reserved=evens), SocketTable(backend="test"))
    assert res.global_.capacity == 5 and res.new_destination_capacity("tcp") == 5
    # the same with the evens held by listeners: still no loss
    t = T()
    for p in range(40000, 40011, 2):
        t.add(TCP, LISTEN, p, auto=AUTO_NO)
    assert analyze(facts(40000, 40010), t.t).new_destination_capacity("tcp") == 5
    # other OSes have no such window
    mac = HostFacts(os="darwin", ephemeral=PortRange(49152, 49162), reserved=PortSet(),
                    unprivileged_port_start=1024, os_default=PortRange(49152, 65535))
    assert analyze(mac, SocketTable(backend="test")).new_destination_capacity() == 11


def test_per_destination_capacity_and_sharing():
    t = T().connect([40000, 40002, 40004], dport=80).connect([40000, 40002], dport=443)
    t.connect([40006], dport=80, state=TW)
    res = analyze(facts(), t.t)
    d80, d443 = dest(res, 80), dest(res, 443)
    assert (d80.in_use, d80.time_wait, d80.capacity) == (4, 1, 20)
    assert (d443.in_use, d443.capacity) == (2, 20)
    assert d80.utilization == pytest.approx(0.2)
    # shared ports count once globally
    assert res.global_.in_use == 4 and res.global_.connect == 6 and res.global_.time_wait == 1
    assert res.destinations[0] is d80          # worst first


def test_listener_and_accepted_sockets():
    t = T().add(TCP, LISTEN, 40010, auto=AUTO_NO)
    t.add(TCP, EST, 40010, 55555, dst="10.0.0.9", auto=AUTO_NO)   # accepted: server side
    t.connect([40000, 40002])
    res = analyze(facts(), t.t)
    assert res.listener_ports == (40010,)
    assert [d.dport for d in res.destinations] == [80]
    assert dest(res, 80).capacity == 19
    assert "listener-in-range" in ids(res)


def test_listener_known_only_from_listen_ports_column():
    t = T().add(TCP, EST, 40010, 55555, dst="10.0.0.9", auto=AUTO_UNKNOWN)
    t.t.listen_ports = {(6, 40010)}
    res = analyze(facts(), t.t)
    assert res.destinations == ()


def test_explicit_bind_holds_port_for_everyone():
    t = T().connect([40001], dport=443, auto=AUTO_NO).connect([40000, 40002])
    res = analyze(facts(), t.t)
    assert dest(res, 80).capacity == 19                  # blocked by the bound port
    d443 = dest(res, 443)
    assert (d443.in_use, d443.bind_held, d443.capacity) == (1, 1, 20)
    assert res.global_.bind_held == 1 and res.global_.bind_inferred == 0


def test_bound_only_socket_is_held():
    res = analyze(facts(), T().add(TCP, 13, 40005, auto=AUTO_NO).connect([40000]).t)
    assert dest(res, 80).capacity == 19 and res.global_.bind_held == 1


def test_bind0_inferred_from_parity():
    # connect() fills LOW's (even) parity first; a lone odd port while evens are free = bind(0)
    t = T().connect([40000, 40002]).connect([40001, 40003], dport=443)
    res = analyze(facts(), t.t)
    assert res.global_.bind_inferred == 2
    assert dest(res, 80).capacity == 18
    assert dest(res, 443).capacity == 20 and dest(res, 443).bind_held == 2
    assert "bind-before-connect" in ids(res)


def test_odd_ports_after_evens_exhausted_are_connect():
    # one destination past half of the range: its odd ports are connect()'s second pass
    evens, odds = list(range(40000, 40020, 2)), [40001, 40003, 40005]
    res = analyze(facts(), T().connect(evens + odds).t)
    assert res.global_.bind_held == 0 and dest(res, 80).capacity == 20
    assert dest(res, 80).in_use == 13


def test_second_pass_with_listener_on_low_parity_port_is_connect():
    # found live: 70 connect()s in a 100-port range with a listener on an even port: 49 even
    # ports, then 21 odd ones from connect()'s second pass; none of them is bind-held
    f = facts(40000, 40099)
    t = T().add(TCP, LISTEN, 40050, auto=AUTO_NO)
    evens = [p for p in range(40000, 40100, 2) if p != 40050]
    t.connect(evens + list(range(40001, 40043, 2)), dport=5432)
    res = analyze(f, t.t)
    assert res.global_.bind_held == 0 and "bind-before-connect" not in ids(res)
    d = dest(res, 5432)
    assert (d.in_use, d.capacity, d.bind_held) == (70, 99, 0)


def test_second_pass_after_some_evens_closed_is_connect():
    f = facts(40000, 40099)
    evens = list(range(40000, 40100, 2))[:40]            # 10 of the 50 evens closed since
    res = analyze(f, T().connect(evens + list(range(40001, 40021, 2))).t)
    assert res.global_.bind_held == 0


def test_shared_odd_port_is_connect():
    # the same odd port toward two destinations can only come from connect()
    t = T().connect([40001]).connect([40001], dport=443)
    assert analyze(facts(), t.t).global_.bind_held == 0


def test_bind0_saturation_spills_into_even_ports():
    # bind(0)+connect alternating between two destinations until the range is gone:
    # odd ports first (bind(0)'s half), then the even ones
    t = T()
    for i, p in enumerate(list(range(40001, 40020, 2)) + list(range(40000, 40020, 2))):
        t.connect([p], dport=80 if i % 2 == 0 else 443)
    res = analyze(facts(), t.t)
    g = res.global_
    assert (g.in_use, g.tcp_exclusive, g.bind_held, g.connect) == (20, 20, 20, 0)
    for dp in (80, 443):
        d = dest(res, dp)
        assert (d.in_use, d.capacity, d.utilization) == (10, 10, 1.0)
    assert "pool-critical" in ids(res) and "bind-before-connect" in ids(res)


def test_bind0_saturation_limit_even_only_destination():
    # documented limit: a destination that only ever got even ports looks like connect()
    t = T().connect(range(40001, 40020, 2), dport=80).connect(range(40000, 40010, 2), dport=80)
    t.connect(range(40010, 40020, 2), dport=443)
    res = analyze(facts(), t.t)
    assert res.global_.tcp_exclusive == 15
    assert dest(res, 80).capacity == 20 and dest(res, 443).capacity == 5
    assert dest(res, 443).utilization == 1.0


def test_udp_is_its_own_pool():
    t = T()
    for p in range(40000, 40010):
        t.add(UDP, CLOSE, p)                      # unconnected
    t.add(UDP, EST, 40011, 53, dst="10.0.0.53")   # connected
    t.connect([40000, 40002])                      # TCP may use the same numbers
    res = analyze(facts(), t.t)
    assert dest(res, 80).capacity == 20            # UDP does not reduce TCP capacity
    dns = dest(res, 53, dst="10.0.0.53", proto="udp")
    assert (dns.in_use, dns.capacity) == (1, 20 - 11 + 1)
    g = res.global_
    assert (g.udp, g.udp_exclusive, g.tcp_exclusive, g.in_use) == (11, 11, 0, 11)
    assert "udp-pool" in ids(res)


def test_ports_outside_range_ignored():
    t = T().connect([30000, 61000]).add(TCP, LISTEN, 80, auto=AUTO_NO).add(UDP, CLOSE, 53)
    res = analyze(facts(), t.t)
    assert res.global_.in_use == 0 and res.destinations == () and res.findings == tuple(
        f for f in res.findings if f.id == "range-small")


def test_ipv6_and_v4_share_port_numbers_but_not_destinations():
    t = T().connect([40000]).add(TCP, EST, 40000, 80, src="fd00::1", dst="fd00::2")
    res = analyze(facts(), t.t)
    assert res.destinations_total == 2 and res.global_.in_use == 1
    assert {d.dst for d in res.destinations} == {"10.0.0.2", "fd00::2"}


def test_top_n_sums_the_rest():
    t = T()
    for i in range(5):
        t.connect(range(40000, 40000 + 2 * (i + 1), 2), dport=1000 + i)
    res = analyze(facts(), t.t, top=2)
    assert [d.dport for d in res.destinations] == [1004, 1003]
    assert res.destinations_total == 5
    assert res.others == {"destinations": 3, "in_use": 3 + 2 + 1}


def test_json_contract_keys():
    res = analyze(facts(), T().connect([40000]).t)
    j = res.to_json()
    assert {"in_use", "capacity", "utilization"} <= set(j["global"])
    assert {"proto", "src", "dst", "dport", "in_use", "time_wait", "capacity", "utilization"} <= set(j["destinations"][0])
    for f in j["findings"]:
        assert {"id", "severity", "message", "remedy"} <= set(f)
        assert f["severity"] in ("critical", "warning", "info")
    assert "rate_per_s" not in j["destinations"][0]     # only with --interval
    assert 0.0 <= j["global"]["utilization"] <= 1.0


def test_process_attribution():
    t = T()
    t.connect(range(40000, 40016, 2), pid=100)
    t.connect([40016], pid=200)
    t.connect([40018], pid=-1, state=TW)                  # TIME_WAIT has no owner
    res = analyze(facts(), t.t, process=True)
    assert [(p.pid, p.command, p.in_use) for p in res.processes] == [(100, "cmd100", 8), (200, "cmd200", 1), (None, None, 1)]
    assert "process-dominant" in ids(res)
    f = [f for f in res.findings if f.id == "process-dominant"][0]
    assert f.evidence["ports"] == 8 and "holding 8 of the 20 usable ports (40.0%)" in f.message


def test_process_dominant_share_of_ports_never_exceeds_the_pool():
    # 30 sockets of one process to 3 destinations sharing 10 ports of a 20-port range
    t = T()
    for dport in (80, 443, 8080):
        t.connect(range(40000, 40020, 2), dport=dport, pid=100)
    res = analyze(facts(), t.t, process=True)
    f = [f for f in res.findings if f.id == "process-dominant"][0]
    assert (f.evidence["in_use"], f.evidence["ports"]) == (30, 10)
    assert "owns 30 of 30 client sockets (100.0%), holding 10 of the 20 usable ports (50.0%)" in f.message
    assert "process-dominant" not in ids(analyze(facts(), t.t, process=False))


def test_other_platforms_get_their_own_commands():
    mac = HostFacts(os="darwin", ephemeral=PortRange(49152, 65535), reserved=PortSet(),
                    unprivileged_port_start=1024, os_default=PortRange(49152, 65535))
    t = T().add(TCP, LISTEN, 50000, auto=AUTO_UNKNOWN).connect([49152, 49154], auto=AUTO_UNKNOWN)
    res = analyze(mac, t.t)
    assert res.time_wait_seconds == 30 and dest(res, 80).capacity == 16384 - 1
    f = [f for f in res.findings if f.id == "listener-in-range"][0]
    assert "sysctl" not in f.remedy and "50000" in f.remedy
    win = HostFacts(os="windows", ephemeral=PortRange(49152, 65535), reserved=PortSet.parse("50000-50059"),
                    unprivileged_port_start=0, os_default=PortRange(49152, 65535))
    res = analyze(win, T().connect(range(49152, 49152 + 16000, 2)).connect(range(49153, 49153 + 12000, 2)).t)
    d = dest(res, 80)
    # exclusions count as reserved: out of the pool, and sockets on them (60 here) are not
    # the allocator's doing, so they are not counted
    assert d.capacity == 16384 - 60 and d.in_use == 14000 - 60
    [f] = [f for f in res.findings if f.id == "destination-high"]
    assert "netsh int ipv4 set dynamic tcp start=" in f.remedy


def _ns_facts(netns, **kw):
    return facts(**kw).replace(netns=netns)


@pytest.mark.parametrize("netns,prefix", [("ns1", "ip netns exec ns1 "),
                                          ("pid:4242", "nsenter --net=/proc/4242/ns/net ")])
def test_remedies_target_the_namespace_they_describe(netns, prefix):
    # a listener in the range, a destination at 100%, TIME_WAIT dominating, one process
    t = T().add(TCP, LISTEN, 40010, auto=AUTO_NO, pid=7)
    t.connect(range(40000, 40006), pid=7)
    t.connect([40006, 40007, 40008, 40009, *range(40011, 40020)], state=TW, pid=7)
    res = analyze(_ns_facts(netns, reuse=0), t.t, process=True)
    assert {"listener-in-range", "range-small", "time-wait-dominant", "destination-critical",
            "process-dominant"} <= ids(res)
    for f in res.findings:
        for cmd in ("sysctl -w", "ss -tanp"):
            at = f.remedy.find(cmd)
            while at >= 0:
                assert f.remedy[:at].endswith(prefix), f.remedy
                at = f.remedy.find(cmd, at + 1)
        assert "--persist" not in f.remedy
        if "portscope " in f.remedy:
            assert f"portscope --netns {netns} " in f.remedy
    f = [f for f in res.findings if f.id == "listener-in-range"][0]
    assert f.remedy.startswith(prefix + 'sysctl -w net.ipv4.ip_local_reserved_ports="40010"')
    assert f"portscope --netns {netns} reserve add 40010;" in f.remedy
    assert "whatever creates the namespace" in f.remedy
    # on the host: plain commands, and --persist
    host = analyze(facts(reuse=0), t.t)
    f = [f for f in host.findings if f.id == "listener-in-range"][0]
    assert f.remedy.startswith("sysctl -w ") and "portscope reserve add 40010 --persist" in f.remedy


def test_udp_pool_is_a_warning_the_pool_findings_carry_the_critical():
    t = T()
    for p in range(40000, 40020):
        t.add(UDP, CLOSE, p)
    res = analyze(facts(), t.t)
    sev = {f.id: f.severity for f in res.findings}
    assert sev["udp-pool"] == "warning" and sev["pool-critical"] == "critical"


def test_range_small_rate_uses_usable_ports():
    res = analyze(facts(40000, 40099, reserved="40090-40094"), SocketTable(backend="test"))
    f = [f for f in res.findings if f.id == "range-small"][0]
    assert "at most 1.6 new connections/s per destination without TIME_WAIT reuse (95 usable ports / 60 s)" in f.message
    assert f.evidence == {"size": 100, "default_size": 28232, "usable": 95}


def _all_bound_but(free: int):
    t = T()
    for p in range(40000, 40021):
        if p != free:
            t.connect([p], dport=443, auto=AUTO_NO)
    return analyze(facts(40000, 40020), t.t)


def test_equal_parity_pool_counts_the_end_a_window_may_leave_out():
    # only LOW free: a call whose window is LOW+1..HIGH misses it, so nothing is certain
    res = _all_bound_but(40000)
    assert (res.global_.tcp_exclusive, res.tcp_pool_ports, res.new_destination_capacity()) == (20, 20, 0)
    f = [f for f in res.findings if f.id == "pool-critical"][0]
    assert f.evidence == {"proto": "tcp", "held": 20, "capacity": 20} and "(100.0%)" in f.message
    assert _all_bound_but(40020).new_destination_capacity() == 0          # HIGH alike
    # a free port between the ends, of either parity, is in every window
    for free in (40010, 40011):
        res = _all_bound_but(free)
        assert (res.tcp_pool_ports, res.new_destination_capacity()) == (21, 1), free


def test_equal_parity_both_ends_reserved_lose_nothing():
    res = analyze(facts(40000, 40010, reserved="40000,40010"), SocketTable(backend="test"))
    assert (res.global_.capacity, res.new_destination_capacity()) == (9, 9)
    f = [f for f in res.findings if f.id == "range-same-parity"][0]
    assert "both ends are reserved" in f.message


def test_equal_parity_connect_second_pass_one_short_is_connect():
    # one destination exhausted by connect() in 40000-40010 at 10 ports: the end its window
    # left out (40000) is free, so it has 5 of 6 even ports and all 5 odd ones. That is
    # connect()'s second pass, not bind(0)
    ports = [p for p in range(40000, 40011) if p != 40000]
    res = analyze(facts(40000, 40010), T().connect(ports).t)
    assert res.global_.bind_held == 0 and "bind-before-connect" not in ids(res)
    d = dest(res, 80)
    assert (d.in_use, d.capacity, d.utilization) == (10, 10, 1.0)
