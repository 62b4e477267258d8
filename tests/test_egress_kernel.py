"""`pressure --egress` over namespaces made here: together they hold K flows to one
destination (203.0.113.10:443, a documentation address on each namespace's own loopback),
from different namespaces and source addresses; the report must say K."""
from __future__ import annotations

import json

import pytest

from conftest import ROOT
from nsworld import HAVE_TOOLS, World, cgroup_v2_root, hex64, pod_uid

pytestmark = [pytest.mark.netns, pytest.mark.skipif(not (ROOT and HAVE_TOOLS and cgroup_v2_root()),
                                reason="needs root, unshare/ip/nsenter and a writable cgroup v2 mount")]

DST, PORT = "203.0.113.10", 443
LIVE = (4, 6, 3)            # per namespace
CLOSED = (2, 0, 1)          # closed by the client first: TIME_WAIT, held by a NAT for its hold time


@pytest.fixture(scope="module")
def scene():
    w = World()
    try:
        uid, cid = pod_uid(), hex64()
        pids = [
            w.spawn(f"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid.replace('-', '_')}"
                    f".slice/cri-containerd-{cid}.scope", conns=LIVE[0], closed=CLOSED[0], port=PORT, dst=DST,
                    addrs=(f"{DST}/32",)),
            w.spawn(f"system.slice/docker-{hex64()}.scope", conns=LIVE[1], closed=CLOSED[1], port=PORT, dst=DST,
                    src="198.51.100.7", addrs=(f"{DST}/32", "198.51.100.7/32")),
            w.spawn(None, conns=LIVE[2], closed=CLOSED[2], port=PORT, dst=DST, addrs=(f"{DST}/32",)),
        ]
        yield w, pids, {"uid": uid, "cid": cid}
    finally:
        w.close()


def _egress(cli, *args):
    code, out, err = cli("pressure", "--egress", "--json", *args)
    assert code == 0, err
    return json.loads(out)


def _row(doc):
    rows = [r for r in doc["egress"] if (r["proto"], r["dst"], r["dport"]) == ("tcp", DST, PORT)]
    assert len(rows) == 1, doc["egress"]
    return rows[0]


def test_k_flows_whichever_namespace_and_source(cli, scene):
    _, _, ids = scene
    r = _row(_egress(cli, "--nat-budget", "1000", "--nat-hold", "0"))
    assert r["flows"] == r["live"] == sum(LIVE) and r["closed_held"] == 0
    assert r["budget"] == 1000 and r["utilization"] == pytest.approx(sum(LIVE) / 1000, abs=1e-6)
    srcs = r["top_sources"]
    assert sum(s["flows"] for s in srcs) == sum(LIVE)
    assert sorted(s["flows"] for s in srcs) == sorted(LIVE)
    pod = [s for s in srcs if s["pod"]]
    assert len(pod) == 1 and pod[0]["pod"] == {"uid": ids["uid"], "qos": "besteffort"}
    assert pod[0]["container"] == {"runtime": "containerd", "id": ids["cid"]} and pod[0]["flows"] == LIVE[0]
    assert sum(1 for s in srcs if s["container"] and s["container"]["runtime"] == "docker") == 1


def test_closed_flows_count_while_the_nat_holds_them(cli, scene):
    r = _row(_egress(cli, "--nat-budget", "1000"))          # default hold: 60 s, our TIME_WAIT
    assert r["closed_held"] == sum(CLOSED) and r["flows"] == sum(LIVE) + sum(CLOSED)


def test_budget_presets_and_addresses(cli, scene):
    doc = _egress(cli, "--cloud", "aws-nat-gateway", "--nat-addresses", "2")
    assert doc["budget"]["per_destination"] == 110_000 and doc["budget"]["nat_addresses"] == 2
    assert "docs.aws.amazon.com" in doc["budget"]["source"]
    doc = _egress(cli, "--cloud", "gcp-cloud-nat", "--nat-addresses", "4")
    assert doc["budget"]["per_destination"] == 64          # minPortsPerVm: per VM, addresses do not add
    assert doc["budget"]["hold_seconds"] == 120
    r = _row(doc)
    assert r["utilization"] == pytest.approx(r["flows"] / 64, abs=1e-6)


def test_finding_names_the_top_pod_and_real_remedies(cli, scene):
    _, _, ids = scene
    k = sum(LIVE)
    doc = _egress(cli, "--nat-budget", str(k), "--nat-hold", "0", "--cloud", "azure-nat-gateway")
    (f,) = [f for f in doc["findings"] if f["evidence"]["dst"] == DST]
    assert f["id"] == "egress-nat-budget" and f["severity"] == "critical"
    assert ids["uid"] in f["message"] or "docker:" in f["message"]
    assert "public IP" in f["remedy"] and "keep-alive" in f["remedy"] and "Private Link" in f["remedy"]
    doc = _egress(cli, "--nat-budget", str(k * 10), "--nat-hold", "0")
    assert not [f for f in doc["findings"] if f["evidence"]["dst"] == DST]


def test_loopback_and_private_destinations_are_not_nat_traffic(cli, scene):
    doc = _egress(cli, "--nat-budget", "100")
    assert not [r for r in doc["egress"] if r["dst"].startswith("127.")]


def test_shared_namespace_is_split_by_socket_cgroup(cli):
    """Two workloads in one namespace (as host-network pods share the node's): the flows
    go to each one's pod / container by the socket's cgroup."""
    w = World()
    try:
        uid = pod_uid()
        port = 8443                     # not the module scene's destination
        host = w.spawn(None, conns=0, port=port, dst=DST, addrs=(f"{DST}/32",))
        w.join(host, f"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid.replace('-', '_')}"
               f".slice/cri-containerd-{hex64()}.scope", port=port, conns=5, dst=DST)
        w.join(host, f"system.slice/docker-{hex64()}.scope", port=port, conns=2, dst=DST)
        doc = _egress(cli, "--nat-budget", "1000", "--nat-hold", "0")
    finally:
        w.close()
    (r,) = [r for r in doc["egress"] if (r["proto"], r["dst"], r["dport"]) == ("tcp", DST, port)]
    assert r["flows"] == 7
    by = {("pod" if s["pod"] else s["container"]["runtime"] if s["container"] else None): s["flows"]
          for s in r["top_sources"]}
    assert by.get("pod") == 5 and by.get("docker") == 2
    assert r["top_sources"][0]["pod"]["uid"] == uid and r["top_sources"][0]["pod"]["qos"] == "burstable"


def test_bad_egress_input_is_one_line_exit_2(cli):
    for args in (("pressure", "--egress"), ("pressure", "--egress", "--nat-budget", "0"),
                 ("pressure", "--egress", "--cloud", "aws-nat-gateway", "--nat-addresses", "9"),
                 ("pressure", "--nat-budget", "5"), ("pressure", "--egress", "--nat-budget", "5", "--check"),
                 ("pressure", "--egress", "--nat-budget", "5", "--nat-hold", "-1")):
        code, _, err = cli(*args)
        assert code == 2 and err.count("\n") == 1 and err.startswith("portscope: error:"), (args, err)


def test_interval_measures_new_flows_and_projects_the_hold(cli):
    """Flows closed longer ago than TIME_WAIT are invisible to the node but still held by a
    NAT with a longer hold (GCP: 120 s): --interval measures the rate of new flows and
    projects them over the rest of the hold."""
    w = World()
    try:
        port = 9443
        w.spawn(None, conns=2, port=port, dst=DST, addrs=(f"{DST}/32",), churn=20)
        code, out, err = cli("pressure", "--egress", "--json", "--cloud", "gcp-cloud-nat", "--interval", "1")
        assert code == 0, err
        doc = json.loads(out)
    finally:
        w.close()
    (r,) = [r for r in doc["egress"] if (r["dst"], r["dport"]) == (DST, port)]
    assert 5 <= r["rate_per_s"] <= 40, r                       # ~20/s, minus sleep jitter
    # projected from the unrounded rate; the JSON rate is rounded to 3 decimals, which moves
    # rate * 60 by up to 0.03, so recomputing round() from it may land one flow off
    assert abs(r["projected_flows"] - r["flows"] - r["rate_per_s"] * 60) <= 0.5 + 60 * 0.0005, r
    assert doc["forecast"]["hold_seconds"] == 120 and doc["forecast"]["new_flows"] >= 5


def test_exporter_egress_series():
    """Its own namespaces, made just before the scrape: the module's TIME_WAIT flows last
    60 s, which a slow run of the module can outlive."""
    from portscope.egress import budget
    from portscope.exporter import Exporter, PortscopeCollector
    from prometheus_client.parser import text_string_to_metric_families
    port, live, closed = 7443, (3, 2), (2, 1)
    w = World()
    try:
        for k, c in zip(live, closed):
            w.spawn(None, conns=k, closed=c, port=port, dst=DST, addrs=(f"{DST}/32",))
        col = PortscopeCollector([None], egress=budget(nat_budget=100, nat_addresses=2), top=20)
        text = Exporter(col).render().decode()
    finally:
        w.close()
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    lab = {"proto": "tcp", "dst": DST, "dport": str(port)}
    flows = [s.value for s in samples if s.name == "portscope_egress_destination_flows" and s.labels == lab]
    ratio = [s.value for s in samples if s.name == "portscope_egress_destination_budget_ratio" and s.labels == lab]
    want = sum(live) + sum(closed)
    assert flows == [want] and ratio == [pytest.approx(want / 200)]
    assert [s.value for s in samples if s.name == "portscope_egress_budget_flows"] == [200]


def test_exporter_cli_egress_options(cli, scene):
    code, out, err = cli("exporter", "--json", "--cloud", "azure-nat-gateway", "--nat-addresses", "3")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["portscope_egress_budget_flows"][0]["value"] == 150_000
    assert any(s["labels"]["dst"] == DST for s in doc["portscope_egress_destination_flows"])
    code, _, err = cli("exporter", "--json", "--nat-addresses", "3")
    assert code == 2 and err.count("\n") == 1
