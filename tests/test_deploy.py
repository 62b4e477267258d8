"""deploy/: alert rules (promtool check + unit tests, and proof the unit tests can fail),
the Grafana dashboard's queries, and the systemd unit's privileges (run for real with
setpriv as an unprivileged user holding exactly the unit's capabilities)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import PORTSCOPE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")
RULES = os.path.join(DEPLOY, "prometheus", "portscope.rules.yml")
RULE_TESTS = os.path.join(DEPLOY, "tests")
DASHBOARD = os.path.join(DEPLOY, "grafana", "portscope-dashboard.json")
UNIT = os.path.join(DEPLOY, "systemd", "portscope-exporter.service")

needs_promtool = pytest.mark.skipif(not shutil.which("promtool"),
                                    reason="promtool not installed (scripts/test.sh installs Debian's prometheus)")


def promtool(*args, cwd=None):
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def rule_tests():
    return sorted(os.path.join(RULE_TESTS, f) for f in os.listdir(RULE_TESTS) if f.endswith(".yml"))


@pytest.mark.live
@needs_promtool
def test_promtool_check_rules():
    r = promtool("check", "rules", RULES)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 7 rules found" in r.stdout


@pytest.mark.live
@needs_promtool
def test_promtool_test_rules():
    assert rule_tests()
    r = promtool("test", "rules", *rule_tests())
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


@pytest.mark.live
@needs_promtool
@pytest.mark.parametrize("old, new", [
    ("portscope_destination_utilization_ratio > 0.9\n        for: 5m", "portscope_destination_utilization_ratio > 0.96\n        for: 5m"),
    ("for: 5m\n        labels:\n          severity: critical", "for: 7m\n        labels:\n          severity: critical"),
    ('portscope_ephemeral_utilization_ratio{scope="global"} > 0.8', 'portscope_ephemeral_utilization_ratio{scope="global"} > 0.9'),
    ("expr: up{job=\"portscope\"} == 0", "expr: up{job=\"portscope\"} == 2"),
    ("portscope_scrape_success == 0", "portscope_scrape_success == 2"),
])
def test_rule_tests_catch_a_broken_rule(tmp_path, old, new):
    """The unit tests are not vacuous: a wrong threshold or duration makes them fail."""
    text = open(RULES).read()
    assert old in text
    (tmp_path / "prometheus").mkdir()
    (tmp_path / "prometheus" / "portscope.rules.yml").write_text(text.replace(old, new, 1))
    shutil.copytree(RULE_TESTS, tmp_path / "tests")
    r = promtool("test", "rules", *[str(tmp_path / "tests" / os.path.basename(t)) for t in rule_tests()])
    assert r.returncode != 0 and "FAILED" in (r.stdout + r.stderr)


@pytest.fixture(scope="module")
def exported_names(tmp_path_factory):
    """Metric names the exporter really emits (one real collection of our namespace)."""
    from portscope.exporter import Exporter, PortscopeCollector
    text = Exporter(PortscopeCollector([None], top=5)).render().decode()
    names = set()
    for fam in text_string_to_metric_families(text):
        names.update(s.name for s in fam.samples)
        names.add(fam.name)
    return names


def _referenced(text: str) -> set[str]:
    return set(re.findall(r"\bportscope_[a-z_]+\b", text)) - {"portscope_exporter"}


def test_rules_and_dashboard_use_only_exported_metrics(exported_names):
    rules = _referenced(open(RULES).read().split("annotations")[0] + "".join(
        l for l in open(RULES) if "expr:" in l))
    dash = _referenced(open(DASHBOARD).read())
    assert rules and dash
    assert rules <= exported_names, rules - exported_names
    assert dash <= exported_names, dash - exported_names
    # the contract names of the issue are all on the dashboard or in the rules
    for name in ("portscope_destination_utilization_ratio", "portscope_ephemeral_utilization_ratio",
                 "portscope_listeners_in_ephemeral_range", "portscope_scrape_errors_total",
                 "portscope_destination_ports_in_use", "portscope_destination_ports_capacity",
                 "portscope_sockets", "portscope_ephemeral_ports_in_use"):
        assert name in rules | dash, name


@pytest.mark.live
@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path):
    d = json.load(open(DASHBOARD))
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    assert {v["name"] for v in d["templating"]["list"]} == {"datasource", "instance", "netns"}
    exprs = [t["expr"] for p in d["panels"] for t in p["targets"]]
    assert len(exprs) >= 9
    # each query as a recording rule, with the Grafana variables filled in: promtool parses them
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:q{i}", "expr": e.replace("$instance", ".*").replace("$netns", ".*")}
        for i, e in enumerate(exprs)]}]}
    p = tmp_path / "dash.rules.yml"
    p.write_text(json.dumps(rules))
    r = promtool("check", "rules", str(p))
    assert r.returncode == 0, r.stdout + r.stderr


def _unit() -> dict:
    out: dict = {}
    for line in open(UNIT):
        line = line.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
    return out


@pytest.mark.live
@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_unit_verifies(tmp_path):
    text = open(UNIT).read().replace("/usr/local/bin/portscope", PORTSCOPE)
    p = tmp_path / "portscope-exporter.service"
    p.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", str(p)], capture_output=True, text=True, timeout=60)
    problems = [l for l in (r.stdout + r.stderr).splitlines() if "portscope-exporter.service" in l]
    assert r.returncode == 0 and not problems, r.stdout + r.stderr
    u = _unit()
    assert u["DynamicUser"] == "yes" and u["NoNewPrivileges"] == "yes"
    assert u["PrivateNetwork"] == "no"                 # an empty namespace would hide every socket
    assert u["CapabilityBoundingSet"] == u["AmbientCapabilities"] == "CAP_SYS_ADMIN"
    assert "AF_NETLINK" in u["RestrictAddressFamilies"]
    assert "--listen 127.0.0.1:" in u["ExecStart"]


def _as_nobody(entry: list[str], caps: list[str], *args: str) -> subprocess.CompletedProcess:
    """Run the exporter as uid/gid 65534 holding exactly `caps` (ambient), as the unit would."""
    names = ",".join("+" + c.lower().removeprefix("cap_") for c in caps)
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
           f"--inh-caps=-all{',' + names if names else ''}",
           f"--bounding-set=-all{',' + names if names else ''}"]
    if caps:
        cmd.append(f"--ambient-caps={names}")
    return subprocess.run([*cmd, *entry, "exporter", *args], capture_output=True, text=True, timeout=60, cwd="/")


def _read(out: str, name: str, ns: str) -> float:
    for fam in text_string_to_metric_families(out):
        for s in fam.samples:
            if s.name == name and s.labels.get("netns") == ns:
                return s.value
    raise AssertionError(f"{name}{{netns={ns!r}}} not exported")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_unit_capabilities_are_needed_and_enough(netns, nobody_portscope):
    """No capability: the host's own sockets are readable (as ss is); another namespace is
    not. CAP_NET_ADMIN does not help; the unit's CAP_SYS_ADMIN does."""
    import pathlib
    import tempfile
    tmp_path = pathlib.Path(tempfile.mkdtemp(prefix="portscope-deploy-"))   # pytest's is 0700
    os.chmod(tmp_path, 0o777)
    try:
        _check_caps(netns, tmp_path, nobody_portscope)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _check_caps(netns, tmp_path, entry):
    netns.run(sys.executable, "-c", "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()")

    def scrape(caps, *args):
        path = tmp_path / f"out-{len(caps)}-{len(args)}.prom"
        r = _as_nobody(entry, caps, "--textfile", str(path), "--once", *args)
        assert r.returncode == 0, r.stderr
        return path.read_text(), r.stderr

    out, _ = scrape([])
    assert _read(out, "portscope_scrape_success", "") == 1
    n = len(subprocess.run(["ss", "-tanH"], capture_output=True, text=True).stdout.splitlines())
    tcp = sum(s.value for fam in text_string_to_metric_families(out) for s in fam.samples
              if s.name == "portscope_sockets" and s.labels["proto"] == "tcp")
    assert abs(tcp - n) <= 5           # the host is live; other tests may open sockets meanwhile

    for caps in ([], ["CAP_NET_ADMIN"]):
        out, err = scrape(caps, "--netns", netns.name)
        assert _read(out, "portscope_scrape_success", netns.name) == 0
        assert "needs CAP_SYS_ADMIN" in err
    out, err = scrape(_unit()["AmbientCapabilities"].split(), "--netns", netns.name)
    assert _read(out, "portscope_scrape_success", netns.name) == 1, err
    assert _read(out, "portscope_ephemeral_range_ports", netns.name) > 0
