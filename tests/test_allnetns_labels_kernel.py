"""`nat --all-netns` and `watch --all-netns` with a real container identity: processes in
new unnamed network namespaces (`unshare --net`) in cgroups named as the kubelet with
containerd and as Docker name them, with a SNAT rule and flows (nat) or port-exhaustion
failures (watch) inside. Their rows, findings and entries must carry that container id
and pod UID / QoS class, in --json and in text, and the exporter's failure series must
join to portscope_netns_info on `netns`. Everything made here is removed (World.close)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from nsworld import HAVE_TOOLS, World, cgroup_v2_root, hex64, inode_of, pod_uid
from test_observe_kernel import CLIENT, LISTENER, PORT

pytestmark = [pytest.mark.netns, pytest.mark.skipif(not (ROOT and HAVE_TOOLS and cgroup_v2_root()),
                                reason="needs root, unshare/ip/lsns/mount and a writable cgroup v2 mount")]
needs_iptables = pytest.mark.skipif(shutil.which("iptables") is None,
                                    reason="needs iptables (scripts/test.sh installs it)")
PORTSCOPE = [sys.executable, "-m", "portscope"]
NAT_PORT = 5001


def _close(w: World) -> None:
    """World.close(), then whatever cgroup a dying process held a moment too long."""
    w.close()
    end = time.monotonic() + 10
    left = [c for c in w.cgroups if os.path.isdir(c)]
    while left and time.monotonic() < end:
        for c in sorted(left, key=len, reverse=True):
            try:
                os.rmdir(c)
            except OSError:
                pass
        left = [c for c in w.cgroups if os.path.isdir(c)]
        time.sleep(0.1)
    assert not left, f"cgroups left behind: {left}"


def _pod_cgroup(uid: str, cid: str) -> str:
    return (f"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid.replace('-', '_')}.slice/"
            f"cri-containerd-{cid}.scope")


def _in(pid: int, *cmd: str) -> None:
    subprocess.run(["nsenter", "-t", str(pid), "-n", *cmd], check=True, capture_output=True, timeout=30)


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(PORTSCOPE + list(args), capture_output=True, text=True, timeout=timeout)


@needs_iptables
def test_nat_all_netns_rows_carry_container_and_pod():
    """A pod's namespace (containerd, burstable) with a SNAT rule and 4 SNATed flows, and a
    Docker container's namespace with another: each namespace entry and SNAT row says its
    own container and pod, as `nat --netns pid:PID` reads the same namespace."""
    w = World()
    try:
        cid, uid, did = hex64(), pod_uid(), hex64()
        pod_cg, docker_cg = _pod_cgroup(uid, cid), f"system.slice/docker-{did}.scope"
        pod = w.spawn(pod_cg, conns=0, port=NAT_PORT)           # listens; no connection yet
        dock = w.spawn(docker_cg, conns=0, port=NAT_PORT)
        for pid, top in ((pod, 41099), (dock, 41049)):
            _in(pid, "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-p", "tcp", "--dport",
                str(NAT_PORT), "-j", "SNAT", "--to-source", f"127.0.0.1:41000-{top}")
        w.join(pod, pod_cg, port=NAT_PORT, conns=4)               # flows after the rule: SNATed
        w.join(dock, docker_cg, port=NAT_PORT, conns=2)
        r = _run("nat", "--all-netns", "--json", "--top", "0")
        text = _run("nat", "--all-netns")
        alone = {pid: json.loads(_run("nat", "--netns", f"pid:{pid}", "--json").stdout) for pid in (pod, dock)}
        inodes = {pod: inode_of(pod), dock: inode_of(dock)}
    finally:
        _close(w)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    want = {pod: ({"runtime": "containerd", "id": cid}, {"uid": uid, "qos": "burstable"}, 4, 100),
            dock: ({"runtime": "docker", "id": did}, None, 2, 50)}
    for pid, (container, pod_id, flows, capacity) in want.items():
        (entry,) = [n for n in doc["namespaces"] if n["netns_inode"] == inodes[pid]]
        assert (entry["netns"], entry["container"], entry["pod"]) == (f"inode:{inodes[pid]}", container, pod_id)
        assert entry["nat"]["rules"] == alone[pid]["rules"]
        rows = [d for d in doc["snat"] if d["netns_inode"] == inodes[pid]]
        assert [(d["in_use"], d["capacity"], d["container"], d["pod"], d["netns"]) for d in rows] == \
            [(flows, capacity, container, pod_id, f"inode:{inodes[pid]}")]
        assert [d["in_use"] for d in alone[pid]["snat"]] == [flows]
        for f in doc["findings"]:
            if f["netns_inode"] == inodes[pid]:
                assert (f["container"], f["pod"]) == (container, pod_id)
    assert text.returncode == 0, text.stderr
    heads = [ln for ln in text.stdout.splitlines() if ln.startswith("== ")]
    assert f"== inode:{inodes[pod]} containerd:{cid[:12]} pod {uid}" in heads
    assert f"== inode:{inodes[dock]} docker:{did[:12]}" in heads


def _bpf_watch(args: list[str]) -> subprocess.Popen:
    """`portscope ARGS` once its eBPF failure counter is attached (4 programs, 4 perf events)."""
    p = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "portscope"), *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 30
    while True:
        kinds = []
        for fd in os.listdir(f"/proc/{p.pid}/fd") if p.poll() is None else ():
            try:
                kinds.append(os.readlink(f"/proc/{p.pid}/fd/{fd}"))
            except OSError:
                pass
        if kinds.count("anon_inode:bpf-prog") == 4 and kinds.count("anon_inode:[perf_event]") == 4:
            return p
        assert p.poll() is None and time.monotonic() < end, p.stderr.read() if p.poll() is not None else "slow"
        time.sleep(0.05)


def _exhaust(w: World, pid: int, cgroup: str) -> dict:
    """In pid's namespace: a 10-port range, a listener, then 30 connect()s from a process in
    `cgroup` named ps-client: 20 fail with EADDRNOTAVAIL. Returns the client's report."""
    _in(pid, "ip", "link", "set", "lo", "up")
    _in(pid, "sh", "-c", "echo '40000 40009' > /proc/sys/net/ipv4/ip_local_port_range")
    lst = subprocess.Popen(["nsenter", "-t", str(pid), "-n", sys.executable, "-c", LISTENER, "4"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    w.procs.append(lst)                        # World.close() kills it (and closes both pipes)
    assert lst.stdout.readline().strip() == "up"
    cg = w.cgroup(cgroup)
    out = subprocess.run(["nsenter", "-t", str(pid), "-n", sys.executable, "-c", CLIENT, "ps-client",
                          "tcp-connect", "30", str(PORT), "4", cg], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_watch_all_netns_failures_carry_container_and_pod():
    """Failures in a pod's namespace (containerd, besteffort) and in a Docker container's:
    each failure row, finding and namespace entry says its container and pod, in --json
    and in text."""
    w = World()
    try:
        cid, uid, did = hex64(), pod_uid(), hex64()
        pod_cg = (f"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid.replace('-', '_')}.slice/"
                  f"cri-containerd-{cid}.scope")
        docker_cg = f"system.slice/docker-{did}.scope"
        pod, dock = w.spawn(pod_cg), w.spawn(docker_cg)
        inodes = {pod: inode_of(pod), dock: inode_of(dock)}
        watch = _bpf_watch(["watch", "--all-netns", "--json", "--seconds", "10"])
        text = _bpf_watch(["watch", "--all-netns", "--seconds", "10"])
        time.sleep(2)            # past the first read of every namespace's counters
        got = {pid: _exhaust(w, pid, cg) for pid, cg in ((pod, pod_cg), (dock, docker_cg))}
        out, err = watch.communicate(timeout=300)
        tout, terr = text.communicate(timeout=300)
    finally:
        _close(w)
    assert watch.returncode == 0 and all(" skipped: " in ln for ln in err.splitlines()), err
    assert text.returncode == 0, terr
    doc = json.loads(out)
    want = {pod: ({"runtime": "containerd", "id": cid}, {"uid": uid, "qos": "besteffort"}),
            dock: ({"runtime": "docker", "id": did}, None)}
    for pid, (container, pod_id) in want.items():
        assert got[pid]["fails"] == {"EADDRNOTAVAIL": 20}
        ino = inodes[pid]
        rows = [f for f in doc["failures"] if f["netns_inode"] == ino]
        assert [(f["errno"], f["count"], f["comm"], f["pid"], f["netns"], f["container"], f["pod"]) for f in rows] == \
            [("EADDRNOTAVAIL", 20, "ps-client", got[pid]["pid"], f"inode:{ino}", container, pod_id)]
        (entry,) = [n for n in doc["namespaces"] if n["netns_inode"] == ino]
        assert (entry["container"], entry["pod"]) == (container, pod_id)
        finds = [f for f in doc["findings"] if f["netns_inode"] == ino]
        assert any(f["id"] == "connect-failures" for f in finds)
        assert all((f["container"], f["pod"]) == (container, pod_id) for f in finds)
    lines = tout.splitlines()
    assert any("ps-client" in ln and f"inode:{inodes[pod]} containerd:{cid[:12]} pod {uid}" in ln for ln in lines), tout
    assert any("ps-client" in ln and f"inode:{inodes[dock]} docker:{did[:12]}" in ln for ln in lines), tout


def test_exporter_all_netns_failure_series_join_their_container():
    """The exporter with --all-netns: a pod's failures and TIME_WAIT counters come as series
    whose `netns` label is the one portscope_netns_info gives that pod's container and pod
    (the documented join)."""
    from prometheus_client.parser import text_string_to_metric_families

    from portscope.exporter import Exporter, PortscopeCollector
    from portscope.observe.metrics import add_to
    w = World()
    observed = None
    try:
        cid, uid = hex64(), pod_uid()
        cg = _pod_cgroup(uid, cid)
        pid = w.spawn(cg)
        label = f"inode:{inode_of(pid)}"
        exp = Exporter(PortscopeCollector([None], all_netns=True))
        observed = add_to(exp, [None], all_netns=True, bpf=True)
        got = _exhaust(w, pid, cg)
        text = exp.render().decode()
        stat = subprocess.run(["nsenter", "-t", str(pid), "-n", "cat", "/proc/net/sockstat"],
                              capture_output=True, text=True, check=True).stdout
        tw = int(stat.split(" tw ")[1].split()[0])
    finally:
        if observed is not None:
            observed.close()
        _close(w)
    assert got["fails"] == {"EADDRNOTAVAIL": 20}
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    fails = [s for s in samples if s.name == "portscope_connect_failures_total" and s.labels["netns"] == label]
    assert [(s.labels["errno"], s.labels["comm"], s.value) for s in fails] == [("EADDRNOTAVAIL", "ps-client", 20)]
    (info,) = [s for s in samples if s.name == "portscope_netns_info" and s.labels["netns"] == label]
    assert (info.labels["container"], info.labels["pod"], info.labels["qos"]) == (cid[:12], uid, "burstable")
    # the namespace's own TIME_WAIT counters too (an unnamed namespace: read since discovery found it)
    (tws,) = [s for s in samples if s.name == "portscope_tcp_timewait_sockets" and s.labels["netns"] == label]
    assert tws.value == tw
    assert [s for s in samples if s.name == "portscope_tcp_max_tw_buckets" and s.labels["netns"] == label]
