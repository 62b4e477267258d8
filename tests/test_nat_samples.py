"""NAT rule and conntrack statistics parsers against recorded real output
(tests/samples/nat/, provenance in tests/samples/README.md)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from portscope.errors import SystemReadError
from portscope.nat import rules, stats

S = Path(__file__).parent / "samples" / "nat"


def load(name: str) -> str:
    return (S / name).read_text()


def brief(rs):
    return [(r.chain, r.kind, r.proto, r.ports, r.random, r.random_fully, r.persistent, r.to_addr)
            for r in rs.rules]


def held(rs):
    return sorted((h.proto, h.low, h.high, h.chain) for h in rs.holders)


def test_iptables_nft_save_kube_docker():
    rs = rules.parse_iptables_save(load("iptables_nft_save_kube_docker.txt"), 4, "nft")
    assert rs.skipped == 0
    assert brief(rs) == [
        ("OUTPUT", "redirect", "tcp", (3128, 3128), False, False, False, None),
        ("POSTROUTING", "masquerade", None, None, False, False, False, None),
        ("POSTROUTING", "masquerade", "tcp", (40000, 40009), True, False, False, None),
        ("POSTROUTING", "snat", "udp", (1024, 2047), False, False, True, "203.0.113.1-203.0.113.4"),
        ("DOCKER", "dnat", "tcp", (80, 80), False, False, False, "172.17.0.2"),
        ("KUBE-POSTROUTING", "masquerade", None, None, False, True, False, None),
        ("KUBE-SEP-XYZ", "dnat", "tcp", (8080, 8080), False, False, False, "192.0.2.10"),
    ]
    # NodePorts reach DNAT only through KUBE-SVC -> KUBE-SEP; the OUTPUT REDIRECT holds nothing
    assert held(rs) == [("tcp", 30080, 30080, "KUBE-NODEPORTS"), ("tcp", 45000, 45000, "DOCKER"),
                        ("udp", 40053, 40053, "KUBE-NODEPORTS")]
    assert {r.to_json()["source"] for r in rs.rules} == {"iptables"}


def test_counters_do_not_change_the_rules():
    a = rules.parse_iptables_save(load("iptables_nft_save_kube_docker.txt"))
    b = rules.parse_iptables_save(load("iptables_nft_save_counters.txt"))
    assert brief(a) == brief(b) and held(a) == held(b) and b.skipped == 0


def test_ip6tables_and_legacy():
    v6 = rules.parse_iptables_save(load("ip6tables_nft_save.txt"), 6)
    assert brief(v6) == [("PREROUTING", "dnat", "tcp", (443, 443), False, False, False, "2001:db8::10"),
                         ("POSTROUTING", "snat", "tcp", (5000, 5999), False, False, False, "2001:db8::1")]
    assert {r.family for r in v6.rules} == {6}
    assert held(v6) == [("tcp", 30443, 30443, "PREROUTING")]
    legacy = rules.parse_iptables_save(load("iptables_legacy_save.txt"), 4, "legacy")
    assert brief(legacy) == [("PREROUTING", "dnat", "tcp", None, False, False, False, "192.0.2.20"),
                             ("POSTROUTING", "masquerade", "tcp", (50000, 50099), False, False, False, None)]
    assert legacy.rules[0].to_json()["ports"] is None and legacy.rules[1].to_json()["ports"] == "50000-50099"


def test_odd_lines_are_skipped_and_counted():
    rs = rules.parse_iptables_save(load("iptables_save_odd.txt"))
    # banana ports, unterminated quote, SNAT without --to-source, an -I line, broken counters
    assert rs.skipped == 5
    assert any("banana" in x for x in rs.skipped_examples)
    assert brief(rs) == [
        ("CNI-DN-5e1f0a", "dnat", "tcp", (443, 443), False, False, False, "10.22.0.5"),
        ("CNI-DN-5e1f0a", "dnat", "tcp", (9000, 9002), False, False, False, "10.22.0.5"),
        ("POSTROUTING", "masquerade", None, None, False, False, False, None),       # `! -p tcp`: any
        ("POSTROUTING", "masquerade", "udp", (20000, 29999), False, True, False, None),
    ]
    assert held(rs) == [("tcp", 8443, 8443, "CNI-DN-5e1f0a"), ("tcp", 8443, 8443, "CNI-HOSTPORT-DNAT"),
                        ("tcp", 44000, 44002, "CNI-DN-5e1f0a"), ("tcp", 44000, 44002, "CNI-HOSTPORT-DNAT")]


def test_nft_json_inet_mixed():
    rs = rules.parse_nft_json(load("nft_ruleset_inet_mixed.json"))
    assert rs.skipped == 0
    assert rs.sources["nft_xt_rules"] == 3          # iptables-nft rules: left to iptables-save
    assert brief(rs) == [
        ("post", "masquerade", "tcp", (40000, 40009), True, False, True, None),
        ("post", "masquerade", None, None, False, True, False, None),
        ("post", "snat", "udp", (1024, 2047), False, False, False, "203.0.113.1-203.0.113.3"),
        ("post", "snat", "tcp", (5000, 5999), False, False, False, "2001:db8::1"),
        ("pre", "dnat", "tcp", (80, 80), False, False, False, "192.0.2.5"),
        ("pre", "redirect", "udp", (53, 53), False, False, False, None),
    ]
    assert [r.family for r in rs.rules] == [None, None, 4, 6, 4, None]
    assert {r.table for r in rs.rules} == {"inet t"} and {r.source for r in rs.rules} == {"nft"}
    assert held(rs) == [("tcp", 30080, 30080, "pre"), ("tcp", 31000, 31000, "service-nodeports"),
                        ("udp", 30053, 30053, "pre"), ("udp", 30054, 30054, "pre")]


def test_nft_json_of_iptables_nft_only_is_all_xt():
    rs = rules.parse_nft_json(load("nft_ruleset_iptables_nft_xt.json"))
    assert rs.rules == [] and rs.skipped == 0 and rs.sources["nft_xt_rules"] == 16


@pytest.mark.parametrize("text", ["not json", '{"other": []}', '{"nftables": 3}'])
def test_nft_garbage_is_one_clear_error(text):
    with pytest.raises(SystemReadError, match="nft -j list ruleset"):
        rules.parse_nft_json(text)


def test_nft_unreadable_rule_is_skipped():
    text = ('{"nftables": [{"rule": {"family": "ip", "table": "t", "chain": "c", "handle": 1, "expr": '
            '[{"masquerade": {"port": {"map": {"key": "x", "data": "y"}}}}]}}, '
            '{"rule": {"family": "ip", "table": "t", "chain": "c", "handle": 2, "expr": "oops"}}]}')
    rs = rules.parse_nft_json(text)
    assert rs.rules == [] and rs.skipped == 2


def test_proc_stat_sums_equal_conntrack_S_of_the_same_moment():
    sums, cpus = stats.parse_proc_stat(load("proc_net_stat_nf_conntrack.txt"))
    ref: dict[str, int] = {}
    for k, v in re.findall(r"(\w+)=(\d+)", load("conntrack_S_same_moment.txt")):
        if k != "cpu":
            k = {"chaintoolong": "chain_toolong"}.get(k, k)
            ref[k] = ref.get(k, 0) + int(v)
    assert cpus == 2
    assert sums == {k: ref[k] for k in sums}
    assert sums["insert_failed"] == 15 and "entries" not in sums   # entries is not summed


@pytest.mark.parametrize("text", ["", "entries found\n00000001\n", "entries found\n00000001 0000zz01\n"])
def test_proc_stat_malformed(text):
    with pytest.raises(SystemReadError):
        stats.parse_proc_stat(text)
