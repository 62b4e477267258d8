"""The BPF TCP iterator (sockets/tcpiter.py) against sock_diag and ss, in namespaces made here.

The iterator replaces sock_diag's two walks (AUTO, then not AUTO) for TCP when the AUTO bit
is wanted; whatever it reads must be what sock_diag reads: every row, column by column (the
auto-bound code, TIME_WAIT sub-states, request sockets' SYN_RECV with uid and inode 0,
v4-mapped addresses, inodes), under every filter read_table passes on (states, local port
range, family, model_auto). The sockets are made by a process inside the namespace; the
request sockets by dropping the handshake's last ACK with an nft rule of that namespace.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import needs_netns, stop_process

pytestmark = needs_netns

_HOLDER = r'''
import socket, sys
keep = []
def listener(fam, addr, port, reuse=False):
    s = socket.socket(fam)
    if reuse:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port)); s.listen(64); keep.append(s); return s
L = listener(socket.AF_INET, "127.0.0.1", 5000, reuse=True)
L6 = listener(socket.AF_INET6, "::", 5001)
LQ = listener(socket.AF_INET, "127.0.0.1", 5002)       # its handshakes never finish (nft drops the ACK)
# the ports chosen by number are bound before any connect(): connect() draws from the same
# (default) range and could otherwise take one of them first (bind: EADDRINUSE)
bound = []
for i in range(4):
    c = socket.socket(); c.bind(("127.0.0.1", 40100 + i)); bound.append(c)
b = socket.socket(); b.bind(("127.0.0.1", 40200)); keep.append(b)
for _ in range(12):                                    # kernel-chosen ports, and their accepted peers
    keep.append(socket.create_connection(("127.0.0.1", 5000))); keep.append(L.accept()[0])
for c in bound:                                        # ports the program chose: bind lock
    c.connect(("127.0.0.1", 5000))
    keep.append(c); keep.append(L.accept()[0])
for _ in range(3):                                     # IPv6, and IPv4 through a v6 listener (v4-mapped)
    keep.append(socket.create_connection(("::1", 5001))); keep.append(L6.accept()[0])
    keep.append(socket.create_connection(("127.0.0.1", 5001))); keep.append(L6.accept()[0])
for _ in range(6):                                     # TIME_WAIT on the side that closes first
    c = socket.create_connection(("127.0.0.1", 5000)); a = L.accept()[0]; c.close(); a.close()
for _ in range(3):                                     # FIN_WAIT2 (a timewait socket) and CLOSE_WAIT
    c = socket.create_connection(("127.0.0.1", 5000)); a = L.accept()[0]; c.close(); keep.append(a)
for _ in range(3):                                     # request sockets (NEW_SYN_RECV)
    c = socket.socket(); c.setblocking(False); c.connect_ex(("127.0.0.1", 5002)); keep.append(c)
b = socket.socket(); b.bind(("127.0.0.1", 0)); keep.append(b)          # BOUND_INACTIVE (40200 too)
print("READY", flush=True)
sys.stdin.read()
'''


@pytest.fixture
def populated(netns):
    if not shutil.which("nft"):
        pytest.skip("nft (nftables) not installed: request sockets need an nft rule in the namespace")
    netns.run("nft", "add table inet t")
    netns.run("nft", "add chain inet t in { type filter hook input priority 0 ; }")
    netns.run("nft", "add rule inet t in tcp dport 5002 tcp flags & (syn | ack) == ack drop")
    p = subprocess.Popen(["ip", "netns", "exec", netns.name, sys.executable, "-c", _HOLDER],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().startswith("READY")
        # every kind is there before the reads start (ss is the ground truth)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            kinds = {r[0] for r in netns.ss("-tan")}
            if {"SYN-RECV", "TIME-WAIT", "FIN-WAIT-2", "CLOSE-WAIT", "ESTAB", "LISTEN"} <= kinds:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"the namespace did not reach every state: {kinds}")
        yield netns
    finally:
        p.kill()
        p.wait()


def _rows(t) -> list[tuple]:
    return sorted((t.proto[i], t.family[i], t.state[i], t.local_addr[i], t.local_port[i], t.remote_addr[i],
                   t.remote_port[i], t.uid[i], t.inode[i], t.auto_bound[i]) for i in range(len(t)))


def _read(ns, monkeypatch, reader: str, **kw):
    from portscope import netns as nsmod
    from portscope.sockets import netlink
    monkeypatch.setenv("PORTSCOPE_TCP_READER", reader)
    with nsmod.entered(ns.name):
        return netlink.read_table(("tcp", "udp"), kw.pop("families", (4, 6)), set(range(1, 14)),
                                  kw.pop("sport", None), auto=True, **kw)


def _iterator_or_fail():
    from portscope.sockets import tcpiter
    tcpiter.forget()
    try:
        tcpiter.reader(2, None, 0, False)
    except tcpiter.Unavailable as e:
        if os.geteuid() == 0 and os.path.exists("/sys/kernel/btf/vmlinux"):
            pytest.fail(f"root with BTF, yet the iterator did not load: {e}")
        pytest.skip(f"no BPF TCP iterator here: {e}")


@pytest.mark.parametrize("model_auto", [False, True])
def test_iterator_rows_equal_sock_diag(populated, monkeypatch, model_auto):
    from portscope.ports import PortRange
    _iterator_or_fail()
    cases = [dict(), dict(sport=PortRange(1024, 65535)), dict(sport=PortRange(40100, 40200)),
             dict(families=(4,)), dict(families=(6,)), dict(families=(6,), sport=PortRange(5001, 5001))]
    for case in cases:
        diag = _read(populated, monkeypatch, "sock_diag", model_auto=model_auto, **dict(case))
        it = _read(populated, monkeypatch, "", model_auto=model_auto, **dict(case))
        assert not any("sock_diag" in n for n in it.notes), it.notes
        assert _rows(it) == _rows(diag), case
        assert it.listen_ports == diag.listen_ports
    # the whole read really holds every kind, with the codes sock_diag gives them
    from portscope.sockets.table import AUTO_NO, AUTO_UNKNOWN, AUTO_YES
    t = _read(populated, monkeypatch, "", model_auto=model_auto)
    tcp = [r for r in _rows(t) if r[0] == 6]
    by_port = {}
    for r in tcp:
        by_port.setdefault(r[4], []).append(r)
    # (bound-only sockets come back from sock_diag's BOUND_INACTIVE walk as CLOSE, 7)
    assert {r[2] for r in tcp} >= {1, 3, 5, 6, 7, 8, 10}
    assert len(by_port[40200]) == 1 and by_port[40200][0][2] == 7
    assert all(r[9] == AUTO_NO for p in range(40100, 40104) for r in by_port[p] if r[2] == 1)   # bound clients
    syn = [r for r in tcp if r[2] == 3]
    assert len(syn) == 3 and all(r[7] == 0 and r[8] == 0 and r[9] == AUTO_UNKNOWN for r in syn)
    clients = [r for r in tcp if r[2] == 1 and r[6] == 5000 and r[4] not in range(40100, 40104)]
    assert len(clients) == 12 and all(r[9] == AUTO_YES and r[8] > 0 for r in clients)
    # ground truth: ss counts the same TCP sockets per state (bound-only ones are ss -B's)
    names = {1: "ESTAB", 3: "SYN-RECV", 5: "FIN-WAIT-2", 6: "TIME-WAIT", 8: "CLOSE-WAIT", 10: "LISTEN"}
    ss_rows = populated.ss("-tan")
    for code, name in names.items():
        assert sum(r[2] == code for r in tcp) == sum(r[0] == name for r in ss_rows), name


def test_without_inodes_only_the_inode_column_differs(populated, monkeypatch):
    # inodes=False (pressure, the exporter) leaves out the one read per socket that needs
    # two more cache lines: every other column equals sock_diag's, every TCP inode is 0
    _iterator_or_fail()
    diag = _read(populated, monkeypatch, "sock_diag", model_auto=True)
    lean = _read(populated, monkeypatch, "", model_auto=True, inodes=False)
    full = _read(populated, monkeypatch, "", model_auto=True)
    assert not any("sock_diag" in n for n in lean.notes), lean.notes

    def without_inode(t):
        return sorted(r[:8] + r[9:] for r in _rows(t))
    assert without_inode(lean) == without_inode(diag)
    # bound-only TCP sockets still come from sock_diag, with their inodes
    tcp = [r for r in _rows(lean) if r[0] == 6]
    assert [r[8] for r in tcp if r[2] != 7] == [0] * sum(1 for r in tcp if r[2] != 7)
    assert any(r[8] for r in _rows(full) if r[0] == 6 and r[2] == 1)      # the full read has them
    assert all(r[8] for r in _rows(lean) if r[0] == 17)                   # UDP: sock_diag's, untouched


def test_pressure_json_is_the_same_through_either_reader(populated):
    import json
    env = dict(os.environ)
    outs = []
    for reader in ("", "sock_diag"):
        env["PORTSCOPE_TCP_READER"] = reader
        p = subprocess.run([sys.executable, "-m", "portscope", "pressure", "--json", "--netns", populated.name],
                           capture_output=True, text=True, env=env, timeout=60)
        assert p.returncode in (0, 1), p.stderr
        doc = json.loads(p.stdout)
        for k in ("generated_at", "read_seconds"):
            doc.pop(k, None)
        outs.append(doc)
    assert outs[0] == outs[1]
    assert outs[0]["destinations"], "the namespace's clients make destinations"


def test_a_refused_iterator_falls_back_to_sock_diag_with_a_note(populated, monkeypatch):
    from portscope.sockets import tcpiter
    diag = _read(populated, monkeypatch, "sock_diag", model_auto=True)
    tcpiter.forget()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)     # reader() refuses a non-root caller
    try:
        t = _read(populated, monkeypatch, "", model_auto=True)
    finally:
        monkeypatch.undo()
        tcpiter.forget()
    assert _rows(t) == _rows(diag)
    assert any("TCP read with sock_diag: not root" in n for n in t.notes), t.notes


def test_a_failed_read_midway_drops_its_rows_and_reads_sock_diag(populated, monkeypatch):
    from portscope.sockets import tcpiter
    _iterator_or_fail()
    diag = _read(populated, monkeypatch, "sock_diag", model_auto=False)
    real = tcpiter.Reader.batches

    def broken(self):
        it = real(self)
        yield next(it)[: 3 * tcpiter.RECORD]          # some rows went onto the table, then:
        raise tcpiter.Unavailable("reading the TCP iterator: test failure")
    monkeypatch.setattr(tcpiter.Reader, "batches", broken)
    t = _read(populated, monkeypatch, "", model_auto=False)
    monkeypatch.undo()
    tcpiter.forget()
    assert _rows(t) == _rows(diag)
    assert any("test failure" in n for n in t.notes)


def test_layout_cache_is_written_read_and_checked(tmp_path, monkeypatch):
    from portscope.observe import btf
    from portscope.sockets import tcpiter
    if not os.path.exists(btf.VMLINUX):
        pytest.skip(f"no kernel BTF ({btf.VMLINUX})")
    fresh = tcpiter.layout(cache_dir=None)
    assert fresh.off["userlocks"] > fresh.off["dport"] and fresh.func_id > 0
    got = tcpiter.layout(cache_dir=str(tmp_path))
    path = tmp_path / "tcpiter-v1"
    assert path.exists() and got.words() == fresh.words()
    # from the cache: the BTF is not parsed again
    monkeypatch.setattr(btf, "load", lambda *a: (_ for _ in ()).throw(AssertionError("BTF parsed")))
    assert tcpiter.layout(cache_dir=str(tmp_path)).words() == fresh.words()
    monkeypatch.undo()
    # another kernel's numbers, or garbage, are not used: parsed again and rewritten
    for text in ("some other kernel\n1 2 3\n", "garbage"):
        path.write_text(text)
        assert tcpiter.layout(cache_dir=str(tmp_path)).words() == fresh.words()
        assert path.read_text().split("\n")[1].split() == [str(w) for w in fresh.words()]


def test_readers_kept_loaded_are_bounded(populated, monkeypatch):
    """An exporter whose port range changes gets a program per range: at most MAX_READERS
    stay loaded, the oldest closed, and every reader still reads what sock_diag reads."""
    from portscope.ports import PortRange
    from portscope.sockets import tcpiter
    _iterator_or_fail()
    tcpiter.forget()
    first = None
    for k in range(tcpiter.MAX_READERS + 3):
        sport = PortRange(1024, 65535 - k)
        it = _read(populated, monkeypatch, "", model_auto=True, sport=sport)
        assert _rows(it) == _rows(_read(populated, monkeypatch, "sock_diag", model_auto=True, sport=sport))
        first = first or next(iter(tcpiter._readers.values()))
    assert len(tcpiter._readers) == tcpiter.MAX_READERS
    assert first not in tcpiter._readers.values() and not first.objects.fds   # closed
    with pytest.raises(tcpiter.Unavailable):
        list(first.batches())
    tcpiter.forget()


def test_concurrent_first_reads_load_one_program(populated, monkeypatch):
    """An exporter's first scrapes may read at once: each filter set is loaded once, and
    every thread reads the same rows."""
    import threading

    from portscope.sockets import tcpiter
    _iterator_or_fail()
    tcpiter.forget()
    loads = []
    real = tcpiter.Reader.__init__

    def counted(self, *a, **kw):
        loads.append(a)
        real(self, *a, **kw)
    monkeypatch.setattr(tcpiter.Reader, "__init__", counted)
    monkeypatch.setenv("PORTSCOPE_TCP_READER", "")
    from portscope import netns as nsmod
    from portscope.sockets import netlink
    out, errors = [], []
    go = threading.Barrier(6)

    def read():
        try:
            go.wait(10)
            with nsmod.entered(populated.name):
                out.append(_rows(netlink.read_table(("tcp",), (4, 6), set(range(1, 14)), None,
                                                    auto=True, model_auto=True)))
        except Exception as e:      # reported below, with the thread's own words
            errors.append(e)
    threads = [threading.Thread(target=read) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    monkeypatch.undo()
    tcpiter.forget()
    assert not errors and len(out) == 6, errors
    assert len(loads) == 1
    assert all(rows == out[0] for rows in out) and out[0]


_PAIRS = r'''
import resource, signal, socket, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
l = socket.socket(); l.bind(("127.0.0.1", 5100)); l.listen(4096)
keep = [l]
for _ in range(int(sys.argv[1])):
    c = socket.create_connection(("127.0.0.1", 5100)); a, _ = l.accept(); keep += [c, a]
print("ready", flush=True)
signal.alarm(120)                 # ended by the test; bounded if the test is not there to end it
signal.pause()
'''


def test_one_readv_fills_each_batch(netns, monkeypatch):
    # the kernel gives a read of whole records that fit its seq buffer exactly that much,
    # and a readv() of such pieces all of them in one call: a walk of 4,001 sockets (two
    # batches) takes three calls (two full, one at the end), not one per 32 KiB piece;
    # and the rows are sock_diag's
    from portscope.sockets import tcpiter
    _iterator_or_fail()
    p = netns.start(_PAIRS, "2000")
    try:
        calls: list[tuple[int, int]] = []
        real = os.readv

        def counted(fd, buffers):
            n = real(fd, buffers)
            calls.append((sum(len(b) for b in buffers), n))
            return n
        monkeypatch.setattr(tcpiter.os, "readv", counted)
        it = _read(netns, monkeypatch, "", model_auto=True, families=(4,))
        monkeypatch.setattr(tcpiter.os, "readv", real)
        diag = _read(netns, monkeypatch, "sock_diag", model_auto=True, families=(4,))
        assert not any("sock_diag" in n for n in it.notes), it.notes
        assert _rows(it) == _rows(diag)
        assert sum(r[0] == 6 and r[2] == 1 for r in _rows(it)) == 4000 == len(netns.ss("-tan", "state", "established"))
        assert sum(n for _, n in calls) == 4001 * tcpiter.RECORD
        full = 4001 * tcpiter.RECORD // tcpiter.BATCH_BYTES
        assert full == 1 and len(calls) == full + 2, calls
        assert all(n == asked for asked, n in calls[:full]) and calls[-1][1] == 0, calls
    finally:
        stop_process(p)
