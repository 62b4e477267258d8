"""natprobe against the kernel: in a namespace this test creates, with no rules, an nft nat
chain, a legacy iptables nat rule and an nft filter-only table, the probe says whether NAT
rules could hold a port, and `portscope port N` prints exactly what the full rule read
(iptables-nft-save, ip6tables-nft-save, nft -j list ruleset, iptables-legacy-save) gives."""
from __future__ import annotations

import shutil

import pytest

from conftest import needs_netns
from portscope import natprobe, netns
from portscope.front import views
from portscope.nat import rules

pytestmark = [needs_netns, pytest.mark.skipif(shutil.which("nft") is None or shutil.which("iptables-nft-save") is None,
                                              reason="needs nft and iptables-nft-save (scripts/test.sh installs them)")]

PORT = 8080


def _full_read(ns_name: str) -> list:
    with netns.entered(ns_name):
        return rules.read_rules().holders


def _port_output(ns_name: str, as_json: bool, capsys, monkeypatch, probe: bool) -> str:
    """`port PORT` as views prints it: with the probe, or forced to read the rules in full
    (what every run did before the probe)."""
    with monkeypatch.context() as m:
        if not probe:
            m.setattr(natprobe, "may_hold_ports", lambda netns=None: True)
        capsys.readouterr()
        views.port_number(str(PORT), None, ns_name, True, as_json)
        return capsys.readouterr().out


def _check(ns, capsys, monkeypatch, want_nat: bool) -> list:
    with netns.entered(ns.name):
        reasons = natprobe.nat_reasons()
    assert reasons is not None
    assert bool(reasons) is want_nat, reasons
    assert natprobe.may_hold_ports(ns.name) is want_nat
    held = _full_read(ns.name)
    if not want_nat:
        assert held == []        # what skipping the readers assumes
    for as_json in (False, True):
        fast = _port_output(ns.name, as_json, capsys, monkeypatch, probe=True)
        full = _port_output(ns.name, as_json, capsys, monkeypatch, probe=False)
        assert fast == full
        assert ("nat_holders" in fast if as_json else "nat:" in fast) is bool(held)
    return reasons


def test_no_rules_no_nat(netns, capsys, monkeypatch):
    _check(netns, capsys, monkeypatch, want_nat=False)


def test_nft_nat_chain(netns, capsys, monkeypatch):
    netns.run("nft", "add table ip pst; add chain ip pst pre { type nat hook prerouting priority -100; }; "
              f"add rule ip pst pre tcp dport {PORT} dnat to 192.0.2.1:80")
    reasons = _check(netns, capsys, monkeypatch, want_nat=True)
    assert reasons == ["nat chain in table pst"]
    assert [(h.low, h.source) for h in _full_read(netns.name)] == [(PORT, "nft")]


def test_nft_nat_chain_without_rules(netns, capsys, monkeypatch):
    # a nat chain alone: the readers run (and find nothing), the output is the same
    netns.run("nft", "add table inet pst; add chain inet pst pre { type nat hook prerouting priority -100; }")
    assert _check(netns, capsys, monkeypatch, want_nat=True) == ["nat chain in table pst"]


def test_iptables_nft_nat_rule(netns, capsys, monkeypatch):
    netns.run("iptables-nft", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", str(PORT),
              "-j", "DNAT", "--to-destination", "192.0.2.1:80")
    reasons = _check(netns, capsys, monkeypatch, want_nat=True)
    assert "nat chain in table nat" in reasons
    assert (PORT, "iptables") in [(h.low, h.source) for h in _full_read(netns.name)]


@pytest.mark.skipif(shutil.which("iptables-legacy") is None or shutil.which("iptables-legacy-save") is None,
                    reason="needs iptables-legacy (Debian's iptables package)")
def test_iptables_legacy_nat_rule(netns, capsys, monkeypatch):
    r = netns.run("iptables-legacy", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", str(PORT),
                  "-j", "DNAT", "--to-destination", "192.0.2.1:80", check=False)
    if r.returncode != 0:
        pytest.skip(f"this kernel has no legacy iptables nat table: {r.stderr.strip()}")
    reasons = _check(netns, capsys, monkeypatch, want_nat=True)
    assert reasons == ["ip_tables_names"]           # no nf_tables object at all
    assert (PORT, "iptables") in [(h.low, h.source) for h in _full_read(netns.name)]


def test_nft_filter_only_table(netns, capsys, monkeypatch):
    netns.run("nft", "add table inet pst; add chain inet pst in { type filter hook input priority 0; }; "
              f"add rule inet pst in tcp dport {PORT} accept; "
              "add map inet pst ports { type inet_service : verdict; }")
    _check(netns, capsys, monkeypatch, want_nat=False)


def test_nodeport_map_without_nat_chain(netns, capsys, monkeypatch):
    # kube-proxy's NodePort map is read wherever it is (nat.rules): its name alone makes the readers run
    netns.run("nft", "add table inet pst; add map inet pst service-nodeports "
              "{ type inet_proto . inet_service : verdict; }; add chain inet pst svc; "
              f"add element inet pst service-nodeports {{ tcp . {PORT} : goto svc }}")
    assert _check(netns, capsys, monkeypatch, want_nat=True) == ["set service-nodeports"]
    assert [(h.low, h.kind) for h in _full_read(netns.name)] == [(PORT, "map")]
