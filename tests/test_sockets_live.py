"""The socket table against the real kernel: every backend vs `ss -tuanH`, in a private namespace.

tests/samples/procfs/scenario.py builds every kind of socket (listener, both ends of
established v4/v6/v4-mapped, bind-before-connect, TIME_WAIT, FIN_WAIT2/CLOSE_WAIT,
SYN_SENT to a full accept queue, SYN_RECV from an unanswered raw SYN, UDP connected
and unconnected, UDP-Lite) inside a namespace this module creates and always deletes.
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys

import pytest

from test_sockets_samples import as_set, parse_ss

from portscope.ports import PortRange
from portscope.sockets import netlink, snapshot
from portscope.sockets.table import (
    AUTO_NO, AUTO_UNKNOWN, AUTO_YES, EPH_LOCAL, EPH_NONE, EPH_REMOTE, METHOD_KERNEL,
)

pytestmark = pytest.mark.netns

SCENARIO = os.path.join(os.path.dirname(__file__), "samples", "procfs", "scenario.py")
BACKENDS = ("netlink", "procfs", "psutil")
ROW_KEYS = {"proto", "family", "state", "local_addr", "local_port", "remote_addr", "remote_port",
            "uid", "inode", "ephemeral", "ephemeral_method"}


class World:
    def __init__(self, ns, proc):
        self.ns, self.proc, self.name, self.pid = ns, proc, ns.name, proc.pid

    def ss(self, *extra: str, flags: str = "-tuanH", state: str | None = None, netid: str | None = None) -> set:
        return parse_ss(self.ns.run("ss", flags, *extra).stdout, state, netid)

    def stable(self, read, *ss_args: str, **kw):
        """(read(), ss) from a moment when ss saw the same before and after the read:
        the scenario adds a TIME_WAIT every 20 s and old ones expire."""
        for _ in range(5):
            before = self.ss(*ss_args, **kw)
            got = read()
            if self.ss(*ss_args, **kw) == before:
                return got, before
        pytest.fail("the namespace kept changing under the read")


@pytest.fixture(scope="module")
def world(module_netns):
    ns = module_netns
    proc = None
    try:
        proc = ns.popen(sys.executable, SCENARIO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True)
        r, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if r else ""
        if "READY" not in line:
            proc.kill()
            pytest.fail(f"scenario did not start: {line!r} {proc.stderr.read()[-800:]}")
        yield World(ns, proc)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(10)
            for s in (proc.stdin, proc.stdout, proc.stderr):
                s.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_equals_ss(world, backend):
    table, before = world.stable(lambda: snapshot(("tcp", "udp"), netns=world.name, backend=backend))
    assert table.backend == backend
    got = as_set(table)
    assert got == before
    states = {s for _, s, *_ in got}
    assert {"LISTEN", "ESTABLISHED", "TIME_WAIT", "SYN_SENT", "SYN_RECV", "FIN_WAIT2",
            "CLOSE_WAIT", "CLOSE"} <= states
    assert any(r[2].startswith("::ffff:") for r in got) and any(r[2] == "::1" for r in got)


@pytest.mark.parametrize("backend", BACKENDS)
def test_contract_shape_is_the_same_for_every_backend(world, backend):
    t = snapshot(netns=world.name, backend=backend, owners=True)
    n = len(t)
    assert n > 20
    for col in ("proto", "family", "state", "local_addr", "local_port", "remote_addr", "remote_port",
                "uid", "inode", "ephemeral", "method", "auto_bound", "pid", "command"):
        assert len(getattr(t, col)) == n, col
    for r in t.rows():
        assert ROW_KEYS | {"pid", "command"} <= set(r)
        assert r["family"] in (4, 6) and r["proto"] in ("tcp", "udp", "udplite", "sctp")
        assert len(t.local_addr[0]) in (4, 16)
    assert (6, 8080) in t.listen_ports


def test_udplite_netlink_equals_procfs(world):
    nl = snapshot(("udplite",), netns=world.name, backend="netlink")
    pf = snapshot(("udplite",), netns=world.name, backend="procfs")
    assert as_set(nl, ("udplite",)) == as_set(pf, ("udplite",))
    assert len(nl) == 1


def test_kernel_tells_auto_bound_ports(world):
    t = snapshot(("tcp", "udp"), netns=world.name, backend="netlink")
    by = {(r["proto"], r["state"], r["local_port"], r["remote_port"]): i for i, r in enumerate(t.rows())}

    def find(proto, state, lport=None, rport=None):
        hits = [i for (p, s, lp, rp), i in by.items()
                if p == proto and s == state and lport in (None, lp) and rport in (None, rp)]
        assert hits, (proto, state, lport, rport)
        return hits

    # the program bound 40001 itself: inside the range, yet not ephemeral
    (i,) = find("tcp", "ESTABLISHED", 40001, 8080)
    assert (t.auto_bound[i], t.ephemeral[i], t.method[i]) == (AUTO_NO, EPH_NONE, METHOD_KERNEL)
    # its accepted peer shares the listener's port: the remote side is the ephemeral one
    (i,) = find("tcp", "ESTABLISHED", 8080, 40001)
    assert (t.auto_bound[i], t.ephemeral[i]) == (AUTO_NO, EPH_REMOTE)
    for i in find("tcp", "ESTABLISHED", None, 9090):           # plain connect(): kernel-chosen
        assert (t.auto_bound[i], t.ephemeral[i], t.method[i]) == (AUTO_YES, EPH_LOCAL, METHOD_KERNEL)
    for i in find("tcp", "LISTEN"):
        assert (t.auto_bound[i], t.ephemeral[i]) == (AUTO_NO, EPH_NONE)
    for i in find("tcp", "TIME_WAIT") + find("tcp", "SYN_RECV"):
        assert t.auto_bound[i] == AUTO_UNKNOWN
    (i,) = find("tcp", "SYN_RECV")
    assert t.ephemeral[i] == EPH_REMOTE                         # 45678 is inside the range
    (i,) = find("udp", "CLOSE", 5353)
    assert (t.auto_bound[i], t.ephemeral[i]) == (AUTO_NO, EPH_NONE)
    for i in find("udp", "ESTABLISHED"):
        assert (t.auto_bound[i], t.ephemeral[i]) == (AUTO_YES, EPH_LOCAL)


@pytest.mark.parametrize("backend", ["netlink", "procfs"])
def test_state_and_port_filters_match_ss_filters(world, backend):
    syn = snapshot(("tcp",), netns=world.name, backend=backend, states=["SYN_SENT", "SYN_RECV"])
    assert as_set(syn) == world.ss("state", "syn-sent", "state", "syn-recv")
    assert len(syn) == 3
    rng = PortRange(8000, 8100)
    part, truth = world.stable(lambda: snapshot(("tcp", "udp"), netns=world.name, backend=backend, sport=rng),
                               "sport", ">=", ":8000", "and", "sport", "<=", ":8100")
    assert as_set(part) == truth
    assert len(part) >= 4 and all(8000 <= p <= 8100 for p in part.local_port)
    tw, truth = world.stable(lambda: snapshot(("tcp",), netns=world.name, backend=backend, states=["TIME_WAIT"]),
                             "state", "time-wait", state="TIME-WAIT")
    assert as_set(tw) == truth and len(tw) >= 1
    # the listener is known without LISTEN rows: the client side is the ephemeral one
    assert set(tw.ephemeral) == {EPH_LOCAL}


def test_families(world):
    v6, truth = world.stable(lambda: snapshot(("tcp", "udp"), families=(6,), netns=world.name), "-6")
    assert set(v6.family) == {6}
    assert as_set(v6) == truth


def test_netns_by_pid_is_the_same_namespace(world):
    for _ in range(5):
        by_name = as_set(snapshot(netns=world.name))
        by_pid = as_set(snapshot(netns=f"pid:{world.pid}"))
        if by_pid == by_name:
            break
    assert by_pid == by_name and len(by_name) > 20
    # and our own namespace is untouched by the switch
    assert as_set(snapshot()) != by_name


def test_owners_one_pass(world):
    t = snapshot(netns=world.name, owners=True)
    owned = {t.pid[i] for i in range(len(t)) if t.inode[i]}
    assert owned <= {world.pid, -1}
    held = [r for r in t.rows() if r["pid"] == world.pid]
    with open(f"/proc/{world.pid}/comm") as f:
        comm = f.read().strip()
    assert len(held) > 15 and {r["command"] for r in held} == {comm}
    assert all(r["pid"] is None for r in t.rows() if r["state"] == "TIME_WAIT")
    # ground truth: ss -p names the same process for the same sockets
    out = world.ns.run("ss", "-tuanpH").stdout
    assert f"pid={world.pid}," in out


def test_owners_skip_vanished_and_unreadable_processes(tmp_path):
    import socket
    from portscope.sockets import owners
    a, b = socket.socket(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ino_a, ino_b = os.fstat(a.fileno()).st_ino, os.fstat(b.fileno()).st_ino
        me = f"/proc/{os.getpid()}/fd"
        (tmp_path / "100" / "fd").mkdir(parents=True)
        os.symlink(f"{me}/{a.fileno()}", tmp_path / "100" / "fd" / "3")
        os.symlink("/dev/null", tmp_path / "100" / "fd" / "4")          # not a socket
        os.symlink("/nonexistent/closed", tmp_path / "100" / "fd" / "5")  # closed meanwhile
        (tmp_path / "200").mkdir()                                      # exited: no fd dir
        (tmp_path / "300" / "fd").mkdir(parents=True)
        os.symlink(f"{me}/{a.fileno()}", tmp_path / "300" / "fd" / "9")   # shared with a child
        os.symlink(f"{me}/{b.fileno()}", tmp_path / "300" / "fd" / "10")
        (tmp_path / "self").mkdir()
        assert owners.socket_inodes(str(tmp_path)) == {ino_a: 100, ino_b: 300}
    finally:
        a.close()
        b.close()


def test_fallback_to_procfs_when_netlink_is_refused(world, monkeypatch, cli):
    import errno
    import socket as socketmod

    real = socketmod.socket

    def refuse(family=-1, *a, **kw):
        if family == socketmod.AF_NETLINK:
            raise PermissionError(errno.EPERM, "Operation not permitted")
        return real(family, *a, **kw)

    monkeypatch.setattr(netlink.socket, "socket", refuse)
    t, truth = world.stable(lambda: snapshot(netns=world.name))
    assert t.backend == "procfs" and "EPERM" in t.notes[0]
    assert as_set(t) == truth
    from portscope.errors import Unsupported
    with pytest.raises(Unsupported):
        snapshot(netns=world.name, backend="netlink")
    code, out, err = cli("-v", "conns", "--netns", world.name, "--json")
    assert code == 0 and json.loads(out)["backend"] == "procfs"
    assert "refused" in err and "EPERM" in err


def test_fallback_when_the_kernel_does_not_serve_tcp(world, monkeypatch):
    def missing(*a, **kw):
        raise netlink.ProtocolMissing("ENOENT")
    monkeypatch.setattr(netlink, "_legacy_ok", True)     # restored afterwards: the probe turns it off
    # every dump (whole, batched, counted) goes through dump_chunks
    monkeypatch.setattr(netlink, "dump_chunks", missing)
    t = snapshot(("tcp",), netns=world.name)
    assert t.backend == "procfs" and "tcp_diag" in t.notes[0]
    assert netlink._legacy_ok is False          # no legacy entry point: per family from then on
    from portscope.sockets import count
    monkeypatch.setattr(netlink, "_legacy_ok", True)
    c, ss = world.stable(lambda: count(("tcp",), netns=world.name), flags="-tanH", netid="tcp")
    assert c["backend"] == "procfs" and "tcp_diag" in c["notes"][0] and c["total"] == len(ss)


# --- the CLI --------------------------------------------------------------------------

def test_conns_json_contract(world, cli):
    (code, out, err), truth = world.stable(
        lambda: cli("conns", "--netns", world.name, "--json", "--proto", "tcp,udp"))
    assert code == 0, err
    doc = json.loads(out)
    assert doc["backend"] == "netlink"
    rows = doc["sockets"]
    assert all(ROW_KEYS <= set(r) for r in rows)
    assert {(r["proto"], r["state"], r["local_addr"], r["local_port"], r["remote_addr"], r["remote_port"])
            for r in rows} == truth
    assert {r["ephemeral"] for r in rows} == {"local", "remote", None}


def test_conns_count_matches_ss(world, cli):
    (code, out, _), ss = world.stable(lambda: cli("--json", "--netns", world.name, "conns", "--count",
                                                  "--proto", "tcp"), flags="-tanH", netid="tcp")
    doc = json.loads(out)
    truth = [s for p, s, *_ in ss]
    assert doc["total"] == len(truth)
    assert doc["by_state"] == {s: truth.count(s) for s in set(truth)}
    (code, out, _), ss = world.stable(lambda: cli("conns", "--netns", world.name, "--count"))
    # tcp + udp as ss sees them, plus the one UDP-Lite socket ss does not list
    assert code == 0 and f"{len(ss) + 1}" in out.split()


def test_conns_filters_and_outputs(world, cli):
    code, out, _ = cli("conns", "--netns", world.name, "--json", "--port", "40001")
    ports = {(r["local_port"], r["remote_port"]) for r in json.loads(out)["sockets"]}
    assert ports == {(40001, 8080), (8080, 40001)}
    code, out, _ = cli("conns", "--netns", world.name, "--json", "--listening", "--proto", "tcp")
    assert {r["local_port"] for r in json.loads(out)["sockets"]} == {8080, 9090, 7000, 8443}
    code, out, _ = cli("conns", "--netns", world.name, "--json", "--dst", "10.9.9.0/24")
    assert [r["state"] for r in json.loads(out)["sockets"]] == ["SYN_RECV"]
    code, out, _ = cli("conns", "--netns", world.name, "--json", "--src", "127.0.0.1", "-6", "--proto", "tcp")
    assert {r["local_addr"] for r in json.loads(out)["sockets"]} == {"::ffff:127.0.0.1"}
    code, out, _ = cli("conns", "--netns", world.name, "--json", "--ephemeral", "local", "--state", "established")
    rows = json.loads(out)["sockets"]
    assert rows and all(r["ephemeral"] == "local" and r["state"] == "ESTABLISHED" for r in rows)
    code, out, _ = cli("conns", "--netns", world.name, "--csv", "--process", "--sort", "lport", "--proto", "tcp")
    lines = out.splitlines()
    assert lines[0].startswith("proto,family,state,local_addr,local_port") and lines[0].endswith("pid,command")
    lports = [int(x.split(",")[4]) for x in lines[1:]]
    assert lports == sorted(lports) and len(lports) > 15
    code, out, _ = cli("conns", "--netns", world.name, "--process", "--limit", "3")
    assert code == 0 and len(out.splitlines()) == 4 and "PROCESS" in out.splitlines()[0]


@pytest.mark.parametrize("args, word", [
    (["--port", "70000"], "70000"), (["--state", "BOGUS"], "BOGUS"), (["--dst", "not-an-ip"], "not-an-ip"),
    (["--proto", "icmp"], "icmp"), (["--netns", "no-such-ns-xyz"], "no-such-ns-xyz"),
    (["--csv", "--json"], "--csv"), (["--count", "--process"], "--process"),
])
def test_conns_bad_input_is_one_line_exit_2(cli, args, word):
    code, out, err = cli("conns", *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("portscope: error:") and word in err


def test_one_legacy_walk_equals_per_family_dumps(world, monkeypatch):
    calls = []
    real = netlink._request

    def spy(family, *a):
        calls.append(family)
        return real(family, *a)

    monkeypatch.setattr(netlink, "_request", spy)

    def columns(t):
        return {(r["state"], r["local_addr"], r["local_port"], r["remote_addr"], r["remote_port"],
                 r["ephemeral"], r["ephemeral_method"], r["inode"]) for r in t.rows()}

    legacy, _ = world.stable(lambda: snapshot(("tcp",), netns=world.name))
    assert set(calls) == {netlink.BOTH}               # v4 and v6 came from one walk each
    monkeypatch.setattr(netlink, "_legacy_ok", False)
    calls.clear()
    for _ in range(5):
        per_family = snapshot(("tcp",), netns=world.name)
        if columns(per_family) == columns(legacy):
            break
        legacy = snapshot(("tcp",), netns=world.name)
    assert set(calls) == {4, 6}
    assert columns(per_family) == columns(legacy)
    assert set(legacy.family) == {4, 6}


def test_sctp_rows_join_the_netlink_table(world, monkeypatch):
    import portscope.sockets as sockets_pkg
    from test_sockets_samples import read_sample
    sample = read_sample("sctp/modern", protos=("sctp",))
    monkeypatch.setattr(sockets_pkg, "_procfs", lambda *a: read_sample("sctp/modern", protos=("sctp",)))
    t = snapshot(("tcp", "sctp"), netns=world.name)
    assert t.backend == "netlink"
    rows = list(t.rows())
    sctp = [r for r in rows if r["proto"] == "sctp"]
    assert [r["local_port"] for r in sctp] == list(sample.local_port)
    assert sctp[0]["local_addrs"] == ["10.0.0.102", "10.0.0.70"]          # offsets moved along
    assert sctp[3]["remote_addrs"] == ["10.0.0.77", "10.0.0.109", "172.31.1.9"]
    assert all("local_addrs" not in r for r in rows if r["proto"] == "tcp")
    assert len(rows) == len(t) == len(sample) + sum(1 for r in rows if r["proto"] == "tcp")


@pytest.mark.parametrize("backend", ["netlink", "procfs"])      # psutil counts a snapshot as it is
@pytest.mark.parametrize("families", [(4, 6), (6,)])
def test_count_while_reading_equals_counting_the_table(world, backend, families):
    from portscope.sockets import count
    from portscope.sockets.filters import counts

    def both():
        return (count(("tcp", "udp", "udplite"), families=families, netns=world.name, backend=backend),
                snapshot(("tcp", "udp", "udplite"), families=families, netns=world.name, backend=backend,
                         classify=False))
    (c, table), ss = world.stable(both)
    assert c["backend"] == table.backend == backend
    assert {k: c[k] for k in ("total", "by_proto", "by_state", "by_proto_state")} == counts(table)
    if families == (4, 6):
        assert c["by_proto"]["tcp"] == sum(1 for p, *_ in ss if p == "tcp")
