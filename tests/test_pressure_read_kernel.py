"""pressure's own read (snapshot_in_range: the AUTO bit only where the model reads it, one
BOUND_INACTIVE walk, one UDP walk per family, mixed-length chunks split in C) against the
full read that asks the kernel's AUTO test of every socket, and against `ss`, in a private
namespace holding every kind of socket the model tells apart; the exporter's read (every
port, the same AUTO rule) likewise."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from conftest import DESTS, Driver

from portscope import exporter
from portscope.host import facts as host_facts
from portscope.netns import entered
from portscope.pressure import READ_STATE_NAMES, READ_STATES, SNAPSHOT_PROTOS, analyze, snapshot_in_range, usable_ports
from portscope.sockets import ALL_PROTOS, netlink, snapshot
from portscope.sockets.table import AUTO_NO, AUTO_UNKNOWN, PROTO_TCP, STATE_NAMES


def _rows(t) -> Counter:
    return Counter(zip(t.proto, t.state, t.local_addr, t.local_port, t.remote_addr, t.remote_port, t.inode))


def _populate(netns, drive) -> None:
    """Every kind of socket the model tells apart (the counts below are asserted on)."""
    for p in (5001, 5002, 40500):                       # one listener inside the range
        drive(op="listen", port=p, serve=p == 5001)
    # (before anything takes ports of the range)
    for k in range(4):                                   # bound by number: AUTO no
        assert drive(op="open", dests=DESTS[1:], mode="bind", n=1, lport=40600 + k)["opened"] == [1]
    assert drive(op="open", dests=DESTS[:1], mode="bindonly", n=2, lport=40700)["opened"][0] >= 1
    assert drive(op="open", dests=DESTS, n=40)["opened"] == [20, 20]
    assert drive(op="open", dests=DESTS[:1], mode="bind", n=6)["opened"] == [6]      # bind(0)
    assert drive(op="open", dests=DESTS[:1], mode="nobind", n=3)["opened"] == [3]
    assert drive(op="open", dests=DESTS[:1], mode="bindonly", n=4)["opened"] == [4]
    assert drive(op="churn", dests=DESTS[:1], n=30)["opened"] == [30]   # TIME_WAIT
    assert drive(op="open", dests=[["127.0.0.1", 0]], mode="udp", n=5)["opened"] == [5]
    assert drive(op="open", dests=[["127.0.0.1", 5001]], mode="udp", n=5)["opened"] == [5]


@pytest.fixture
def populated(netns):
    """The namespace with _populate()'s sockets, and its host facts."""
    netns.sysctl("net.ipv4.ip_local_port_range", "40000 40999")
    drive = Driver(netns)
    try:
        _populate(netns, drive)
        yield netns, host_facts(netns.name)
    finally:
        drive.close()


def test_pressure_read_equals_the_full_read(populated):
    netns, f = populated
    mine = snapshot_in_range(f, netns.name)
    with entered(netns.name):
        full = netlink.read_table(SNAPSHOT_PROTOS, (4, 6), READ_STATES, f.ephemeral, auto=True)
    assert mine.backend == "netlink"
    assert _rows(mine) == _rows(full)
    # the AUTO bit agrees wherever the read kept it: TCP sockets with a remote port
    auto_full = {(i, p): a for i, p, a in zip(full.inode, full.local_port, full.auto_bound)}
    kept = 0
    for pr, rp, i, p, a in zip(mine.proto, mine.remote_port, mine.inode, mine.local_port, mine.auto_bound):
        if pr == PROTO_TCP and rp:
            assert a == auto_full[(i, p)]
            kept += 1
        else:
            assert a == AUTO_UNKNOWN
    assert kept >= 6 + 4 + 3 + 40 + 30
    assert sum(1 for pr, a in zip(mine.proto, mine.auto_bound) if pr == PROTO_TCP and a == AUTO_NO) == 4
    # the bound-only sockets came once, from the one BOUND_INACTIVE walk
    def bound_only(t):
        return sum(1 for pr, s, rp in zip(t.proto, t.state, t.remote_port) if pr == PROTO_TCP and not rp and s != 10)
    assert bound_only(mine) == bound_only(full) == 5
    assert json.dumps(analyze(f, mine).to_json()) == json.dumps(analyze(f, full).to_json())
    # and ss sees the same TCP connections in the range (ss -tan lists no bound-only socket)
    out = netns.run("ss", "-tanH", "sport", ">=", ":40000", "sport", "<=", ":40999").stdout
    ss_name = {"ESTAB": "ESTABLISHED", "TIME-WAIT": "TIME_WAIT"}
    ss_rows = Counter(ss_name.get(w, w) for w in (line.split()[0] for line in out.splitlines() if line.strip()))
    assert ss_rows == Counter(STATE_NAMES[s] for pr, s, rp in zip(mine.proto, mine.state, mine.remote_port)
                              if pr == PROTO_TCP and (rp or s == 10)), ss_rows


def test_exporter_read_equals_the_full_read(populated):
    # the exporter reads every socket (no port filter) with the AUTO bit only where the
    # model reads it: the same rows, counts, pool use and pressure as the read that asks
    # the kernel's AUTO test of every socket (two bind-hash walks, AUTO=no UDP walks)
    netns, f = populated
    mine = exporter.read_table(netns.name)
    full = snapshot(ALL_PROTOS, states=READ_STATE_NAMES, netns=netns.name, classify=False, auto=True)
    assert mine.backend == full.backend == "netlink"
    # the exporter asks for no inodes (the iterator then leaves TCP's at 0): every other
    # column, the AUTO code included, row for row as the full read has it
    def rows(t, keep_auto):
        return Counter((*r[:6], a if keep_auto(pr, rp) else AUTO_UNKNOWN)
                       for r, pr, rp, a in zip(zip(t.proto, t.state, t.local_addr, t.local_port, t.remote_addr,
                                                   t.remote_port), t.proto, t.remote_port, t.auto_bound))
    assert rows(mine, lambda pr, rp: True) == rows(full, lambda pr, rp: pr == PROTO_TCP and rp)
    assert exporter.socket_counts(mine) == exporter.socket_counts(full)
    usable = usable_ports(f.ephemeral, f.reserved)
    assert exporter.ports_in_use(mine, usable) == exporter.ports_in_use(full, usable)
    assert json.dumps(analyze(f, mine).to_json()) == json.dumps(analyze(f, full).to_json())
    # the bound-by-number clients are there, with their bit
    assert sum(1 for pr, a in zip(mine.proto, mine.auto_bound) if pr == PROTO_TCP and a == AUTO_NO) == 4
