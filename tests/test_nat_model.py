"""The NAT model on constructed inputs: the dump parser on hand-encoded ctnetlink
messages (one layout per group, mixed layouts, zones), SNAT aggregation and capacity,
findings, and conntrack absent."""
from __future__ import annotations

import socket
import struct

import pytest

from portscope.host import HostFacts
from portscope.nat import findings, snat, stats, table
from portscope.nat.ctnetlink import CtnetlinkError
from portscope.nat.rules import Holder, NatRule
from portscope.ports import PortRange, PortSet


def nla(typ: int, payload: bytes, nested: bool = False) -> bytes:
    ln = 4 + len(payload)
    return struct.pack("=HH", ln, typ | (0x8000 if nested else 0)) + payload + b"\0" * ((4 - ln % 4) % 4)


def tup(src: str, dst: str, proto: int, sport: int, dport: int) -> bytes:
    fam = socket.AF_INET6 if ":" in src else socket.AF_INET
    a, b = (3, 4) if fam == socket.AF_INET6 else (1, 2)
    ip = nla(a, socket.inet_pton(fam, src)) + nla(b, socket.inet_pton(fam, dst))
    pr = nla(1, bytes((proto,))) + nla(2, struct.pack(">H", sport)) + nla(3, struct.pack(">H", dport))
    return nla(1, ip, True) + nla(2, pr, True)


def msg(orig, reply, status: int, timeout: int, state: int | None = None, zone: int | None = None) -> bytes:
    fam = socket.AF_INET6 if ":" in orig[0] else socket.AF_INET
    body = nla(1, tup(*orig), True) + nla(2, tup(*reply), True)
    if zone is not None:
        body += nla(18, struct.pack(">H", zone))
    body += nla(3, struct.pack(">I", status)) + nla(7, struct.pack(">I", timeout))
    if state is not None:
        body += nla(4, nla(1, nla(1, bytes((state,))) + nla(2, b"\x07") + nla(3, b"\x07"), True), True)
    body += nla(12, struct.pack(">I", 1234))
    nfgen = struct.pack("=BBH", fam, 0, 0)
    return struct.pack("=IHHII", 20 + len(body), (1 << 8) | 0, 2, 3, 0) + nfgen + body


def groups(*msgs: bytes) -> dict[int, bytearray]:
    out: dict[int, bytearray] = {}
    for m in msgs:
        out.setdefault(len(m), bytearray()).extend(m)
    return out


SNAT = 0x10 | 0x2 | 0x4 | 0x8


def flows(n: int, nat_port0: int = 40000, state: int = 3, dport: int = 443):
    return [msg(("198.51.100.2", "203.0.113.9", 6, 50000 + i, dport),
                ("203.0.113.9", "203.0.113.1", 6, dport, nat_port0 + i), SNAT, 100 + i, state) for i in range(n)]


def test_parser_reads_every_field_of_a_uniform_group():
    t = table.parse_groups(groups(*flows(50)))
    assert len(t) == 50 and t.skipped == 0
    r = t.row(7)
    assert r["orig"] == {"src": "198.51.100.2", "dst": "203.0.113.9", "sport": 50007, "dport": 443}
    assert r["reply"] == {"src": "203.0.113.9", "dst": "203.0.113.1", "sport": 443, "dport": 40007}
    assert r["state"] == "ESTABLISHED" and r["timeout"] == 107 and r["proto"] == "tcp"
    assert set(r["status"]) == {"SEEN_REPLY", "ASSURED", "CONFIRMED", "SRC_NAT"}


def test_parser_mixed_families_layouts_and_zones():
    v6 = msg(("2001:db8::2", "2001:db8::9", 17, 1000, 53), ("2001:db8::9", "2001:db8::2", 17, 53, 1000), 0x8, 29)
    udp = msg(("192.0.2.1", "192.0.2.2", 17, 1111, 53), ("192.0.2.2", "192.0.2.1", 17, 53, 1111), 0x8, 30)
    zoned = msg(("192.0.2.1", "192.0.2.3", 6, 2222, 80), ("192.0.2.3", "192.0.2.1", 6, 80, 2222), 0x8, 60, 1, zone=7)
    # no zone but a CTA_MARK instead: the same length as `zoned`, a different layout, so
    # that group must fall back to walking each message
    plain = _with_mark(msg(("192.0.2.1", "192.0.2.4", 6, 3333, 80), ("192.0.2.4", "192.0.2.1", 6, 80, 3333),
                           0x8, 61, 2), len(zoned))
    g = groups(v6, udp, zoned, plain, *flows(3))
    assert len(g[len(zoned)]) == 2 * len(zoned)
    t = table.parse_groups(g)
    rows = {(r["orig"]["dst"], r["orig"]["sport"]): r for r in map(t.row, range(len(t)))}
    assert len(t) == 7 and t.skipped == 0
    assert rows[("2001:db8::9", 1000)]["family"] == 6 and rows[("2001:db8::9", 1000)]["state"] is None
    assert rows[("192.0.2.3", 2222)]["zone"] == 7 and rows[("192.0.2.3", 2222)]["state"] == "SYN_SENT"
    assert rows[("192.0.2.4", 3333)]["zone"] == 0 and rows[("192.0.2.4", 3333)]["state"] == "SYN_RECV"
    assert rows[("192.0.2.4", 3333)]["timeout"] == 61 and rows[("192.0.2.2", 1111)]["timeout"] == 30


def _with_mark(m: bytes, want: int) -> bytes:
    """Append a CTA_MARK (8) attribute so the message reaches `want` bytes."""
    extra = want - len(m)
    assert extra >= 8 and extra % 4 == 0
    body = m[20:] + nla(8, b"\0" * (extra - 4))
    return struct.pack("=IHHII", 20 + len(body), (1 << 8), 2, 3, 0) + m[16:20] + body


def test_snat_counts_distinct_nat_ports_and_time_wait():
    ms = flows(6) + flows(2, nat_port0=40100, state=7)        # 2 in TIME_WAIT
    # a second flow on an already used NAT port to another destination port: separate key
    ms.append(msg(("198.51.100.3", "203.0.113.9", 6, 1234, 80), ("203.0.113.9", "203.0.113.1", 6, 80, 40000),
                  SNAT, 50, 3))
    t = table.parse_groups(groups(*ms))
    rule = NatRule("nat", "POSTROUTING", "masquerade", "tcp", (40000, 40199), False, False, "iptables", 4)
    ds = snat.snat_destinations(t, [rule])
    d443 = [d for d in ds if d.dport == 443][0]
    assert (d443.in_use, d443.time_wait, d443.capacity, d443.range_from) == (8, 2, 200, "rule")
    assert d443.time_wait_timeout_max == 101
    d80 = [d for d in ds if d.dport == 80][0]
    assert d80.in_use == 1


def test_capacity_default_ranges_and_narrowest_rule():
    assert snat.default_range(50000) == (1024, 65535)
    assert snat.default_range(700) == (600, 1023)
    assert snat.default_range(80) == (1, 511)
    t = table.parse_groups(groups(*flows(3)))
    (d,) = snat.snat_destinations(t, [])
    assert (d.capacity, d.low, d.high, d.range_from) == (64512, 1024, 65535, "default")
    wide = NatRule("nat", "P", "masquerade", None, (30000, 50000), False, False, "iptables", None)
    narrow = NatRule("nat", "P", "snat", "tcp", (40000, 40009), False, False, "nft", 4, to_addr="203.0.113.1")
    other_ip = NatRule("nat", "P", "snat", "tcp", (40000, 40002), False, False, "nft", 4, to_addr="192.0.2.1")
    udp_only = NatRule("nat", "P", "masquerade", "udp", (40000, 40003), False, False, "nft", 4)
    (d,) = snat.snat_destinations(t, [wide, narrow, other_ip, udp_only])
    assert (d.low, d.high, d.rule) == (40000, 40009, narrow)
    # a range that does not contain the ports in use cannot be the one the kernel used
    tiny = NatRule("nat", "P", "masquerade", "tcp", (40000, 40001), False, False, "iptables", 4)
    (d,) = snat.snat_destinations(t, [tiny])
    assert d.range_from == "default"


FACTS = HostFacts(os="linux", ephemeral=PortRange(32768, 60999), reserved=PortSet.parse("40080"),
                  unprivileged_port_start=1024, os_default=PortRange(32768, 60999), netns="lab1")


def test_nat_ports_and_findings():
    holders = [Holder("tcp", 30080, 30080, "KUBE-NODEPORTS", "dnat", "iptables"),
               Holder("tcp", 40080, 40080, "KUBE-NODEPORTS", "dnat", "iptables"),
               Holder("udp", 45000, 45001, "DOCKER", "dnat", "iptables")]
    ports = snat.nat_ports(holders, FACTS.ephemeral, FACTS.reserved)
    assert [(p.port, p.in_ephemeral_range, p.reserved) for p in ports] == [
        (30080, False, False), (40080, True, True), (45000, True, False), (45001, True, False)]
    masq = NatRule("nat", "POSTROUTING", "masquerade", None, (45000, 45100), False, False, "iptables", 4)
    fs = {f["id"]: f for f in findings.port_findings(ports, [masq], FACTS)}
    assert fs["nat-port-in-range"]["remedy"].startswith(
        'ip netns exec lab1 sysctl -w net.ipv4.ip_local_reserved_ports="40080,45000-45001"')
    assert "45000, 45001" in fs["snat-range-overlaps-nat-port"]["message"]


def _ct(entries, maximum, **st):
    return stats.ConntrackStats(available=True, entries=entries, max=maximum, buckets=maximum,
                                stats={k: 0 for k in ("insert_failed", "drop")} | st, source="ctnetlink")


@pytest.mark.parametrize("entries, sev", [(700, None), (800, "warning"), (950, "critical"), (1000, "critical")])
def test_conntrack_full_thresholds(entries, sev):
    fs = findings.conntrack_findings(_ct(entries, 1000), FACTS)
    got = [f for f in fs if f["id"] == "conntrack-full"]
    assert [f["severity"] for f in got] == ([sev] if sev else [])
    if sev:
        assert "net.netfilter.nf_conntrack_max=65536" in got[0]["remedy"]
        assert "hashsize" in got[0]["remedy"]


def test_insert_failed_finding_names_random_fully():
    ct = _ct(10, 1000, insert_failed=3, drop=3)
    (f,) = findings.conntrack_findings(ct, FACTS)
    assert f["id"] == "conntrack-insert-failed" and "--random-fully" in f["remedy"]
    assert f["severity"] == "info"                      # totals alone may be old news
    (f,) = findings.conntrack_findings(ct, FACTS, {"insert_failed": 2, "drop": 2}, 5.0)
    assert f["severity"] == "warning" and "+2" in f["message"] and "5 s" in f["message"]
    (f,) = findings.conntrack_findings(ct, FACTS, {"insert_failed": 0, "drop": 0}, 5.0)
    assert f["severity"] == "info"                      # not rising: back to information
    assert findings.conntrack_findings(_ct(10, 1000), FACTS) == []


def test_snat_exhaustion_remedy_widens_the_rules_range():
    t = table.parse_groups(groups(*flows(10)))
    rule = NatRule("nat", "POSTROUTING", "masquerade", "tcp", (40000, 40009), False, False, "iptables", 4)
    (f,) = findings.snat_findings(snat.snat_destinations(t, [rule]), FACTS)
    assert f["id"] == "snat-exhaustion" and f["severity"] == "critical"
    assert "--to-ports 40000-40019" in f["remedy"] and "10/10" in f["message"]
    assert "ip netns exec lab1 sysctl -w net.netfilter.nf_conntrack_tcp_timeout_time_wait" in f["remedy"]


def test_conntrack_absent_is_a_normal_state(tmp_path, monkeypatch):
    monkeypatch.setattr(stats, "SYSCTL_DIR", str(tmp_path))
    ct = stats.read_stats()
    assert ct.available is False and ct.entries is None
    assert "not loaded" in ct.notes[0]
    assert ct.to_json()["available"] is False and ct.to_json()["utilization"] is None
    assert findings.conntrack_findings(ct, FACTS) == []


def test_exporter_series_top_n_plus_other():
    from portscope.nat import NatReport
    from portscope.nat.metrics import families
    from portscope.nat.rules import RuleSet
    ms = [msg(("198.51.100.2", "203.0.113.9", 6, 50000 + i, 1000 + i // 3),
              ("203.0.113.9", "203.0.113.1", 6, 1000 + i // 3, 40000 + i), SNAT, 60, 3) for i in range(12)]
    t = table.parse_groups(groups(*ms))
    rep = NatReport(netns=None, conntrack=_ct(12, 1000, insert_failed=5, drop=5, early_drop=1), rules=RuleSet(),
                    snat=snat.snat_destinations(t, []), nat_ports=[])
    fams = {f.name: f for f in families([("", rep)], top=2)}
    use = fams["portscope_snat_destination_ports_in_use"].samples
    assert [(s.labels["dst"], s.labels["dport"], s.value) for s in use] == [
        ("203.0.113.9", "1000", 3), ("203.0.113.9", "1001", 3), ("other", "", 6)]
    assert len(fams["portscope_snat_destination_ports_capacity"].samples) == 2
    assert fams["portscope_snat_destination_ports_capacity"].samples[0].value == 64512
    assert [s.value for s in fams["portscope_conntrack_insert_failed"].samples] == [5]
    assert fams["portscope_conntrack_insert_failed"].samples[0].name == "portscope_conntrack_insert_failed_total"
    assert [s.value for s in fams["portscope_conntrack_entries"].samples] == [12]


def test_simulate_nat_small_range_is_exact(cli):
    import json
    code, out, err = cli("simulate", "--algorithm", "nat", "--range", "40000-40007", "--connects", "20", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert (d["ports_used_max"], d["failures"], d["first_failure_index"]) == (8, 12, 8)   # 0-based
    assert d["capacity"] == {"min": 8, "max": 8, "per": "pair", "note": None}


def test_simulate_nat_time_wait_and_refusals(cli):
    import json
    code, out, _ = cli("simulate", "--algorithm", "nat", "--range", "40000-40099", "--rate", "1/s",
                       "--duration", "5", "--json")
    assert code == 0 and json.loads(out)["settings"]["time_wait"] == 120.0       # conntrack's, not TCP's 60
    code, _, err = cli("simulate", "--algorithm", "nat", "--range", "40000-40099", "--reserved", "40001",
                       "--connects", "5")
    assert code == 2 and "NAT ignores ip_local_reserved_ports" in err
    code, _, err = cli("simulate", "--algorithm", "nat", "--range", "40000-40099", "--rate", "1/s", "--plan")
    assert code == 2 and "--plan has no closed form" in err and err.count("\n") == 1


# -- the streamed tally (SnatTally) against the table path, on the same messages ------------

def icmp_msg(src: str, dst: str, nat: str, ident: int, status: int = SNAT) -> bytes:
    """An ICMP echo entry: the proto nests carry ICMP_ID/TYPE/CODE (4, 5, 6), no ports."""
    def t(a, b, typ):
        ip = nla(1, socket.inet_pton(socket.AF_INET, a)) + nla(2, socket.inet_pton(socket.AF_INET, b))
        pr = nla(1, b"\x01") + nla(4, struct.pack(">H", ident)) + nla(5, bytes((typ,))) + nla(6, b"\0")
        return nla(1, ip, True) + nla(2, pr, True)
    body = nla(1, t(src, dst, 8), True) + nla(2, t(dst, nat, 0), True)
    body += nla(3, struct.pack(">I", status)) + nla(7, struct.pack(">I", 29))
    return struct.pack("=IHHII", 20 + len(body), 1 << 8, 2, 3, 0) + struct.pack("=BBH", socket.AF_INET, 0, 0) + body


def tally(ms: list[bytes], runs: int = 1) -> snat.SnatTally:
    """Feed the messages as ctnetlink.dump_groups would: runs of one length, in order,
    cut at `runs` places so a layout meets the tally in several pieces."""
    t = snat.SnatTally()
    cut = max(1, len(ms) // runs)
    for i in range(0, len(ms), cut):
        for length, blob in groups(*ms[i:i + cut]).items():
            t.add(memoryview(bytes(blob)), length)
    return t


def same(ms: list[bytes], rules=(), runs: int = 1) -> list[dict]:
    old = [d.to_json() for d in snat.snat_destinations(table.parse_groups(groups(*ms)), list(rules))]
    t = tally(ms, runs)
    new = [d.to_json() for d in t.destinations(list(rules))]
    assert new == old
    assert t.rows == sum(1 for i in range(len(table.parse_groups(groups(*ms))))
                         if table.parse_groups(groups(*ms)).status[i] & table.IPS_SRC_NAT)
    return new


def test_tally_equals_the_table_path_on_a_uniform_run():
    ms = flows(200) + flows(30, nat_port0=41000, state=7)
    t = tally(ms)
    assert t.fast == 230 and t.skipped == 0
    (d,) = same(ms, runs=7)
    assert (d["in_use"], d["time_wait"], d["time_wait_timeout_max"]) == (230, 30, 129)


def test_tally_equals_the_table_path_on_mixed_layouts_families_and_protocols():
    v6 = [msg(("2001:db8::2", "2001:db8::9", 17, 1000 + i, 53), ("2001:db8::9", "2001:db8::1", 17, 53, 3000 + i),
              SNAT, 29) for i in range(5)]
    udp = [msg(("192.0.2.1", "192.0.2.2", 17, 1111 + i, 53), ("192.0.2.2", "198.51.100.7", 17, 53, 1111 + i),
               SNAT, 30) for i in range(4)]
    plain = [msg(("192.0.2.1", "192.0.2.4", 6, 3333 + i, 80), ("192.0.2.4", "192.0.2.1", 6, 80, 3333 + i), 0x8, 61, 3)
             for i in range(6)]                                   # tracked, not NATed
    zoned = [msg(("192.0.2.1", "192.0.2.3", 6, 2222 + i, 80), ("192.0.2.3", "203.0.113.1", 6, 80, 2222 + i),
                 SNAT, 60, 7 if i % 2 else 3, zone=7) for i in range(4)]
    # the same length as `zoned`, a CTA_MARK instead of the zone: a second layout of one length
    marked = [_with_mark(msg(("192.0.2.1", "192.0.2.3", 6, 4444 + i, 80),
                             ("192.0.2.3", "203.0.113.1", 6, 80, 4444 + i), SNAT, 50 + i, 7), len(zoned[0]))
              for i in range(3)]
    icmp = [icmp_msg("192.0.2.1", "192.0.2.5", "203.0.113.1", 77 + i) for i in range(3)]
    low = [msg(("192.0.2.1", "192.0.2.6", 6, 700 + i, 22), ("192.0.2.6", "203.0.113.1", 6, 22, 700 + i), SNAT, 9, 3)
           for i in range(3)]                                     # original ports 512..1023: 600-1023
    ms = v6 + udp + plain + zoned + marked + icmp + low + flows(5)
    interleaved = [m for pair in zip(ms[::2], ms[1::2]) for m in pair] + ms[len(ms) // 2 * 2:]
    for order in (ms, interleaved, ms[::-1]):
        for runs in (1, 3, len(ms)):
            out = same(order, runs=runs)
    by = {(d["proto"], d["dst"], d["dport"]): d for d in out}
    assert by[("tcp", "192.0.2.3", 80)]["in_use"] == 7 and by[("tcp", "192.0.2.3", 80)]["time_wait"] == 5
    assert by[("icmp", "192.0.2.5", 0)]["in_use"] == 1           # no ports: the table path counts port 0
    assert by[("tcp", "192.0.2.6", 22)]["range"] == "600-1023"
    assert by[("udp", "2001:db8::9", 53)]["nat_ip"] == "2001:db8::1"
    assert ("tcp", "192.0.2.4", 80) not in by


def test_tally_rule_ranges_use_the_lowest_and_highest_port():
    ms = flows(10) + flows(3, nat_port0=40500)
    narrow = NatRule("nat", "POSTROUTING", "masquerade", "tcp", (40000, 40099), False, False, "iptables", 4)
    wide = NatRule("nat", "POSTROUTING", "masquerade", "tcp", (40000, 40999), False, False, "iptables", 4)
    (d,) = same(ms, [narrow, wide], runs=4)
    assert d["range"] == "40000-40999" and d["in_use"] == 13      # 40502 is outside the narrow range


def test_tally_counts_a_reply_tuple_seen_twice_once():
    """Two zones may hold one reply tuple (and a dump may meet a port freed and taken
    again): a NAT port is in use once, as the table path counts it."""
    a = msg(("198.51.100.2", "203.0.113.9", 6, 50000, 443), ("203.0.113.9", "203.0.113.1", 6, 443, 40000), SNAT, 5, 3)
    b = msg(("198.51.100.2", "203.0.113.9", 6, 50001, 443), ("203.0.113.9", "203.0.113.1", 6, 443, 40000), SNAT, 5, 3,
            zone=4)
    (d,) = same([a, b, a], runs=3)
    assert d["in_use"] == 1


def test_tally_past_the_port_maps_keeps_pairs(monkeypatch):
    monkeypatch.setattr(snat, "BITMAP_KEYS", 4)
    ms = [m for dport in range(9) for m in flows(3, dport=1000 + dport)]
    t = tally(ms, runs=5)
    assert len(t.offsets) == 4 and t.pairs
    same(ms, runs=5)
    same(ms, [NatRule("nat", "POSTROUTING", "masquerade", "tcp", (40000, 40002), False, False, "iptables", 4)], runs=2)


def test_tally_skips_messages_without_tuples_and_odd_runs():
    good = flows(4)
    no_reply = good[0][:20] + good[0][20:20 + struct.unpack_from("=H", good[0], 20)[0]]   # CTA_TUPLE_ORIG only
    no_reply = struct.pack("=I", len(no_reply)) + no_reply[4:]
    t = tally(good + [no_reply])
    assert t.skipped == 1 and t.rows == 4
    same(good + [no_reply])
    with pytest.raises(CtnetlinkError):               # an attribute running past its message
        bad = bytearray(good[1])
        struct.pack_into("=H", bad, 20, 400)
        tally([bytes(bad)])


class FakeNetlink:
    """A socket that answers dump requests with prepared chunks (the kernel's replies
    re-sequenced to the request), recording what was sent."""

    def __init__(self, *answers: list[bytes]):
        self.answers = list(answers)
        self.sent: list[bytes] = []
        self.chunks: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        seq = struct.unpack_from("=I", data, 8)[0]
        self.chunks = [_reseq(c, seq) for c in self.answers.pop(0)]
        return len(data)

    def recv_into(self, buf: bytearray) -> int:
        c = self.chunks.pop(0)
        buf[:len(c)] = c
        return len(c)


def _reseq(chunk: bytes, seq: int) -> bytes:
    out, off = bytearray(chunk), 0
    while off + 16 <= len(out):
        ln = struct.unpack_from("=I", out, off)[0]
        struct.pack_into("=I", out, off + 8, seq)
        off += (ln + 3) & ~3
    return bytes(out)


DONE = struct.pack("=IHHIIi", 20, 3, 2, 3, 0, 0)


def test_dump_groups_streams_uniform_and_mixed_chunks_and_asks_for_src_nat():
    from portscope.nat import ctnetlink
    tcp, udp = flows(6), [msg(("192.0.2.1", "192.0.2.2", 17, 1111 + i, 53),
                              ("192.0.2.2", "203.0.113.1", 17, 53, 1111 + i), SNAT, 30) for i in range(4)]
    mixed = b"".join(m for pair in zip(tcp[3:], udp) for m in pair) + udp[3]
    sock = FakeNetlink([b"".join(tcp[:3]), mixed + DONE])
    seen: list[tuple[int, int]] = []
    t = snat.SnatTally()

    def consume(blob, length):
        seen.append((length, len(blob) // length))
        t.add(blob, length)

    ctnetlink.dump_groups(sock, consume, status=table.IPS_SRC_NAT)
    assert seen == [(len(tcp[0]), 3), (len(tcp[0]), 3), (len(udp[0]), 4)]
    req = sock.sent[0]
    assert struct.unpack_from("=H", req, 4)[0] == (1 << 8) | 1 and len(req) == 20 + 16
    assert req[20:] == struct.pack("=HH", 8, 3) + struct.pack(">I", 0x10) + struct.pack("=HH", 8, 26) \
        + struct.pack(">I", 0x10)
    assert [d.to_json() for d in t.destinations()] == [
        d.to_json() for d in snat.snat_destinations(table.parse_groups(groups(*tcp, *udp)))]
    # dump_table keeps the same runs, grouped by length, for table.parse_groups
    g = ctnetlink.dump_table(FakeNetlink([b"".join(tcp[:3]), mixed + DONE]))
    assert {k: len(v) // k for k, v in g.items()} == {len(tcp[0]): 6, len(udp[0]): 4}


def test_dump_groups_asks_again_unfiltered_when_the_kernel_refuses_the_filter():
    from portscope.nat import ctnetlink
    einval = struct.pack("=IHHIIi", 36, 2, 0, 3, 0, -22) + bytes(16)
    sock = FakeNetlink([einval], [b"".join(flows(2)) + DONE])
    t = snat.SnatTally()
    ctnetlink.dump_groups(sock, t.add, status=table.IPS_SRC_NAT)
    assert t.rows == 2 and len(sock.sent) == 2 and len(sock.sent[1]) == 20    # no attributes the second time
    eperm = struct.pack("=IHHIIi", 36, 2, 0, 3, 0, -1) + bytes(16)
    with pytest.raises(CtnetlinkError) as e:
        ctnetlink.dump_groups(FakeNetlink([eperm]), t.add, status=table.IPS_SRC_NAT)
    assert e.value.errno == 1
