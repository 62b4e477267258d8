"""NAT rules read live: rules this test installs in a private namespace, through every
back-end present here (iptables-nft, iptables-legacy, ip6tables, nft), must come back
from `portscope nat` exactly; a missing reader is reported, never guessed."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import needs_netns

PORTSCOPE = [sys.executable, "-m", "portscope"]
needs_iptables = pytest.mark.skipif(shutil.which("iptables") is None or shutil.which("nft") is None,
                                    reason="needs iptables and nft (scripts/test.sh installs them)")


def nat_json(nsname: str, env=None) -> dict:
    r = subprocess.run(PORTSCOPE + ["nat", "--json", "--no-table", "--netns", nsname],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def rows(d, source):
    return sorted((r["chain"], r["kind"], r["proto"], r["ports"], r["random"], r["random_fully"], r["family"])
                  for r in d["rules"] if r["source"] == source)


@needs_netns
@needs_iptables
def test_rules_installed_through_every_backend_come_back(netns):
    ns = netns
    ns.run("iptables", "-t", "nat", "-N", "KUBE-NODEPORTS")
    ns.run("iptables", "-t", "nat", "-N", "KUBE-SEP-1")
    ns.run("iptables", "-t", "nat", "-A", "PREROUTING", "-j", "KUBE-NODEPORTS")
    ns.run("iptables", "-t", "nat", "-A", "KUBE-NODEPORTS", "-p", "tcp", "-m", "comment", "--comment",
           "default/web:http", "-m", "tcp", "--dport", "40080", "-j", "KUBE-SEP-1")
    ns.run("iptables", "-t", "nat", "-A", "KUBE-SEP-1", "-p", "tcp", "-j", "DNAT", "--to-destination",
           "192.0.2.10:8080")
    ns.run("iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "eth0", "-p", "tcp", "-j", "MASQUERADE",
           "--to-ports", "40000-40009", "--random-fully")
    ns.run("ip6tables", "-t", "nat", "-A", "POSTROUTING", "-o", "eth0", "-p", "udp", "-j", "SNAT",
           "--to-source", "[2001:db8::1]:5000-5099", "--random")
    ns.run("nft", "add table ip edge; add chain ip edge pre { type nat hook prerouting priority -100; }; "
                  "add chain ip edge post { type nat hook postrouting priority 100; }; "
                  "add rule ip edge pre udp dport 41053 dnat to 192.0.2.53:53; "
                  "add rule ip edge post meta l4proto udp masquerade to :20000-20999 fully-random")
    legacy = shutil.which("iptables-legacy") is not None
    if legacy:
        ns.run("iptables-legacy", "-t", "nat", "-A", "POSTROUTING", "-o", "eth2", "-p", "tcp",
               "-j", "MASQUERADE", "--to-ports", "50000-50099")
        ns.run("iptables-legacy", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "41000",
               "-j", "DNAT", "--to-destination", "192.0.2.20")
    d = nat_json(ns.name)
    ipt = [("KUBE-SEP-1", "dnat", "tcp", "8080-8080", False, False, 4),
           ("POSTROUTING", "masquerade", "tcp", "40000-40009", False, True, 4),
           ("POSTROUTING", "snat", "udp", "5000-5099", True, False, 6)]
    if legacy:
        ipt += [("POSTROUTING", "masquerade", "tcp", "50000-50099", False, False, 4),
                ("PREROUTING", "dnat", "tcp", None, False, False, 4)]
    assert rows(d, "iptables") == sorted(ipt)
    assert rows(d, "nft") == [("post", "masquerade", "udp", "20000-20999", False, True, 4),
                              ("pre", "dnat", "udp", "53-53", False, False, 4)]
    assert d["rules_skipped"] == 0
    assert d["sources"]["nft_xt_rules"] >= 4           # iptables-nft rules seen by nft as xt
    ports = {(p["proto"], p["port"], p["chain"]) for p in d["nat_ports"]}
    want = {("tcp", 40080, "KUBE-NODEPORTS"), ("udp", 41053, "pre")} | ({("tcp", 41000, "PREROUTING")} if legacy else set())
    assert ports == want
    # default range 32768-60999: all inside and none reserved -> the finding and its exact remedy
    (f,) = [f for f in d["findings"] if f["id"] == "nat-port-in-range"]
    want_ports = ",".join(str(p) for p in sorted({p for _, p, _ in want}))
    assert f'net.ipv4.ip_local_reserved_ports="{want_ports}"' in f["remedy"]
    assert f["remedy"].startswith(f"ip netns exec {ns.name} sysctl -w")


@needs_netns
@needs_iptables
def test_the_reserve_remedy_clears_the_finding(netns):
    netns.run("iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "40080", "-j", "DNAT",
              "--to-destination", "192.0.2.10:80")
    d = nat_json(netns.name)
    (f,) = [f for f in d["findings"] if f["id"] == "nat-port-in-range"]
    cmd = f["remedy"].split("  #")[0]
    subprocess.run(cmd, shell=True, check=True, timeout=30)
    d = nat_json(netns.name)
    assert [p["reserved"] for p in d["nat_ports"]] == [True]
    assert not [f for f in d["findings"] if f["id"] == "nat-port-in-range"]


@needs_netns
def test_missing_rule_readers_are_named_not_guessed(netns, tmp_path):
    """With neither iptables-save nor nft on PATH, rules are unknown and say so."""
    env = dict(os.environ, PATH=str(tmp_path))
    r = subprocess.run([*PORTSCOPE, "nat", "--json", "--no-table", "--netns", netns.name],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["rules"] == [] and d["sources"]["nft"] is None and d["sources"]["iptables"] is None
    assert any("iptables-save not found" in n for n in d["notes"])
    assert any("nft not found" in n for n in d["notes"])


def _nodeport(ns, port: int, proto: str = "tcp") -> None:
    ns.run("iptables", "-t", "nat", "-N", "KUBE-NODEPORTS", check=False)
    ns.run("iptables", "-t", "nat", "-N", "KUBE-SEP-1", check=False)
    if "KUBE-NODEPORTS" not in ns.run("iptables", "-t", "nat", "-S", "PREROUTING").stdout:
        ns.run("iptables", "-t", "nat", "-A", "PREROUTING", "-j", "KUBE-NODEPORTS")
        ns.run("iptables", "-t", "nat", "-A", "KUBE-SEP-1", "-p", proto, "-j", "DNAT", "--to-destination",
               "192.0.2.10:8080")
    ns.run("iptables", "-t", "nat", "-A", "KUBE-NODEPORTS", "-p", proto, "--dport", str(port), "-j", "KUBE-SEP-1")


@needs_netns
@needs_iptables
def test_port_names_the_nat_holder(netns):
    _nodeport(netns, 40080)
    r = subprocess.run(PORTSCOPE + ["port", "40080", "--json", "--netns", netns.name],
                       capture_output=True, text=True, timeout=60)
    d = json.loads(r.stdout)
    assert d["in_use"] == [] and d["nat_holders"] == [
        {"proto": "tcp", "chain": "KUBE-NODEPORTS", "kind": "dnat", "source": "iptables",
         "text": "DNAT rule in chain KUBE-NODEPORTS (iptables, tcp)"}]
    r = subprocess.run(PORTSCOPE + ["port", "40080", "--netns", netns.name], capture_output=True, text=True, timeout=60)
    assert "held by DNAT rule in chain KUBE-NODEPORTS" in r.stdout
    r = subprocess.run(PORTSCOPE + ["port", "40081", "--json", "--netns", netns.name],
                       capture_output=True, text=True, timeout=60)
    assert "nat_holders" not in json.loads(r.stdout)


@needs_netns
@needs_iptables
def test_suggest_never_proposes_a_nat_held_port(netns):
    for p in (30001, 30003):
        _nodeport(netns, p)
    r = subprocess.run(PORTSCOPE + ["suggest", "--range", "30000-30004", "--allow-registered", "-n", "5", "--json", "--netns", netns.name],
                       capture_output=True, text=True, timeout=60)
    d = json.loads(r.stdout)
    assert sorted(s["port"] for s in d["ports"]) == [30000, 30002, 30004]
    r = subprocess.run(PORTSCOPE + ["suggest", "--port", "30001", "--allow-registered", "--netns", netns.name],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "held by a NAT rule, not a socket: DNAT rule in chain KUBE-NODEPORTS" in r.stdout


@needs_netns
@needs_iptables
def test_report_and_pressure_check_carry_the_nat_findings(netns):
    _nodeport(netns, 40080)
    r = subprocess.run(PORTSCOPE + ["report", "--json", "--netns", netns.name], capture_output=True, text=True,
                       timeout=60)
    d = json.loads(r.stdout)
    assert d["nat"]["nat_ports"][0]["port"] == 40080
    assert "nat-port-in-range" in {f["id"] for f in d["findings"]} and d["headline"]["status"] == "warning"
    r = subprocess.run(PORTSCOPE + ["report", "--netns", netns.name], capture_output=True, text=True, timeout=60)
    assert "NAT and conntrack:" in r.stdout and "NAT-held ports    1 (1 in the ephemeral range" in r.stdout
    r = subprocess.run(PORTSCOPE + ["pressure", "--check", "--netns", netns.name], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and "nat-port-in-range (warning)" in r.stdout
    r = subprocess.run(PORTSCOPE + ["pressure", "--check", "--ignore", "nat-port-in-range", "--netns", netns.name],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout


@needs_netns
def test_report_has_no_nat_section_without_nat(netns):
    r = subprocess.run(PORTSCOPE + ["report", "--json", "--netns", netns.name], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "nat" not in json.loads(r.stdout)
