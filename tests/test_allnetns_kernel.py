"""`--all-netns` reads every namespace of the host (not only `ip netns` names): report,
pressure, conns and the exporter, against the same commands run with `--netns pid:PID`.
The namespaces are made here (unshare, Docker / kubelet-named cgroups) and removed."""
from __future__ import annotations

import json
import os

import pytest

from conftest import ROOT
from nsworld import HAVE_TOOLS, World, cgroup_v2_root, hex64, inode_of, pod_uid

pytestmark = [pytest.mark.netns, pytest.mark.skipif(not (ROOT and HAVE_TOOLS and cgroup_v2_root()),
                                reason="needs root, unshare/ip/lsns/mount and a writable cgroup v2 mount")]

K = (3, 5, 7)          # connections held in each namespace


@pytest.fixture(scope="module")
def scene():
    w = World()
    try:
        cid, uid = hex64(), pod_uid()
        pids = [
            w.spawn(f"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid.replace('-', '_')}"
                    f".slice/cri-containerd-{cid}.scope", conns=K[0], port=5000),
            w.spawn(f"system.slice/docker-{hex64()}.scope", conns=K[1], port=5001),
            w.spawn(None, conns=K[2], port=5002),
        ]
        name = w.attach(pids[2])
        yield w, pids, {"cid": cid, "uid": uid, "name": name}
    finally:
        w.close()


def _json(cli, *args):
    code, out, err = cli(*args)
    assert code == 0, (args, err)
    return json.loads(out)


def _entry(doc, pid):
    found = [n for n in doc["namespaces"] if n["netns_inode"] == inode_of(pid)]
    assert len(found) == 1, f"namespace of {pid} listed {len(found)} times"
    return found[0]


def test_report_all_netns_has_each_namespaces_numbers(cli, scene):
    w, pids, ids = scene
    doc = _json(cli, "report", "--all-netns", "--json")
    assert doc["all_netns"] is True
    for pid, k in zip(pids, K):
        one = _json(cli, "report", "--netns", f"pid:{pid}", "--json")
        e = _entry(doc, pid)
        assert e["report"]["destinations"] == one["destinations"]
        assert e["report"]["global"] == one["global"]
        (d,) = one["destinations"]
        assert d["in_use"] == k and d["dst"] == "127.0.0.1"
        flat = [x for x in doc["destinations"] if x["netns_inode"] == inode_of(pid)]
        assert [{k2: v for k2, v in x.items() if k2 not in ("netns", "netns_inode", "container", "pod")}
                for x in flat] == one["destinations"]
    e0 = _entry(doc, pids[0])
    assert e0["container"] == {"runtime": "containerd", "id": ids["cid"]}
    assert e0["pod"] == {"uid": ids["uid"], "qos": "burstable"}
    assert e0["netns"] == f"inode:{inode_of(pids[0])}"
    assert _entry(doc, pids[1])["container"]["runtime"] == "docker"
    assert _entry(doc, pids[2])["netns"] == ids["name"]
    assert [n for n in doc["namespaces"] if n["netns"] is None][0]["netns_inode"] == inode_of(os.getpid())


def test_pressure_all_netns_matches_pressure_netns(cli, scene):
    _, pids, ids = scene
    doc = _json(cli, "pressure", "--all-netns", "--json")
    for pid in pids:
        one = _json(cli, "pressure", "--netns", f"pid:{pid}", "--json")
        got = _entry(doc, pid)["pressure"]
        assert got["destinations"] == one["destinations"] and got["global"] == one["global"]
    rows = [d for d in doc["destinations"] if d["netns_inode"] == inode_of(pids[0])]
    assert rows and all(r["pod"]["uid"] == ids["uid"] for r in rows)


def test_conns_all_netns_labels_every_row(cli, scene):
    _, pids, ids = scene
    # --port: other tenants of this machine may hold 100k sockets in their own namespaces
    code, out, err = cli("conns", "--all-netns", "--json", "--proto", "tcp", "--port", "5000-5002")
    assert code == 0, err
    doc = json.loads(out)
    labels = [f"inode:{inode_of(pids[0])}", f"inode:{inode_of(pids[1])}", ids["name"]]
    for pid, k, label in zip(pids, K, labels):
        mine = [s for s in doc["sockets"] if s["netns"] == label]
        one = json.loads(cli("conns", "--netns", f"pid:{pid}", "--json", "--proto", "tcp",
                             "--port", "5000-5002")[1])["sockets"]
        strip = [{x: v for x, v in s.items() if x not in ("netns", "netns_inode", "container", "pod")} for s in mine]
        assert sorted(map(json.dumps, strip)) == sorted(map(json.dumps, one))
        assert sum(s["state"] == "ESTABLISHED" for s in mine) == 2 * k
    code, out, err = cli("conns", "--all-netns", "--count", "--json", "--proto", "tcp", "--port", "5000-5002")
    per = {n["netns_inode"]: n["total"] for n in json.loads(out)["namespaces"]}
    for pid, k in zip(pids, K):
        assert per[inode_of(pid)] == 2 * k + 1            # both ends of k connections + the listener


def test_exporter_all_netns_reads_unnamed_namespaces(scene):
    from portscope.exporter import Exporter, PortscopeCollector
    from prometheus_client.parser import text_string_to_metric_families
    _, pids, ids = scene
    text = Exporter(PortscopeCollector([None], all_netns=True)).render().decode()
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    use = {s.labels["netns"]: s.value for s in samples if s.name == "portscope_destination_ports_in_use"
           and s.labels.get("dport") in ("5000", "5001", "5002")}
    assert use[f"inode:{inode_of(pids[0])}"] == K[0]
    assert use[f"inode:{inode_of(pids[1])}"] == K[1]
    assert use[ids["name"]] == K[2]
    info = {s.labels["netns"]: s.labels for s in samples if s.name == "portscope_netns_info"}
    lab = info[f"inode:{inode_of(pids[0])}"]
    assert lab["container"] == ids["cid"][:12] and lab["pod"] == ids["uid"] and lab["qos"] == "burstable"
    assert lab["runtime"] == "containerd" and lab["inode"] == str(inode_of(pids[0]))


def test_a_namespace_that_vanishes_mid_scan_is_reported_once_and_skipped():
    from portscope.allnetns import each
    from portscope.datapath import measure
    from portscope.namespaces import discover
    w = World()
    try:
        stay, gone = w.spawn(None, conns=2, port=5100), w.spawn(None, conns=1, port=5101)
        d = discover()
        victim = w.procs[1]
        victim.kill()
        victim.wait(5)
        walk = each(lambda spec: measure(spec, top=5), discovery=d)
    finally:
        w.close()
    skipped = [s for s in walk.skipped if s["netns_inode"] == inode_of_safe(d, gone)]
    assert len(skipped) == 1 and skipped[0]["reason"]
    assert any(v.ns.inode == inode_of_safe(d, stay) for v in walk.visits)


def inode_of_safe(d, pid):
    return next(ns.inode for ns in d.namespaces if pid in ns.pids)


def test_all_netns_refuses_netns_and_check(cli, scene):
    _, pids, _ = scene
    for args in (("report", "--all-netns", "--netns", f"pid:{pids[0]}"),
                 ("--netns", f"pid:{pids[0]}", "pressure", "--all-netns"),
                 ("conns", "--all-netns", "--netns", f"pid:{pids[0]}"),
                 ("pressure", "--all-netns", "--interval", "1")):
        code, _, err = cli(*args)
        assert code == 2 and err.count("\n") == 1, (args, err)
    code, out, _ = cli("pressure", "--all-netns", "--check")
    assert code == 3 and out.startswith("PORTSCOPE UNKNOWN")


def test_findings_of_an_unnamed_namespace_enter_it_by_path(cli):
    """A remedy for a namespace without an `ip netns` name must not say `ip netns exec
    inode:N` (no such name): it enters by the namespace's path."""
    w = World()
    try:
        pid = w.spawn(None, conns=1, port=40051)         # a listener inside the default range
        doc = _json(cli, "report", "--all-netns", "--json")
    finally:
        w.close()
    mine = [f for f in doc["findings"] if f["netns_inode"] == inode_of_pid_cached(doc, pid)]
    lir = [f for f in mine if f["id"] == "listener-in-range"]
    assert lir, mine
    remedy = lir[0]["remedy"]
    assert "ip netns exec inode:" not in remedy
    assert remedy.startswith("nsenter --net=/proc/") and f"--netns inode:" in remedy


def inode_of_pid_cached(doc, pid):
    # the process is gone after w.close(); its namespace is the one whose report says pid's port
    for n in doc["namespaces"]:
        if any(d["dport"] == 40051 for d in n["report"]["destinations"]):
            return n["netns_inode"]
    raise AssertionError("namespace with the :40051 listener not in the report")
