"""portscope.observe's parsers against kernel files recorded together with nstat and ss
(tests/samples/observe/README.md)."""
from __future__ import annotations

from pathlib import Path

import pytest

from portscope.errors import SystemReadError
from portscope.observe import counters, tracefs

S = Path(__file__).parent / "samples" / "observe"


def _nstat() -> dict:
    out = {}
    for line in (S / "nstat.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            out[line.split()[0]] = int(line.split()[1])
    return out


def test_netstat_tcpext_equals_nstat():
    tcpext = counters.parse_snmp_pairs((S / "netstat.txt").read_text(), "TcpExt")
    ns = _nstat()
    for k in counters.COUNTERS:
        assert tcpext[k] == ns[f"TcpExt{k}"]
    # every TcpExt counter nstat printed, not only ours
    assert {f"TcpExt{k}": v for k, v in tcpext.items()} == {k: v for k, v in ns.items() if k.startswith("TcpExt")}
    assert tcpext["TWRecycled"] == 4 and tcpext["TCPTimeWaitOverflow"] == 12


def test_sockstat_tw_equals_ss():
    tw = counters.parse_sockstat_tw((S / "sockstat.txt").read_text())
    assert tw == len((S / "ss_tw.txt").read_text().splitlines()) == 4


def test_odd_files_are_one_line_errors():
    with pytest.raises(SystemReadError):
        counters.parse_sockstat_tw("sockets: used 3\nUDP: inuse 0 mem 0\n")
    with pytest.raises(SystemReadError):
        counters.parse_sockstat_tw("TCP: inuse 0 orphan 0 tw x alloc 1 mem 1\n")
    with pytest.raises(SystemReadError):
        counters.parse_snmp_pairs("TcpExt: A B\nTcpExt: 1\n", "TcpExt")
    with pytest.raises(SystemReadError):
        counters.parse_snmp_pairs("TcpExt: A\nTcpExt: z\n", "TcpExt")
    assert counters.parse_snmp_pairs("IpExt: A\nIpExt: 1\n", "TcpExt") == {}


@pytest.mark.parametrize("event,want", [
    ("sys_enter_connect", {"fd": 16, "uservaddr": 24, "addrlen": 32}),
    ("sys_exit_connect", {"ret": 16}),
    ("sys_enter_sendto", {"fd": 16, "addr": 48, "addr_len": 56}),
    ("sys_enter_sendmsg", {"fd": 16, "msg": 24}),
    ("sys_enter_bind", {"fd": 16, "umyaddr": 24, "addrlen": 32}),
])
def test_tracepoint_format_offsets(event, want):
    fields = tracefs.parse_format((S / f"{event}.format").read_text())
    assert {k: fields[k][0] for k in want} == want
    assert fields["common_pid"] == (4, 4) and fields["__syscall_nr"] == (8, 4)
