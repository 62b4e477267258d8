"""`portscope namespaces` against the kernel and `lsns -t net`: processes in new unnamed
network namespaces, in cgroups named as Docker and the kubelet name them, some with a
bind-mount name; each must be listed exactly once with the right identity.
Everything made here (processes, cgroups, mounts) is removed by World.close()."""
from __future__ import annotations

import json
import os

import pytest

from conftest import ROOT
from nsworld import HAVE_TOOLS, World, cgroup_v2_root, hex64, inode_of, lsns_net, pod_uid

pytestmark = [pytest.mark.skipif(not (ROOT and HAVE_TOOLS and cgroup_v2_root()),
                                 reason="needs root, unshare/ip/lsns/mount and a writable cgroup v2 mount"),
              pytest.mark.root, pytest.mark.netns, pytest.mark.live]


@pytest.fixture
def world():
    w = World()
    try:
        yield w
    finally:
        w.close()
    assert not os.path.exists(w.top), "test cgroups left behind"


def _listing(cli) -> dict:
    code, out, err = cli("namespaces", "--json")
    assert code == 0, err
    return json.loads(out)


def test_each_namespace_listed_once_with_its_identity(cli, world, tmp_path):
    d1, d2, c1, c2, c3 = (hex64() for _ in range(5))
    u1, u2, u3 = pod_uid(), pod_uid(), pod_uid()
    cases = {
        # pid -> (expected container, expected pod)
        world.spawn(f"system.slice/docker-{d1}.scope"): ({"runtime": "docker", "id": d1}, None),
        world.spawn(f"docker/{d2}"): ({"runtime": "docker", "id": d2}, None),
        world.spawn(f"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u1.replace('-', '_')}"
                    f".slice/cri-containerd-{c1}.scope"):
            ({"runtime": "containerd", "id": c1}, {"uid": u1, "qos": "burstable"}),
        world.spawn(f"kubepods.slice/kubepods-pod{u2.replace('-', '_')}.slice/crio-{c2}.scope"):
            ({"runtime": "cri-o", "id": c2}, {"uid": u2, "qos": "guaranteed"}),
        world.spawn(f"kubepods/besteffort/pod{u3}/{c3}"):
            ({"runtime": "cri", "id": c3}, {"uid": u3, "qos": "besteffort"}),
        world.spawn(None): (None, None),
    }
    pids = list(cases)
    named = world.attach(pids[0])                     # an `ip netns` name
    mounted = world.bind(pids[2], str(tmp_path))      # a bind mount elsewhere (as Docker's)
    got = _listing(cli)
    rows = got["namespaces"]
    inodes = [r["inode"] for r in rows]
    assert len(inodes) == len(set(inodes)), "a namespace listed twice"
    by_ino = {r["inode"]: r for r in rows}
    for pid, (container, pod) in cases.items():
        r = by_ino[inode_of(pid)]
        assert r["container"] == container and r["pod"] == pod, (pid, r)
        assert r["pids"] == [pid] and r["process_count"] == 1 and r["commands"] == ["sleep"]
        assert r["current"] is False
    assert named in by_ino[inode_of(pids[0])]["names"]
    assert mounted in by_ino[inode_of(pids[2])]["names"]
    assert mounted in by_ino[inode_of(pids[2])]["mounts"]
    ours = [r for r in rows if r["current"]]
    assert len(ours) == 1 and ours[0]["inode"] == inode_of(os.getpid())


def test_same_set_as_lsns(cli, world, netns):
    for _ in range(3):
        world.spawn(None)
    # other tests may create and remove namespaces meanwhile: a namespace in both lsns
    # readings must be in ours, and ours (those with processes) must be in one of them
    for _attempt in range(5):
        before = lsns_net()
        rows = _listing(cli)["namespaces"]
        after = lsns_net()
        with_procs = {r["inode"] for r in rows if r["process_count"]}
        if before & after <= with_procs <= before | after:
            break
    else:
        pytest.fail(f"namespaces {sorted(with_procs)} vs lsns {sorted(before)} / {sorted(after)}")
    for p in world.procs:
        assert inode_of(p.pid) in with_procs
    # a namespace held only by its bind mount (no process): lsns 2.38 does not list it, we do
    held = [r for r in rows if netns.name in r["names"]]
    assert len(held) == 1 and held[0]["process_count"] == 0 and held[0]["pids"] == []
    assert held[0]["inode"] == os.stat(f"/run/netns/{netns.name}").st_ino


def test_netns_inode_container_and_pod_specs_enter_the_right_namespace(cli, world):
    cid, uid = hex64(), pod_uid()
    a = world.spawn(f"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid.replace('-', '_')}"
                    f".slice/cri-containerd-{cid}.scope", conns=0, port=4711)
    b = world.spawn(f"system.slice/docker-{hex64()}.scope", conns=0, port=4712)
    for spec, port in ((f"container:{cid[:10]}", 4711), (f"pod:{uid}", 4711), (f"pod:{uid.replace('-', '_')}", 4711),
                       (f"inode:{inode_of(a)}", 4711), (f"inode:{inode_of(b)}", 4712)):
        code, out, err = cli("--netns", spec, "conns", "--listening", "--json")
        assert code == 0, (spec, err)
        assert [s["local_port"] for s in json.loads(out)["sockets"]] == [port], spec


def test_bad_specs_exit_2_with_one_line_naming_the_matches(cli, world):
    shared = "abcdef0123"
    one, two = shared + hex64()[10:], shared + hex64()[10:]
    world.spawn(f"system.slice/docker-{one}.scope")
    world.spawn(f"system.slice/docker-{two}.scope")
    code, _, err = cli("--netns", f"container:{shared}", "conns", "--count")
    assert code == 2 and err.count("\n") == 1 and "ambiguous" in err
    assert one[:12] in err and two[:12] in err
    code, _, err = cli("--netns", "container:ffffffffffff0000", "conns", "--count")
    assert code == 2 and err.count("\n") == 1 and "no running container" in err and one[:12] in err
    code, _, err = cli("--netns", f"pod:{pod_uid()}", "conns", "--count")
    assert code == 2 and err.count("\n") == 1 and "no running pod" in err
    code, _, err = cli("--netns", "inode:abc", "conns", "--count")
    assert code == 2 and err.count("\n") == 1 and "numeric inode" in err
    code, _, err = cli("--netns", "inode:12345", "conns", "--count")
    assert code == 2 and err.count("\n") == 1 and "no network namespace has inode 12345" in err
    code, _, err = cli("--netns", "container:", "conns", "--count")
    assert code == 2 and err.count("\n") == 1


def test_vanished_processes_are_skipped_not_fatal(world):
    """A process that exits between the /proc listing and its read is counted, not fatal."""
    from portscope import namespaces

    pid = world.spawn(None)
    real_listdir = os.listdir

    def listdir_then_kill(path):
        names = real_listdir(path)
        if path == "/proc":
            for p in world.procs:
                p.kill()
                p.wait(5)
        return names
    os.listdir = listdir_then_kill
    try:
        d = namespaces.discover()
    finally:
        os.listdir = real_listdir
    assert d.vanished >= 1
    assert all(pid not in ns.pids for ns in d.namespaces)


def test_unreadable_processes_are_counted_and_said_not_fatal(world, nobody_portscope):
    """As `nobody`, other users' namespace links are unreadable (EACCES, as with hidepid=1):
    counted, said in a warning, exit 0, no traceback; bind-mounted namespaces still found."""
    import shutil
    import subprocess
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux)")
    pid = world.spawn(None)
    name = world.attach(pid)
    # nobody cannot reach a checkout in a private directory: the session's own runtime
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *nobody_portscope,
                        "namespaces", "--json"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    d = json.loads(r.stdout)
    assert d["unreadable_processes"] >= 2                 # at least our root-owned helper and pytest
    assert any("could not be read" in w for w in d["warnings"])
    assert any(name in n["names"] for n in d["namespaces"])          # its bind mount
    assert not any(pid in n["pids"] for n in d["namespaces"])
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *nobody_portscope,
                        "namespaces"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr.startswith("portscope: warning:") and "unreadable" in r.stdout
