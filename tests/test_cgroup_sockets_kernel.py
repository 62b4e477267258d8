"""Per-socket cgroup (sock_diag INET_DIAG_CGROUP_ID) against `ss --cgroup`: two processes
in different Docker / kubelet-named cgroups share one private namespace (as host-network
pods share the node's); `conns --process` must attribute each socket to its cgroup, and
say that TIME_WAIT sockets have none."""
from __future__ import annotations

import json
import re
import subprocess

import pytest

from conftest import ROOT
from nsworld import HAVE_TOOLS, World, cgroup_v2_root, hex64, pod_uid

pytestmark = [pytest.mark.skipif(not (ROOT and HAVE_TOOLS and cgroup_v2_root()),
                                 reason="needs root, unshare/ip/nsenter and a writable cgroup v2 mount"),
              pytest.mark.root, pytest.mark.netns, pytest.mark.live]


def _ss_cgroups(pid: int) -> dict[tuple[int, int], str]:
    """(local port, remote port) -> cgroup path, from iproute2's ss."""
    out = subprocess.run(["nsenter", "-t", str(pid), "-n", "ss", "-tanH", "--cgroup"],
                         capture_output=True, text=True, check=True).stdout
    got = {}
    for line in out.splitlines():
        m = re.search(r":(\d+)\s+\S+:(\d+|\*)\s+cgroup:(\S+)", line)
        if m:
            got[(int(m.group(1)), 0 if m.group(2) == "*" else int(m.group(2)))] = m.group(3)
    return got


def test_each_socket_carries_the_cgroup_that_opened_it(cli):
    w = World()
    try:
        server_cid, client_cid, uid = hex64(), hex64(), pod_uid()
        server_cg = f"system.slice/docker-{server_cid}.scope"
        client_cg = (f"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid.replace('-', '_')}"
                     f".slice/cri-containerd-{client_cid}.scope")
        a = w.spawn(server_cg, conns=2, port=4800, closed=3)
        w.join(a, client_cg, port=4800, conns=4)
        code, out, err = cli("--netns", f"pid:{a}", "conns", "--process", "--json", "--proto", "tcp")
        ss = _ss_cgroups(a)
    finally:
        w.close()
    assert code == 0, err
    rows = json.loads(out)["sockets"]
    prefix = w.top[len(cgroup_v2_root()):]
    by_cg = {"server": 0, "client": 0}
    for r in rows:
        cg = r["cgroup"]
        if r["state"] == "TIME_WAIT":
            assert cg is None
            continue
        assert cg is not None, r
        assert ss[(r["local_port"], r["remote_port"])] == cg["path"], r          # same as iproute2
        if cg["path"] == f"{prefix}/{server_cg}":
            assert cg["container"] == {"runtime": "docker", "id": server_cid} and cg["pod"] is None
            by_cg["server"] += 1
        else:
            assert cg["path"] == f"{prefix}/{client_cg}", cg
            assert cg["container"] == {"runtime": "containerd", "id": client_cid}
            assert cg["pod"] == {"uid": uid, "qos": "besteffort"}
            by_cg["client"] += 1
    # server: listener + 2 own clients + their 2 accepted + 4 accepted from the client process
    assert by_cg == {"server": 9, "client": 4}
    assert sum(r["state"] == "TIME_WAIT" for r in rows) == 3


def test_text_output_says_time_wait_has_no_cgroup(cli):
    w = World()
    try:
        a = w.spawn(f"system.slice/docker-{hex64()}.scope", conns=1, port=4801, closed=2)
        code, out, err = cli("--netns", f"pid:{a}", "conns", "--process", "--proto", "tcp")
    finally:
        w.close()
    assert code == 0, err
    lines = out.splitlines()
    assert "CGROUP" in lines[0]
    tw = [ln for ln in lines if ln.startswith("tcp") and "TIME_WAIT" in ln]
    assert len(tw) == 2 and all(ln.endswith("(none: TIME_WAIT)") for ln in tw)
    est = [ln for ln in lines if "ESTABLISHED" in ln]
    assert est and all("docker:" in ln for ln in est)


def test_pressure_cgroup_counts_each_destination_by_cgroup_as_ss_does(cli):
    """Two processes in a Docker and a kubelet cgroup connect to one destination in a shared
    namespace: `pressure --cgroup` splits its in_use by cgroup as `ss --cgroup` does, counts
    the TIME_WAIT sockets apart (they have no cgroup), and the default JSON has no key."""
    w = World()
    try:
        server_cid, client_cid, uid = hex64(), hex64(), pod_uid()
        server_cg = f"system.slice/docker-{server_cid}.scope"
        client_cg = (f"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid.replace('-', '_')}"
                     f".slice/cri-containerd-{client_cid}.scope")
        a = w.spawn(server_cg, conns=2, port=4802, closed=3)
        w.join(a, client_cg, port=4802, conns=4)
        code, out, err = cli("--netns", f"pid:{a}", "pressure", "--cgroup", "--json")
        plain = cli("--netns", f"pid:{a}", "pressure", "--json")
        text = cli("--netns", f"pid:{a}", "pressure", "--cgroup")
        ss = _ss_cgroups(a)
        tw = subprocess.run(["nsenter", "-t", str(a), "-n", "ss", "-tanH", "state", "time-wait",
                             "dport", "= :4802"], capture_output=True, text=True, check=True).stdout
    finally:
        w.close()
    assert code == 0 and plain[0] == 0 and text[0] == 0, (err, plain[2], text[2])
    (d,) = [d for d in json.loads(out)["destinations"] if d["dport"] == 4802]
    assert all("cgroups" not in x for x in json.loads(plain[1])["destinations"])
    truth: dict[str, int] = {}
    for (lport, rport), path in ss.items():
        if rport == 4802:                   # the clients' ends (the accepted ends have lport 4802)
            truth[path] = truth.get(path, 0) + 1
    prefix = w.top[len(cgroup_v2_root()):]
    assert truth == {f"{prefix}/{client_cg}": 4, f"{prefix}/{server_cg}": 2}
    c = d["cgroups"]
    assert [(e["path"], e["sockets"]) for e in c["top"]] == sorted(truth.items(), key=lambda kv: -kv[1])
    assert c["top"][0]["container"] == {"runtime": "containerd", "id": client_cid}
    assert c["top"][0]["pod"] == {"uid": uid, "qos": "burstable"}
    assert c["top"][1]["container"] == {"runtime": "docker", "id": server_cid} and c["top"][1]["pod"] is None
    assert c["time_wait"] == len(tw.splitlines()) == 3 == d["time_wait"]
    assert c["more"] == 0 and c["unknown"] == 0
    assert sum(e["sockets"] for e in c["top"]) + c["time_wait"] == d["in_use"] == 9
    line = next(ln for ln in text[1].splitlines() if ":4802:" in ln)
    assert f"containerd:{client_cid[:12]} pod {uid} 4" in line and "no cgroup (TIME_WAIT) 3" in line


def test_pressure_cgroup_is_one_namespace_only(cli):
    code, out, err = cli("pressure", "--cgroup", "--all-netns")
    assert code == 2 and out == "" and err.count("\n") == 1 and "--all-netns" in err, err
    code, out, _ = cli("pressure", "--cgroup", "--check")
    assert code == 3 and out.startswith("PORTSCOPE UNKNOWN") and out.count("\n") == 1, out
