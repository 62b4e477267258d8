"""Socket table from recorded /proc/net samples, the kernel bytecode, the classifier.

No root needed. live/ was recorded by tests/samples/procfs/record.sh on this kernel
(scenario.py in a private namespace) together with `ss -tuanH` at the same moment,
so ss is the ground truth here too. sctp/ samples follow net/sctp/proc.c's formats
(this kernel has no SCTP): modern (HBKT, TAB before HBINT) and older RHEL-era lines.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import struct

import pytest

from portscope.ports import PortRange, PortSet
from portscope.sockets import filters, netlink, procfs, state_codes
from portscope.sockets.table import (
    AUTO_NO, AUTO_UNKNOWN, AUTO_YES, EPH_LOCAL, EPH_NONE, EPH_REMOTE, METHOD_KERNEL,
    METHOD_RANGE, PROTO_SCTP, PROTO_TCP, PROTO_UDP, SocketTable, format_addr,
)

SAMPLES = os.path.join(os.path.dirname(__file__), "samples", "procfs")

SS_STATES = {
    "ESTAB": "ESTABLISHED", "UNCONN": "CLOSE", "SYN-SENT": "SYN_SENT", "SYN-RECV": "SYN_RECV",
    "FIN-WAIT-1": "FIN_WAIT1", "FIN-WAIT-2": "FIN_WAIT2", "TIME-WAIT": "TIME_WAIT",
    "CLOSE-WAIT": "CLOSE_WAIT", "LAST-ACK": "LAST_ACK", "LISTEN": "LISTEN", "CLOSING": "CLOSING",
}


def _ss_endpoint(text: str) -> tuple[str, int]:
    addr, _, port = text.rpartition(":")
    addr = addr.split("%")[0]                     # "127.0.0.1%lo" when bound to a device
    if addr.startswith("["):
        addr = addr[1:-1]
    if addr == "*":                               # ss prints a dual-stack :: as *
        addr = "::"
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    return format_addr(socket.inet_pton(family, addr)), 0 if port == "*" else int(port)


def parse_ss(text: str, state: str | None = None, netid: str | None = None) -> set[tuple]:
    """`ss -tuanH` -> {(proto, state, local_addr, local_port, remote_addr, remote_port)}.

    ss drops its State column under a single `state X` filter, and its Netid column
    when one protocol is listed (-tan): pass what it left out.
    """
    out = set()
    for line in text.splitlines():
        f = line.split()
        if not f:
            continue
        if netid is not None:
            f.insert(0, netid)
        if state is not None:
            f.insert(1, state)
        out.add((f[0], SS_STATES[f[1]], *_ss_endpoint(f[4]), *_ss_endpoint(f[5])))
    return out


def as_set(table: SocketTable, protos=("tcp", "udp")) -> set[tuple]:
    return {(r["proto"], r["state"], r["local_addr"], r["local_port"], r["remote_addr"], r["remote_port"])
            for r in table.rows() if r["proto"] in protos}


def read_sample(sub: str, protos=("tcp", "udp", "udplite", "sctp"), families=(4, 6), states=None, sport=None):
    return procfs.read_table(protos, families, states, sport, root=os.path.join(SAMPLES, sub))


# --- recorded live samples ------------------------------------------------------------

def test_recorded_procfs_equals_recorded_ss():
    table = read_sample("live")
    with open(os.path.join(SAMPLES, "live", "ss-tuanH.txt")) as f:
        truth = parse_ss(f.read())
    assert len(truth) >= 20
    assert as_set(table) == truth
    assert table.warnings == []
    states = {r["state"] for r in table.rows()}
    assert {"LISTEN", "ESTABLISHED", "TIME_WAIT", "SYN_SENT", "SYN_RECV", "FIN_WAIT2",
            "CLOSE_WAIT", "CLOSE"} <= states


def test_recorded_addresses_are_printed_as_ss_prints_them():
    rows = list(read_sample("live").rows())
    ours = {r["local_addr"] for r in rows} | {r["remote_addr"] for r in rows}
    with open(os.path.join(SAMPLES, "live", "ss-tuanH.txt")) as f:
        for line in f:
            for ep in line.split()[4:6]:
                text = ep.rpartition(":")[0].strip("[]")
                if text != "*":
                    assert text in ours, text        # verbatim, no normalising
    mapped = [r for r in rows if r["local_addr"].startswith("::ffff:")]
    assert mapped and all(r["family"] == 6 for r in mapped)
    assert any(r["local_addr"] == "::1" for r in rows)
    assert any(r["local_addr"] == "10.9.9.1" and r["state"] == "SYN_RECV" for r in rows)
    # TIME_WAIT and request sockets have no inode
    assert all(r["inode"] == 0 for r in rows if r["state"] in ("TIME_WAIT", "SYN_RECV"))


def test_recorded_udplite_is_read():
    rows = [r for r in read_sample("live").rows() if r["proto"] == "udplite"]
    assert len(rows) == 1 and rows[0]["state"] == "CLOSE" and rows[0]["local_addr"] == "127.0.0.1"


def test_state_port_and_family_filters_on_samples():
    everything = read_sample("live", protos=("tcp",))
    tw = read_sample("live", protos=("tcp",), states={6})
    assert len(tw) == sum(1 for s in everything.state if s == 6) == 1
    only6 = read_sample("live", protos=("tcp",), families=(6,))
    assert set(only6.family) == {6} and len(only6) == sum(1 for f in everything.family if f == 6)
    rng = PortRange(8000, 9000)
    some = read_sample("live", protos=("tcp",), sport=rng)
    assert len(some) > 0 and all(8000 <= p <= 9000 for p in some.local_port)
    assert len(some) == sum(1 for p in everything.local_port if 8000 <= p <= 9000)
    # listeners are remembered even when LISTEN rows were filtered out
    assert (PROTO_TCP, 8080) in tw.listen_ports


# --- SCTP -----------------------------------------------------------------------------

def _v6(s):
    return socket.inet_pton(socket.AF_INET6, s)


def test_sctp_modern_endpoints_and_multihomed_associations():
    t = read_sample("sctp/modern", protos=("sctp",))
    rows = list(t.rows())
    assert t.warnings == []
    eps = [r for r in rows if r["state"] == "LISTEN"]
    assert [(r["local_addr"], r["local_port"], r["uid"], r["inode"]) for r in eps] == [
        ("10.0.0.102", 11165, 200, 299689357), ("192.0.2.10", 2905, 0, 188001),
        ("2001:db8::1", 3868, 0, 188002)]
    assert eps[0]["local_addrs"] == ["10.0.0.102", "10.0.0.70"]
    assert eps[2]["family"] == 6 and eps[2]["local_addrs"] == ["2001:db8::1", "fe80::9"]
    assoc = [r for r in rows if r["state"] != "LISTEN"]
    first = assoc[0]
    # the starred address is the primary path on each side and comes first
    assert (first["local_addr"], first["remote_addr"]) == ("10.0.0.70", "10.0.0.77")
    assert first["local_addrs"] == ["10.0.0.70", "10.0.0.102"]
    assert first["remote_addrs"] == ["10.0.0.77", "10.0.0.109", "172.31.1.9"]
    assert (first["state"], first["local_port"], first["remote_port"]) == ("ESTABLISHED", 11567, 11166)
    # COOKIE_WAIT -> SYN_SENT, SHUTDOWN_RECEIVED -> CLOSE_WAIT, SHUTDOWN_ACK_SENT -> LAST_ACK
    assert [r["state"] for r in assoc[1:]] == ["SYN_SENT", "CLOSE_WAIT", "LAST_ACK"]
    assert "remote_addrs" not in assoc[1]
    assert assoc[2]["family"] == 6 and assoc[2]["remote_addr"] == "2001:db8::2"
    assert all(r["proto"] == "sctp" for r in rows)


def test_sctp_old_format_without_hbkt_or_tab():
    t = read_sample("sctp/old", protos=("sctp",))
    rows = list(t.rows())
    assert t.warnings == []
    assert [r["local_port"] for r in rows if r["state"] == "LISTEN"] == [11165, 11166]
    assert rows[1]["local_addrs"] == ["10.0.0.102", "10.0.0.70", "172.31.1.2"]
    assoc = [r for r in rows if r["state"] != "LISTEN"]
    # ST 4 is SHUTDOWN_PENDING -> FIN_WAIT1; the list stops before HBINT (1000)
    assert [(r["state"], r["local_port"], r["remote_port"]) for r in assoc] == [
        ("FIN_WAIT1", 11567, 11166), ("FIN_WAIT1", 11565, 11168)]
    assert assoc[0]["remote_addrs"] == ["10.0.0.109", "10.0.0.77"]
    assert assoc[1]["local_addrs"] == ["10.0.0.102", "10.0.0.70", "192.168.11.2"]


def test_sctp_family_filter():
    t = read_sample("sctp/modern", protos=("sctp",), families=(6,))
    assert len(t) == 3 and set(t.family) == {6}


# --- malformed and truncated lines -----------------------------------------------------

def test_malformed_lines_are_skipped_and_counted():
    t = read_sample("malformed", protos=("tcp", "sctp"))
    rows = list(t.rows())
    tcp = [r for r in rows if r["proto"] == "tcp"]
    assert sorted(r["local_port"] for r in tcp) == [7000, 8080, 8443, 9090]
    assert [r["local_port"] for r in rows if r["proto"] == "sctp" and r["state"] == "LISTEN"] == [11165, 11166]
    assert [r["remote_port"] for r in rows if r["proto"] == "sctp" and r["state"] != "LISTEN"] == [11166, 11170]
    w = "\n".join(t.warnings)
    assert "/proc/net/tcp: skipped 5 malformed line(s)" in w
    assert "/proc/net/tcp6: skipped 1 malformed line(s)" in w
    assert "/proc/net/sctp/eps: skipped 3 malformed line(s)" in w
    assert "/proc/net/sctp/assocs: skipped 3 malformed line(s)" in w


def test_missing_files_are_not_errors(tmp_path):
    t = procfs.read_table(("tcp", "udp", "udplite", "sctp"), (4, 6), None, None, root=str(tmp_path))
    assert len(t) == 0 and t.warnings == []


def test_unreadable_file_is_one_clear_error(tmp_path, monkeypatch):
    import builtins

    from portscope.errors import NotPermitted, SystemReadError
    (tmp_path / "tcp").mkdir()                      # EISDIR: an OSError that is not "missing"
    with pytest.raises(SystemReadError, match="cannot read .*/tcp"):
        procfs.read_table(("tcp",), (4, 6), None, None, root=str(tmp_path))
    real = builtins.open

    def deny(path, *a, **kw):
        if str(path).endswith("/udp"):
            raise PermissionError(13, "Permission denied")
        return real(path, *a, **kw)
    monkeypatch.setattr(builtins, "open", deny)
    with pytest.raises(NotPermitted, match="permission denied"):
        procfs.read_table(("udp",), (4, 6), None, None, root=str(tmp_path))


def test_headerless_sctp_file_is_counted_not_fatal(tmp_path):
    (tmp_path / "sctp").mkdir()
    (tmp_path / "sctp" / "eps").write_text("garbage without the header\nmore\n")
    t = procfs.read_table(("sctp",), (4, 6), None, None, root=str(tmp_path))
    assert len(t) == 0 and "skipped 2" in t.warnings[0]


# Values int() parses but the kernel cannot print (and the table's arrays cannot hold):
# each malformed/ranges/<case> has one such line between two good ones.
RANGE_CASES = {
    # case: (file, the good lines' (local_port, remote_port))
    "tcp-negative-uid": ("tcp", [(8080, 0), (8081, 0)]),
    "tcp-negative-inode": ("tcp", [(8080, 0), (8081, 0)]),
    "tcp-negative-port": ("tcp", [(8080, 0), (8081, 0)]),
    "tcp-negative-remote-port": ("tcp", [(8080, 0), (8081, 0)]),
    "tcp-uid-over-32-bits": ("tcp", [(8080, 0), (8081, 0)]),
    "tcp-inode-over-64-bits": ("tcp", [(8080, 0), (8081, 0)]),
    "tcp-unknown-state": ("tcp", [(8080, 0), (8081, 0)]),
    "tcp-state-zero": ("tcp", [(8080, 0), (8081, 0)]),
    "udp-listen-state": ("udp", [(5353, 0), (53, 53)]),
    "sctp-eps-state-999": ("sctp/eps", [(11165, 0), (11166, 0)]),
    "sctp-eps-negative-port": ("sctp/eps", [(11165, 0), (11166, 0)]),
    "sctp-assocs-negative-port": ("sctp/assocs", [(11567, 11166), (11569, 11170)]),
    "sctp-assocs-state-99": ("sctp/assocs", [(11567, 11166), (11569, 11170)]),
}


def _ranges_root(case: str) -> str:
    return os.path.join(SAMPLES, "malformed", "ranges", case)


@pytest.mark.parametrize("case", sorted(RANGE_CASES))
def test_out_of_range_line_is_skipped_and_counted(case):
    name, good = RANGE_CASES[case]
    with open(os.path.join(_ranges_root(case), name)) as f:
        assert len(f.read().splitlines()) == 4            # header, good, bad, good
    t = read_sample(os.path.join("malformed", "ranges", case))
    assert [(r["local_port"], r["remote_port"]) for r in t.rows()] == good
    assert t.warnings == [f"/proc/net/{name}: skipped 1 malformed line(s)"]
    assert all(len(getattr(t, c)) == len(good) for c in ("proto", "state", "local_port", "uid", "inode"))


def test_edges_of_every_range_are_kept():
    t = read_sample(os.path.join("malformed", "ranges", "edges"))
    assert t.warnings == []
    rows = list(t.rows())
    tcp = [r for r in rows if r["proto"] == "tcp"]
    assert [(r["state"], r["local_port"], r["remote_port"]) for r in tcp] == [
        ("SYN_RECV", 65535, 0), ("BOUND_INACTIVE", 0, 65535), ("ESTABLISHED", 8080, 0xC736),
        ("CLOSING", 8082, 0xC737)]
    assert (tcp[0]["uid"], tcp[0]["inode"]) == (2**32 - 1, 2**64 - 1)
    assert [r["state"] for r in rows if r["proto"] == "udp"] == ["CLOSE", "ESTABLISHED"]
    sctp = [r for r in rows if r["proto"] == "sctp"]
    # sctp/eps SST: every enum sctp_sock_state value (CLOSING was TCP_CLOSING before CLOSE_WAIT)
    assert [r["state"] for r in sctp[:6]] == ["ESTABLISHED", "SYN_SENT", "CLOSE", "CLOSE_WAIT", "LISTEN", "CLOSING"]
    # sctp/assocs ST: every enum sctp_state value, through SCTP_ASSOC_STATE
    assert [r["state"] for r in sctp[6:]] == ["CLOSE", "SYN_SENT", "SYN_SENT", "ESTABLISHED", "FIN_WAIT1",
                                              "FIN_WAIT1", "CLOSE_WAIT", "LAST_ACK"]
    assert {r["remote_port"] for r in sctp[6:]} == {65535}


def test_cli_over_out_of_range_lines_exits_0_without_a_traceback(tmp_path):
    """`portscope conns --backend procfs` over every case at once, as a real process."""
    import json
    import subprocess
    import sys
    from collections import Counter
    merged: dict[str, list[str]] = {}
    for case, (name, _) in RANGE_CASES.items():
        with open(os.path.join(_ranges_root(case), name)) as f:
            lines = f.read().splitlines(keepends=True)
        merged.setdefault(name, [lines[0]]).extend(lines[1:])
    for name, lines in merged.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("".join(lines))
    # procfs reads /proc/net through netns.proc_net_path: point it at the fake root
    code = ("import sys; from portscope import netns; from portscope.cli import main; "
            "netns.proc_net_path = lambda name: sys.argv[1] + '/' + name; "
            "main(sys.argv[2:])")
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path), "conns", "--backend", "procfs", "--json"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr and "Error" not in p.stderr
    bad = Counter(name for name, _ in RANGE_CASES.values())
    for name, n in bad.items():
        assert f"portscope: warning: /proc/net/{name}: skipped {n} malformed line(s)" in p.stderr
    doc = json.loads(p.stdout)
    assert doc["backend"] == "procfs" and len(doc["warnings"]) == len(bad)
    assert len(doc["sockets"]) == 2 * len(RANGE_CASES)


# --- netlink bytecode ------------------------------------------------------------------

def _run_bc(bc: bytes, sport: int, auto: bool) -> bool:
    """A transcription of the kernel's inet_diag_bc_run for the ops we emit."""
    ops = [struct.unpack_from("=BBH", bc, k) for k in range(0, len(bc), 4)]
    pos, length = 0, len(bc)
    while length > 0:
        code, yes_, no = ops[pos // 4]
        if code == netlink.BC_S_GE:
            ok = sport >= ops[pos // 4 + 1][2]
        elif code == netlink.BC_S_LE:
            ok = sport <= ops[pos // 4 + 1][2]
        elif code == netlink.BC_AUTO:
            ok = auto
        elif code == netlink.BC_JMP:
            ok = False
        else:
            raise AssertionError(code)
        step = yes_ if ok else no
        pos += step
        length -= step
    return length == 0


def _audit(bc: bytes) -> bool:
    """The kernel's inet_diag_bc_audit walk: every yes/no in bounds, the yes-path ends at len."""
    length, pos = len(bc), 0
    while length > 0:
        code, yes_, no = struct.unpack_from("=BBH", bc, pos)
        min_len = 8 if code in (netlink.BC_S_GE, netlink.BC_S_LE) else 4
        if length < min_len:
            return False
        if not (min_len <= no <= length + 4 and no % 4 == 0):
            return False
        if not (min_len <= yes_ <= length + 4 and yes_ % 4 == 0):
            return False
        pos += yes_
        length -= yes_
    return length == 0


@pytest.mark.parametrize("sport", [None, PortRange(40000, 40010)])
@pytest.mark.parametrize("auto", [None, True, False])
def test_bytecode_accepts_exactly_what_was_asked(sport, auto):
    bc = netlink.bytecode(sport, auto)
    if sport is None and auto is None:
        assert bc == b""
        return
    assert _audit(bc)
    for port in (1, 39999, 40000, 40005, 40010, 40011, 65535):
        for is_auto in (True, False):
            want = (sport is None or sport.low <= port <= sport.high) and (auto is None or auto == is_auto)
            assert _run_bc(bc, port, is_auto) == want, (port, is_auto)


def test_request_layout():
    msg = netlink._request(4, 6, netlink.ALL_STATES, netlink.bytecode(None, True), 7)
    length, kind, flags, seq, pid = struct.unpack_from("=IHHII", msg)
    assert (length, kind, flags, seq) == (len(msg), 20, 0x301, 7)
    fam, proto, ext, states = struct.unpack_from("=BBBxI", msg, 16)
    assert (fam, proto, ext, states) == (socket.AF_INET, 6, 0, netlink.ALL_STATES)
    assert not netlink.ALL_STATES & (1 << 13)          # bound-inactive only when asked
    assert struct.unpack_from("=HH", msg, 16 + 56) == (8, 1)


# --- classification -------------------------------------------------------------------

def _table(rows, listen=()):
    t = SocketTable(backend="test")
    for proto, state, lp, rp, auto in rows:
        t.append(proto, 4, state, bytes([127, 0, 0, 1]), lp, bytes([127, 0, 0, 1]), rp, 0, 1, auto)
    t.listen_ports.update(listen)
    return t


RANGE = PortRange(32768, 60999)


def test_classify_kernel_decisions():
    t = _table([
        (PROTO_TCP, 1, 45000, 443, AUTO_YES),      # client, kernel-chosen port
        (PROTO_TCP, 1, 8080, 45001, AUTO_YES),     # accepted: bind lock cleared on the clone
        (PROTO_TCP, 1, 40001, 8080, AUTO_NO),      # bind-before-connect inside the range
        (PROTO_TCP, 10, 8080, 0, AUTO_NO),         # listener
        (PROTO_TCP, 6, 45002, 8080, AUTO_UNKNOWN),  # TIME_WAIT: by range
        (PROTO_UDP, 7, 50000, 0, AUTO_YES),        # unconnected, autobound
        (PROTO_UDP, 7, 5353, 0, AUTO_NO),          # a bound server
    ], listen={(PROTO_TCP, 8080)})
    filters.mark_ephemeral(t, RANGE)
    assert list(t.ephemeral) == [EPH_LOCAL, EPH_REMOTE, EPH_NONE, EPH_NONE, EPH_LOCAL, EPH_LOCAL, EPH_NONE]
    assert list(t.method) == [METHOD_KERNEL, METHOD_RANGE, METHOD_KERNEL, METHOD_KERNEL, METHOD_RANGE,
                              METHOD_KERNEL, METHOD_KERNEL]
    # the accepted socket is reported as not auto-bound: its port is the listener's
    assert list(t.auto_bound) == [AUTO_YES, AUTO_NO, AUTO_NO, AUTO_NO, AUTO_UNKNOWN, AUTO_YES, AUTO_NO]


def test_classify_by_range_and_reserved_ports():
    t = _table([
        (PROTO_TCP, 1, 45000, 443, AUTO_UNKNOWN),
        (PROTO_TCP, 1, 8080, 45001, AUTO_UNKNOWN),   # accepted (listener port)
        (PROTO_TCP, 1, 5000, 45001, AUTO_UNKNOWN),   # remote in range
        (PROTO_TCP, 1, 45010, 45011, AUTO_UNKNOWN),  # both in range, not a listener: local
        (PROTO_TCP, 1, 50000, 443, AUTO_UNKNOWN),    # 50000 reserved: never auto-assigned
        (PROTO_TCP, 10, 45020, 0, AUTO_UNKNOWN),     # a listener inside the range
        (PROTO_TCP, 1, 22, 1022, AUTO_UNKNOWN),
    ], listen={(PROTO_TCP, 8080), (PROTO_TCP, 45020)})
    filters.mark_ephemeral(t, RANGE, PortSet.parse("50000-50010"))
    assert list(t.ephemeral) == [EPH_LOCAL, EPH_REMOTE, EPH_REMOTE, EPH_LOCAL, EPH_NONE, EPH_NONE, EPH_NONE]
    assert set(t.method) == {METHOD_RANGE}


def test_select_and_counts():
    t = _table([(PROTO_TCP, 1, 45000, 443, AUTO_YES), (PROTO_TCP, 10, 8080, 0, AUTO_NO),
                (PROTO_UDP, 7, 5353, 0, AUTO_NO), (PROTO_TCP, 1, 8080, 45001, AUTO_YES)],
               listen={(PROTO_TCP, 8080)})
    t.remote_addr[0] = bytes([10, 1, 2, 3])
    filters.mark_ephemeral(t, RANGE)
    assert filters.select(t) is None
    assert filters.select(t, port=PortRange(443, 443)) == [0]
    assert filters.select(t, port=PortRange(8080, 8080)) == [1, 3]
    assert filters.select(t, dst=ipaddress.ip_network("10.0.0.0/8")) == [0]
    assert filters.select(t, ephemeral="local") == [0]
    assert filters.select(t, ephemeral="any") == [0, 3]
    assert filters.select(t, listening=True) == [1, 2]
    c = filters.counts(t)
    assert c["total"] == 4 and c["by_proto"] == {"tcp": 3, "udp": 1}
    assert c["by_proto_state"]["tcp"] == {"ESTABLISHED": 2, "LISTEN": 1}
    assert filters.counts(t, [2])["by_state"] == {"CLOSE": 1}
    assert filters.sort_rows(t, [0, 1, 2, 3], "lport") == [2, 1, 3, 0]


def test_v4_network_matches_v4_mapped_rows():
    test = filters._addr_test(ipaddress.ip_network("127.0.0.0/8"))
    assert test(bytes([127, 0, 0, 1]))
    assert test(socket.inet_pton(socket.AF_INET6, "::ffff:127.0.0.1"))
    assert not test(socket.inet_pton(socket.AF_INET6, "::1"))
    assert not test(bytes([10, 0, 0, 1]))


def test_state_names_and_bad_input():
    assert state_codes(["syn-recv"]) == {3, 12}
    assert state_codes("TIME_WAIT") == {6}
    from portscope.errors import BadInput
    with pytest.raises(BadInput, match="BOGUS"):
        state_codes(["BOGUS"])
    with pytest.raises(BadInput):
        filters.parse_net("not-an-ip", "--dst")
    from portscope.sockets import snapshot
    with pytest.raises(BadInput):
        snapshot(("tcpx",))
    with pytest.raises(BadInput):
        snapshot(families=(5,))
    with pytest.raises(BadInput):
        snapshot(backend="bogus")


def test_format_addr_matches_ss():
    assert format_addr(socket.inet_pton(socket.AF_INET6, "::ffff:10.0.0.1")) == "::ffff:10.0.0.1"
    assert format_addr(_v6("2001:0db8:0000:0000:0000:0000:0000:0001")) == "2001:db8::1"
    assert format_addr(bytes(4)) == "0.0.0.0"
