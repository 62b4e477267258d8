"""The eBPF failure counter against what the kernel really did.

Each test makes private namespaces with a 10-port ephemeral range (set only inside them),
runs a client there that records every errno it got, and holds the watcher's counts to the
client's own tally: exact counts per (syscall, errno, dst, dport, comm), the client's
namespace inode (as `ip netns exec NAME readlink /proc/self/ns/net` says) and cgroup id
(the inode of the cgroup v2 directory the client moved itself into). A second namespace
makes the same failures as noise and must not show up under the first one's filter.
"""
from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest
from conftest import needs_netns

pytestmark = needs_netns

CLIENT = r"""
import ctypes, errno, json, os, socket, sys
comm, mode, n, port, fam, cg = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
if cg != "-":
    with open(os.path.join(cg, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))
ctypes.CDLL(None).prctl(15, comm.encode(), 0, 0, 0)          # PR_SET_NAME: the comm BPF sees
af, host = (socket.AF_INET6, "::1") if fam == "6" else (socket.AF_INET, "127.0.0.1")
kind = socket.SOCK_STREAM if mode.startswith("tcp") else socket.SOCK_DGRAM
ok, fails, keep = 0, {}, []
for i in range(n):
    s = socket.socket(af, kind)
    try:
        if mode in ("tcp-connect", "udp-connect"):
            s.connect((host, port))
        elif mode == "tcp-bind":
            s.bind((host, 0))
        elif mode == "udp-sendto":
            s.sendto(b"x", (host, port))
        elif mode == "udp-sendmsg":
            s.sendmsg([b"x"], [], 0, (host, port))
        ok += 1
        keep.append(s)
    except OSError as e:
        name = errno.errorcode[e.errno]
        fails[name] = fails.get(name, 0) + 1
        s.close()
print(json.dumps({"ok": ok, "fails": fails, "pid": os.getpid()}))
"""

LISTENER = r"""
import socket, sys, time
fam = sys.argv[1]
s = socket.socket(socket.AF_INET6 if fam == "6" else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::1" if fam == "6" else "127.0.0.1", 5000))
s.listen(128)
print("up", flush=True)
time.sleep(60)
"""

PORT = 5000


def _bpf_fds() -> int:
    """BPF maps, programs and perf events this process holds (by /proc/self/fd link)."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link in ("anon_inode:bpf-map", "anon_inode:bpf-prog", "anon_inode:[perf_event]"):
            n += 1
    return n


def _scene(ns, fam="4"):
    ns.sysctl("net.ipv4.ip_local_port_range", "40000 40009")
    p = ns.popen(ns_python(), "-c", LISTENER, fam, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "up"
    return p


def ns_python():
    import sys
    return sys.executable


def _client(ns, comm, mode, fam="4", n=30, cgroup="-"):
    if cgroup == "-":
        out = ns.python(CLIENT, comm, mode, str(n), str(PORT), fam, cgroup)
    else:
        # `ip netns exec` mounts a fresh /sys without the cgroup tree: enter the namespace
        # with nsenter, which leaves the mounts alone
        out = subprocess.run(["nsenter", f"--net=/run/netns/{ns.name}", ns_python(), "-c", CLIENT, comm,
                              mode, str(n), str(PORT), fam, cgroup], capture_output=True, text=True,
                             check=True, timeout=60)
    return json.loads(out.stdout)


def _inode(ns) -> int:
    return int(ns.run("readlink", "/proc/self/ns/net").stdout.strip()[5:-1])


@pytest.fixture
def cgroup_dir():
    root = "/sys/fs/cgroup/unified" if os.path.ismount("/sys/fs/cgroup/unified") else "/sys/fs/cgroup"
    if not os.path.exists(os.path.join(root, "cgroup.procs")):
        pytest.skip("no cgroup v2 hierarchy to make a test cgroup in")
    path = os.path.join(root, f"pstest-{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    try:
        yield path
    finally:
        os.rmdir(path)


# "regs": exit programs read the arguments from pt_regs (kernel 5.15+, the default here);
# "stash": entry programs stash them (the fallback for older kernels). Both are held to the kernel.
MODES = ["regs", "stash"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fam", ["4", "6"])
def test_connect_eaddrnotavail_exact_and_other_namespaces_filtered(netns_factory, cgroup_dir, fam, mode):
    from portscope.observe.watch import Watcher
    a, b = netns_factory(), netns_factory()
    la, lb = _scene(a, fam), _scene(b, fam)
    try:
        with Watcher(netns=a.name, mode=mode) as w:
            assert w.backend == "bpf", w.bpf_note
            assert w.counter.mode == mode
            start = w.snapshot()
            got_b = _client(b, "ps-noise", "tcp-connect", fam)      # same comm pattern, same dst: noise
            got_a = _client(a, "ps-client", "tcp-connect", fam, cgroup=cgroup_dir)
            obs = w.observe(start, w.snapshot())
            everyone = w.counter.read()
    finally:
        la.kill(), lb.kill()
    assert got_a["ok"] == 10 and got_a["fails"] == {"EADDRNOTAVAIL": 20}
    assert got_b["fails"] == {"EADDRNOTAVAIL": 20}
    dst = "::1" if fam == "6" else "127.0.0.1"
    rows = [(f.syscall, f.errno, f.dst, f.dport, f.comm, f.count) for f in obs.failures]
    assert rows == [("connect", "EADDRNOTAVAIL", dst, PORT, "ps-client", 20)]
    f = obs.failures[0]
    assert f.pid == got_a["pid"]
    assert f.netns == _inode(a)
    assert f.cgroup == os.stat(cgroup_dir).st_ino
    # the noise was counted too, under its own namespace
    noise = [r for r in everyone if r.netns == _inode(b)]
    assert [(r.comm, r.count) for r in noise] == [("ps-noise", 20)]
    assert obs.to_json()["failures"][0] == {
        "syscall": "connect", "errno": "EADDRNOTAVAIL", "count": 20, "pid": got_a["pid"],
        "comm": "ps-client", "cgroup": f.cgroup, "netns": f.netns, "dst": dst, "dport": PORT}
    assert [x.id for x in obs.findings] == ["connect-failures"]
    assert f"to {'[' + dst + ']' if fam == '6' else dst}:{PORT}" in obs.findings[0].message


@pytest.mark.parametrize("how", MODES)
@pytest.mark.parametrize("mode,syscall,errno_name", [
    ("tcp-bind", "bind", "EADDRINUSE"),
    ("udp-sendto", "sendto", "EAGAIN"),
    ("udp-sendmsg", "sendmsg", "EAGAIN"),
    ("udp-connect", "connect", "EAGAIN"),
])
def test_bind_and_udp_autobind_exact(netns_factory, mode, syscall, errno_name, how):
    """bind(port 0) on a full range fails with EADDRINUSE; UDP autobind (sendto/sendmsg/connect
    on an unbound socket) with EAGAIN: the kernel's inet_autobind returns -EAGAIN."""
    from portscope.observe.watch import Watcher
    a, b = netns_factory(), netns_factory()
    a.sysctl("net.ipv4.ip_local_port_range", "40000 40009")
    b.sysctl("net.ipv4.ip_local_port_range", "40000 40009")
    with Watcher(netns=a.name, mode=how) as w:
        assert w.counter.mode == how
        start = w.snapshot()
        noise = _client(b, "ps-noise", mode)
        got = _client(a, "ps-client", mode)
        obs = w.observe(start, w.snapshot())
    assert got["ok"] == 10 and got["fails"] == {errno_name: 20}
    assert noise["fails"] == {errno_name: 20}
    want_port = 0 if mode == "tcp-bind" else PORT
    assert [(f.syscall, f.errno, f.dst, f.dport, f.comm, f.count) for f in obs.failures] == [
        (syscall, errno_name, "127.0.0.1", want_port, "ps-client", 20)]
    ids = {x.id for x in obs.findings}
    assert ids == ({"bind-failures"} if mode == "tcp-bind" else {"udp-autobind-failures"})


@pytest.mark.parametrize("how", MODES)
def test_successful_calls_count_nothing(netns, how):
    """A roomy range: 30 connects and 30 UDP sends all succeed, nothing is counted."""
    from portscope.observe.watch import Watcher
    lst = _scene(netns)
    netns.sysctl("net.ipv4.ip_local_port_range", "40000 40999")
    try:
        with Watcher(netns=netns.name, mode=how) as w:
            start = w.snapshot()
            a = _client(netns, "ps-client", "tcp-connect")
            b = _client(netns, "ps-client", "udp-sendto")
            obs = w.observe(start, w.snapshot())
    finally:
        lst.kill()
    assert a == {**a, "ok": 30, "fails": {}} and b["ok"] == 30
    assert obs.failures == [] and obs.findings == []


def test_every_bpf_object_closed_on_every_exit_path(netns, monkeypatch):
    from portscope.observe import bpf, programs
    from portscope.observe.loader import FailureCounter, LoadError
    from portscope.observe.watch import Watcher
    base = _bpf_fds()
    with FailureCounter() as fc:
        # this kernel (5.15+): 1 map, 4 exit programs, 4 perf events
        assert fc.mode == "regs" and _bpf_fds() - base == 9
        assert fc.read() == []
    assert _bpf_fds() == base
    with FailureCounter(mode="stash") as fc:
        # older kernels: 2 maps, 8 programs, 8 perf events
        assert _bpf_fds() - base == 18
    assert _bpf_fds() == base

    # Ctrl-C during the window
    def interrupted(_s):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt) as ei:
        with Watcher(netns=netns.name) as w:
            assert w.backend == "bpf"
            w.window(5, sleep=interrupted)
    assert ei.value.observation.backend == "bpf"
    assert _bpf_fds() == base

    # Ctrl-C half-way through loading (after some programs are attached)
    calls = {"n": 0}
    real = bpf.Objects.attach_tracepoint

    def attach_then_interrupt(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, *a, **k)
    monkeypatch.setattr(bpf.Objects, "attach_tracepoint", attach_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        FailureCounter().start()
    assert calls["n"] == 3 and _bpf_fds() == base
    monkeypatch.undo()

    # the verifier refuses a program: LoadError names it and carries the log
    real_exit = programs.exit_program

    def bad_exit(sc, *a, **k):
        code = real_exit(sc, *a, **k)
        if sc.name == "bind":
            code = bytes([0x79, 0x02, 0, 0, 0, 0, 0, 0]) + code   # r2 = *(u64 *)(r0 + 0): r0 unset
        return code
    monkeypatch.setattr(programs, "exit_program", bad_exit)
    with pytest.raises(LoadError) as le:
        FailureCounter().start()
    assert le.value.program == "ps_out_bind"
    assert "R0 !read_ok" in le.value.log
    assert _bpf_fds() == base


def test_load_is_fast():
    """Start-up well under a second: BTF offsets, tracefs, 2 maps, 8 programs, 8 attachments.
    Counted in this process's CPU time (user + system: the verifier runs in our syscalls),
    which other work on the machine does not stretch as it does the wall clock (measured
    here: 6 of 30 wall-clock runs over 1 s with three busy loops beside them)."""
    import time

    from portscope.observe.loader import FailureCounter
    t, cpu = time.monotonic(), time.process_time()
    with FailureCounter():
        took, used = time.monotonic() - t, time.process_time() - cpu
    assert used < 1.0, (used, took)
    assert took < 30, took                    # nothing waits on anything for long either


def test_host_mounts_untouched():
    """tracefs is read through a private mount namespace when the host has not mounted it
    (only tracefs lines are compared: other tests on the machine add /run/netns mounts)."""
    from portscope.observe.loader import FailureCounter

    def tracefs_mounts():
        with open("/proc/self/mountinfo") as f:
            return [line for line in f if " - tracefs " in line]
    before = tracefs_mounts()
    with FailureCounter():
        assert tracefs_mounts() == before
    assert tracefs_mounts() == before


CHURN = r"""
import socket, sys, time
n, hold = int(sys.argv[1]), float(sys.argv[2])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 5001))
srv.listen(128)
def churn(k):
    for i in range(k):
        c = socket.create_connection(("127.0.0.1", 5001), timeout=5)
        a, _ = srv.accept()
        c.close()            # active close: the client side keeps TIME_WAIT
        a.recv(1)
        a.close()
churn(n)
time.sleep(hold)             # older than tcp_tw_reuse_delay (1 s): connect() may take the TIME_WAIT ports
churn(n)
"""
NSTAT_KEYS = {"TWRecycled": "TcpExtTWRecycled", "TCPTimeWaitOverflow": "TcpExtTCPTimeWaitOverflow",
              "TWKilled": "TcpExtTWKilled"}


def _nstat(ns) -> dict:
    # -a absolute, -s do not touch nstat's history file, -z zeros too
    out = ns.run("nstat", "-asz", *NSTAT_KEYS.values()).stdout
    vals = {line.split()[0]: int(line.split()[1]) for line in out.splitlines() if line and not line.startswith("#")}
    return {k: vals[v] for k, v in NSTAT_KEYS.items()}


def test_counters_equal_nstat_and_ss(netns):
    """TIME_WAIT churn in a namespace with 10 ports, tcp_tw_reuse on and room for only 4
    TIME_WAIT sockets: TWRecycled and TCPTimeWaitOverflow move, and the watcher's deltas are
    nstat's deltas over the same window; `tw` is what ss counts in TIME-WAIT."""
    import shutil

    from portscope.observe.watch import Watcher
    if not shutil.which("nstat"):
        pytest.skip("nstat (iproute2) not installed")
    netns.sysctl("net.ipv4.ip_local_port_range", "40000 40009")
    netns.sysctl("net.ipv4.tcp_tw_reuse", "1")
    netns.sysctl("net.ipv4.tcp_max_tw_buckets", "4")
    with Watcher(netns=netns.name, bpf=False) as w:
        n0 = _nstat(netns)
        start = w.snapshot()
        netns.python(CHURN, "10", "1.3")
        obs = w.observe(start, w.snapshot())
        n1 = _nstat(netns)
    want = {k: n1[k] - n0[k] for k in NSTAT_KEYS}
    got = {k: obs.counters[k] for k in NSTAT_KEYS}
    assert got == want
    assert got["TWRecycled"] > 0 and got["TCPTimeWaitOverflow"] > 0
    ss = netns.run("ss", "-Htan", "state", "time-wait").stdout.splitlines()
    assert obs.counters["tw"] == len(ss) <= 4
    assert obs.counters["tcp_max_tw_buckets"] == 4
    ids = [f.id for f in obs.findings]
    assert ids == ["tw-bucket-overflow", "tw-recycling"]
    assert f"{got['TCPTimeWaitOverflow']} sockets skipped TIME_WAIT" in obs.findings[0].message
    assert obs.findings[0].remedy.startswith(f"ip netns exec {netns.name} sysctl -w net.ipv4.tcp_max_tw_buckets=")
