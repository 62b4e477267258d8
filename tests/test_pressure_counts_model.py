"""The pressure model's C-speed passes against plain per-row loops, on seeded synthetic
tables: row masks, the one-pass destination counts, the parity count, and the read's
split of mixed-length netlink chunks and its bytecode (run by a transcription of the
kernel's inet_diag_bc_run and its audit)."""
from __future__ import annotations

import random
import socket
import struct
from collections import Counter

import pytest

from portscope import pressure
from portscope.host import HostFacts
from portscope.ports import PortRange, PortSet
from portscope.sockets import netlink
from portscope.sockets.table import AUTO_NO, AUTO_UNKNOWN, AUTO_YES, SocketTable

TCP, UDP = 6, 17
LOW, HIGH = 40000, 40199


def facts(low=LOW, high=HIGH, reserved=""):
    return HostFacts(os="linux", ephemeral=PortRange(low, high), reserved=PortSet.parse(reserved),
                     unprivileged_port_start=1024, os_default=PortRange(32768, 60999), tcp_tw_reuse=0)


def table(seed: int, n: int = 3000, listeners: int = 3) -> SocketTable:
    """Random rows: TCP in every state (listeners among the local ports), UDP connected
    or not, IPv4 and IPv6, a few destinations, ports in and out of the range."""
    rnd = random.Random(seed)
    t = SocketTable(backend="test")
    lports = rnd.sample(range(LOW, HIGH + 1), listeners)
    srcs = [socket.inet_pton(socket.AF_INET, f"192.0.2.{i}") for i in (1, 2)] + \
        [socket.inet_pton(socket.AF_INET6, "2001:db8::1")]
    dsts = [socket.inet_pton(socket.AF_INET, f"198.51.100.{i}") for i in (1, 2, 3)] + \
        [socket.inet_pton(socket.AF_INET6, "2001:db8::2")]
    for _ in range(n):
        proto = rnd.choice((TCP, TCP, TCP, UDP))
        state = rnd.choice((1, 1, 1, 6, 6, 10, 13, 7, 8)) if proto == TCP else rnd.choice((1, 7))
        lport = rnd.choice(lports) if lports and rnd.random() < 0.1 else rnd.randint(LOW - 50, HIGH + 50)
        connected = state not in (10, 13, 7) and rnd.random() < 0.95
        fam = rnd.randrange(3)
        src = srcs[fam]
        dst = [d for d in dsts if len(d) == len(src)]
        ra = rnd.choice(dst) if connected else bytes(len(src))
        rport = rnd.choice((80, 443, 5432)) if connected else 0
        auto = rnd.choice((AUTO_YES, AUTO_YES, AUTO_NO, AUTO_UNKNOWN))
        t.append(proto, 6 if len(src) == 16 else 4, state, src, lport, ra, rport, 0, 0, auto)
    t.listen_ports = {(TCP, p) for p in lports}
    return t


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("listeners", [0, 3, 100, -100])      # -100: 100, by the set-lookup branch
def test_row_masks_are_the_per_row_definitions(seed, listeners, monkeypatch):
    if listeners < 0:
        monkeypatch.setattr(pressure, "_FEW_HIGH_BYTES", 0)
        listeners = -listeners
    f = facts()
    t = table(seed, listeners=listeners)
    m = pressure.row_masks(f, t)
    lp = {p for _, p in t.listen_ports} | {t.local_port[i] for i in range(len(t))
                                            if t.state[i] == 10 and t.proto[i] == TCP}
    for i in range(len(t)):
        in_u = LOW <= t.local_port[i] <= HIGH
        server = t.state[i] == 10 or t.local_port[i] in lp
        bound_only = t.remote_port[i] == 0 or t.state[i] == 13
        tcp = t.proto[i] == TCP and in_u and not server
        assert m.tcp_client[i] == (tcp and not bound_only), i
        assert m.tcp_bound_only[i] == (tcp and bound_only), i
        assert m.udp_client[i] == (t.proto[i] == UDP and in_u and t.remote_port[i] != 0), i
        assert m.same_par[i] == ((t.local_port[i] & 1) == (LOW & 1)), i
        assert m.auto_no[i] == (t.auto_bound[i] == AUTO_NO), i


@pytest.mark.parametrize("ports", [
    range(1024, 65536), range(32768, 61000), range(40000, 40001), range(256, 512), range(300, 311),
    range(0, 65536), range(0, 0), [20000, 20001, 20005, 19999, 443, 65535, 0, 8080], range(1, 65535, 7)])
def test_ports_in_is_membership_for_every_port(ports):
    # every port value once, in a shuffled column: the mask is exactly membership
    col = list(range(65536))
    random.Random(7).shuffle(col)
    raw = struct.pack("<65536H", *col)
    lo, hi = raw[0::2], raw[1::2]
    want = set(ports)
    got = pressure.ports_in(lo, hi, ports)
    assert got == bytes(p in want for p in col)
    if isinstance(ports, range) and ports.step == 1 and len(ports):
        assert pressure.in_range(lo, hi, ports.start, ports.stop - 1) == got


@pytest.mark.parametrize("seed", range(6))
def test_one_pass_destination_counts_equal_per_row_counts(seed):
    t = table(seed)
    m = pressure.row_masks(facts(), t)
    got = pressure.tcp_dest_counts(t, m)
    want: tuple[Counter, ...] = (Counter(), Counter(), Counter(), Counter())
    for i in range(len(t)):
        if not m.tcp_client[i]:
            continue
        key = (t.local_addr[i], t.remote_addr[i], t.remote_port[i])
        want[0][key] += 1
        want[1][key] += t.state[i] == 6
        if t.auto_bound[i] == AUTO_NO:
            want[2][key] += 1
        elif (t.local_port[i] & 1) == (LOW & 1):
            want[3][key] += 1
    assert [+c for c in got] == [+c for c in want]
    assert sum(got[0].values()) == bytes(m.tcp_client).count(1) > 100


@pytest.mark.parametrize("seed", range(4))
def test_parity_count_equals_a_loop(seed):
    rnd = random.Random(seed)
    usable = pressure.usable_ports(PortRange(1024, 60999), PortSet.parse("2000-2999,40001"))
    ports = set(rnd.sample(range(65536), 5000)) | {40001, 1024, 60999}
    for parity in (0, 1):
        assert pressure._count_parity(ports, parity, usable) == \
            sum(1 for p in ports if p & 1 == parity and usable[p])


# --- mixed-length chunks --------------------------------------------------------------

SEQ, PID = 7, 4242


def _reply(length: int, state: int, lport: int, laddr: bytes, kind: int = netlink.TCPDIAG_GETSOCK) -> bytes:
    rec = bytearray(length)
    struct.pack_into("=IHHII", rec, 0, length, kind, 2, SEQ, PID)
    rec[16], rec[17] = socket.AF_INET, state
    struct.pack_into("!HH", rec, 20, lport, 443)
    rec[24:24 + len(laddr)] = laddr
    rec[40:44] = bytes((198, 51, 100, 9))
    struct.pack_into("=II", rec, 80, 0, lport)
    for off in range(netlink.HEAD, length, 8):          # attribute-like filler
        struct.pack_into("=HH", rec, off, 8, 1 + off % 5)
    return bytes(rec)


class FakeSock:
    """Hands out recorded datagrams through recv_into, as the netlink socket does."""

    def __init__(self, datagrams: list[bytes]) -> None:
        self.datagrams = list(datagrams)

    def send(self, data: bytes) -> int:
        return len(data)

    def recv_into(self, buf, n=0) -> int:
        d = self.datagrams.pop(0)
        buf[:len(d)] = d
        return len(d)


def _datagrams(seed: int, tricky: bool) -> list[bytes]:
    """~40 datagrams of 124- and 96-byte replies interleaved as the hash walk gives them;
    with `tricky`, some addresses spell the 96-byte reply's header words."""
    rnd = random.Random(seed)
    fake = struct.pack("=IHH", 96, netlink.TCPDIAG_GETSOCK, 2)
    out, port = [], 1000
    for _ in range(40):
        recs = []
        for _ in range(rnd.randint(1, 60)):
            tw = rnd.random() < 0.2
            # an address field whose first 8 bytes are the header words split() looks for
            laddr = fake if tricky and rnd.random() < 0.1 else bytes((192, 0, 2, port % 200))
            recs.append(_reply(96 if tw else 124, 6 if tw else 1, port, laddr))
            port += 1
        out.append(b"".join(recs))
    done = struct.pack("=IHHII", 20, netlink.NLMSG_DONE, 2, SEQ, PID) + bytes(4)
    out[-1] += done
    return out


def _rows(chunks) -> Counter:
    t = SocketTable("netlink")
    for stride, chunk in chunks:
        netlink._append(t, {stride: bytearray(chunk)}, TCP, netlink.BOTH, AUTO_YES)
    return Counter(zip(t.state, t.local_addr, t.local_port, t.remote_addr, t.remote_port, t.inode))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("tricky", [False, True])
def test_split_chunks_give_the_replies_one_by_one(seed, tricky):
    grams = _datagrams(seed, tricky)
    want = Counter()
    for g in grams:                                     # the reply-by-reply reference
        off = 0
        while off < len(g):
            length, kind = struct.unpack_from("=IH", g, off)
            if kind == netlink.TCPDIAG_GETSOCK:
                want.update(_rows([(length, g[off:off + length])]))
            off += length
    buf = bytearray(netlink.RECV_BYTES)
    # copied as they come: a view of buf is only valid until the next chunk
    got = [(s, bytes(c)) for s, c in netlink.dump_chunks(FakeSock(grams), netlink.BOTH, TCP, 0, b"", SEQ, buf)]
    assert _rows(got) == want
    assert sum(want.values()) > 500
    # after the first mixed datagram taught it the two lengths, the split takes them
    assert {s for s, _ in got} >= {124, 96}


def test_split_refuses_what_is_not_two_uniform_runs():
    sizes = {124: 10, 96: 3}
    a, b = _reply(124, 1, 1, b"\x01\x02\x03\x04"), _reply(96, 6, 2, b"\x01\x02\x03\x04")
    ok = netlink._split_two(memoryview(a + b + a), sizes, netlink.TCPDIAG_GETSOCK)
    assert ok is not None and [(s, len(x)) for s, x in ok] == [(124, 248), (96, 96)]
    odd = _reply(100, 1, 3, b"\x01\x02\x03\x04")                # a third length
    assert netlink._split_two(memoryview(a + odd + b), sizes, netlink.TCPDIAG_GETSOCK) is None
    done = struct.pack("=IHHII", 20, netlink.NLMSG_DONE, 2, SEQ, PID) + bytes(4)
    assert netlink._split_two(memoryview(a + b + done), sizes, netlink.TCPDIAG_GETSOCK) is None


# --- bytecode ---------------------------------------------------------------------------

def _audit(bc: bytes) -> bool:
    """inet_diag_bc_audit(): every op on the chain of `yes` jumps, `no` to an op or past the end."""
    ops = {}
    off = 0
    while off < len(bc):
        code, yes, no = struct.unpack_from("=BBH", bc, off)
        ops[off] = (code, yes, no)
        size = 8 if code in (netlink.BC_S_GE, netlink.BC_S_LE, netlink.BC_D_GE, netlink.BC_D_LE) else 4
        length = len(bc) - off
        if yes < size or yes > length + 4 or yes & 3:
            return False
        if no < size or no > length + 4 or no & 3:
            return False
        off += yes
    if off != len(bc):
        return False
    return all(at + no >= len(bc) or at + no in ops for at, (_, _, no) in ops.items())


def _run(bc: bytes, sport: int, dport: int, auto: bool) -> bool:
    """inet_diag_bc_run()."""
    off, left = 0, len(bc)
    while left > 0:
        code, yes, no = struct.unpack_from("=BBH", bc, off)
        arg = struct.unpack_from("=BBH", bc, off + 4)[2] if off + 4 < len(bc) else 0
        ok = {netlink.BC_JMP: False, netlink.BC_S_GE: sport >= arg, netlink.BC_S_LE: sport <= arg,
              netlink.BC_D_GE: dport >= arg, netlink.BC_D_LE: dport <= arg, netlink.BC_AUTO: auto}[code]
        step = yes if ok else no
        off += step
        left -= step
    return left == 0


def test_unconnected_halves_partition_the_sockets_in_range():
    rng = PortRange(40000, 40099)
    first = netlink.bytecode(rng, True, unconnected=True)
    second = netlink.bytecode(rng, False, unconnected=True)
    assert _audit(first) and _audit(second)
    for sport in (39999, 40000, 40050, 40099, 40100):
        for dport in (0, 1, 443, 65535):
            for auto in (False, True):
                a, b = _run(first, sport, dport, auto), _run(second, sport, dport, auto)
                if not 40000 <= sport <= 40099:
                    assert not a and not b
                else:
                    assert a == (auto or dport == 0) and b == (not auto and dport != 0)
    # and the plain programs still mean what they meant
    plain_yes, plain_no = netlink.bytecode(rng, True), netlink.bytecode(rng, False)
    for auto in (False, True):
        assert _run(plain_yes, 40001, 0, auto) == auto and _run(plain_no, 40001, 0, auto) == (not auto)
