"""deploy/ for conntrack and NAT (issue 13): the portscope-nat alert rules catch a broken
threshold, every NAT metric the rules and dashboard use is one the exporter really emits
(collected from a namespace with SNAT flows), and the systemd unit's CAP_NET_ADMIN is
both needed and enough for the conntrack series (run as nobody with setpriv)."""
from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import needs_netns

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES = os.path.join(ROOT, "deploy", "prometheus", "portscope.rules.yml")
RULE_TESTS = os.path.join(ROOT, "deploy", "tests")
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "portscope-dashboard.json")
UNIT = os.path.join(ROOT, "deploy", "systemd", "portscope-exporter.service")
PORTSCOPE = os.path.join(os.path.dirname(sys.executable), "portscope")
needs_promtool = pytest.mark.skipif(not shutil.which("promtool"), reason="promtool not installed")
needs_tools = pytest.mark.skipif(not (shutil.which("iptables") and shutil.which("conntrack")),
                                 reason="needs iptables and conntrack (scripts/test.sh installs them)")

FLOWS = r"""
import socket, sys
keep = []
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", 5001)); l.listen(64); keep.append(l)
for i in range(3):
    keep.append(socket.create_connection(("127.0.0.1", 5001), timeout=5)); keep.append(l.accept()[0])
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.mark.live
@needs_promtool
@pytest.mark.parametrize("old, new", [
    ("portscope_snat_destination_utilization_ratio > 0.9\n        for: 2m",
     "portscope_snat_destination_utilization_ratio > 0.9\n        for: 4m"),
    ("portscope_conntrack_entries / portscope_conntrack_max > 0.9", "portscope_conntrack_entries / portscope_conntrack_max > 0.96"),
    ("increase(portscope_conntrack_insert_failed_total[5m]) > 0", "increase(portscope_conntrack_insert_failed_total[5m]) > 20"),
    ("portscope_nat_ports_in_ephemeral_range > 0", "portscope_nat_ports_in_ephemeral_range > 2"),
])
def test_nat_rule_tests_catch_a_broken_rule(tmp_path, old, new):
    text = open(RULES).read()
    assert old in text
    (tmp_path / "prometheus").mkdir()
    (tmp_path / "prometheus" / "portscope.rules.yml").write_text(text.replace(old, new, 1))
    shutil.copytree(RULE_TESTS, tmp_path / "tests")
    r = subprocess.run(["promtool", "test", "rules", str(tmp_path / "tests" / "portscope-nat.rules.test.yml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "FAILED" in (r.stdout + r.stderr)


def _nat_ns(ns) -> subprocess.Popen:
    ns.run("iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-p", "tcp", "--dport", "5001",
           "-j", "SNAT", "--to-source", "127.0.0.1:41000-41099")
    ns.run("iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "40080", "-j", "DNAT",
           "--to-destination", "192.0.2.10:80")
    p = ns.popen(sys.executable, "-c", FLOWS, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready", p.stderr.read()
    return p


def _names(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append(s)
    return out


@needs_netns
@needs_tools
def test_nat_rules_and_panels_use_only_exported_metrics(netns):
    p = _nat_ns(netns)
    try:
        from portscope.exporter import Exporter, PortscopeCollector
        text = Exporter(PortscopeCollector([netns.name], top=5)).render().decode()
    finally:
        p.kill()
    names = _names(text)
    rules = set(re.findall(r"\bportscope_(?:snat|conntrack|nat)_[a-z_]+\b",
                           "".join(l for l in open(RULES) if "expr:" in l)))
    dash = set(re.findall(r"\bportscope_(?:snat|conntrack|nat)_[a-z_]+\b", open(DASHBOARD).read()))
    assert len(rules) == 5 and len(dash) == 7
    assert rules | dash <= set(names), (rules | dash) - set(names)
    (use,) = names["portscope_snat_destination_ports_in_use"]
    assert use.labels == {"netns": netns.name, "proto": "tcp", "nat_ip": "127.0.0.1", "dst": "127.0.0.1",
                          "dport": "5001"} and use.value == 3
    assert names["portscope_snat_destination_ports_capacity"][0].value == 100
    assert names["portscope_nat_ports_in_ephemeral_range"][0].value == 1


def _unit_caps() -> list[str]:
    for line in open(UNIT):
        if line.startswith("AmbientCapabilities="):
            return line.split("=", 1)[1].split()
    raise AssertionError("no AmbientCapabilities in the unit")


def _as_nobody(portscope: list[str], caps: list[str], *args: str) -> subprocess.CompletedProcess:
    names = ",".join("+" + c.lower().removeprefix("cap_") for c in caps)
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
           f"--inh-caps=-all{',' + names if names else ''}", f"--bounding-set=-all{',' + names if names else ''}"]
    if caps:
        cmd.append(f"--ambient-caps={names}")
    return subprocess.run([*cmd, *portscope, "exporter", *args], capture_output=True, text=True, timeout=120)


@needs_netns
@needs_tools
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_unit_cap_net_admin_is_needed_and_enough_for_nat(netns, nobody_portscope):
    caps = _unit_caps()
    # the unit also grants the eBPF counter's capabilities (issue 14); these two are conntrack's
    assert set(caps) >= {"CAP_SYS_ADMIN", "CAP_NET_ADMIN"}
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="portscope-deploy-nat-"))
    os.chmod(tmp, 0o777)
    p = _nat_ns(netns)
    try:
        def scrape(caps):
            path = tmp / f"out-{len(caps)}.prom"
            # nobody cannot reach a checkout in a private directory: the session's own runtime
            r = _as_nobody(nobody_portscope, caps, "--textfile", str(path), "--once", "--netns", netns.name)
            assert r.returncode == 0, r.stderr
            return _names(path.read_text()), r.stderr

        without, err = scrape(["CAP_SYS_ADMIN"])
        assert without["portscope_scrape_success"][0].value == 1           # sockets still served
        assert "portscope_conntrack_entries" not in without and "CAP_NET_ADMIN" in err
        full, err = scrape(caps)
        count = int(netns.run("conntrack", "-C").stdout)
        assert full["portscope_conntrack_entries"][0].value == count >= 3, err
        assert full["portscope_snat_destination_ports_in_use"][0].value == 3
        assert full["portscope_nat_ports_in_ephemeral_range"][0].value == 1   # the rules were readable too
    finally:
        p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
