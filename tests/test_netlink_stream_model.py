"""sockets/netlink.py's streamed reading: batches and counts give exactly what the
whole-dump grouping gives (row order included), from recorded chunk sequences."""
from __future__ import annotations

import random
import struct
from collections import Counter

import pytest

from portscope.sockets import netlink
from portscope.sockets.table import SocketTable


def _record(stride: int, state: int, port: int) -> bytes:
    rec = bytearray(stride)
    struct.pack_into("=I", rec, 0, stride)
    rec[16], rec[17] = 2, state                       # AF_INET, state
    struct.pack_into("!HH", rec, 20, port, 443)
    rec[24:28] = bytes((192, 0, 2, port % 7))
    rec[40:44] = bytes((198, 51, 100, 7))
    struct.pack_into("=II", rec, 80, port % 3, port)
    return bytes(rec)


def _chunks(seed: int) -> list[tuple[int, bytes]]:
    """Chunks as dump_chunks() yields them: mostly 96-byte records, some 88-byte ones,
    in whatever interleaving the kernel's replies arrive."""
    rnd = random.Random(seed)
    out, port = [], 1000
    for _ in range(60):
        stride = rnd.choice((96, 96, 96, 88))
        recs = []
        for _ in range(rnd.randint(1, 40)):
            recs.append(_record(stride, 6 if stride == 88 else rnd.choice((1, 8, 10)), port))
            port += 1
        out.append((stride, b"".join(recs)))
    return out


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("batch", [1, 500, 1 << 20])
def test_batches_keep_the_whole_dump_order(monkeypatch, seed, batch):
    chunks = _chunks(seed)
    monkeypatch.setattr(netlink, "dump_chunks", lambda *a: iter(chunks))
    monkeypatch.setattr(netlink, "BATCH_BYTES", batch)
    whole, streamed = SocketTable("netlink"), SocketTable("netlink")
    netlink._append(whole, netlink.dump(None, 4, 6, 0, b"", 1, bytearray()), 6, 4, 1)
    netlink.append_dump(streamed, netlink.dump_batches(None, 4, 6, 0, b"", 1, bytearray()), 6, 4, 1, {})
    assert len(whole) == sum(len(c) // s for s, c in chunks)
    for col in ("proto", "family", "state", "local_addr", "local_port", "remote_addr", "remote_port",
                "uid", "inode", "auto_bound"):
        assert list(getattr(streamed, col)) == list(getattr(whole, col)), col
    # interned: one object per distinct address
    assert len({id(a) for a in streamed.local_addr}) == len(set(streamed.local_addr))


@pytest.mark.parametrize("batch", [500, 4000])
def test_the_bulk_streams_behind_a_rare_first_stride(monkeypatch, batch):
    # as a TCP dump starts: a first chunk of a few replies of a rare length (listeners
    # mixed with others, copied head by head), then the bulk in one length. The bulk must
    # still go out in batches (never more than a batch and a chunk held), in row order
    first = (88, b"".join(_record(88, 10, p) for p in range(3)))
    bulk = [(96, b"".join(_record(96, 1, 2000 + 40 * k + j) for j in range(40))) for k in range(50)]
    chunks = [first, *bulk, (88, _record(88, 6, 9000))]
    monkeypatch.setattr(netlink, "dump_chunks", lambda *a: iter(chunks))
    monkeypatch.setattr(netlink, "BATCH_BYTES", batch)
    batches = list(netlink.dump_batches(None, 4, 6, 0, b"", 1, bytearray()))
    bulk_batches = [b for r, s, b in batches if s == 96]
    assert len(bulk_batches) >= sum(len(c) for _, c in bulk) // (batch + 40 * 96)
    assert max(len(b) for b in bulk_batches) < batch + 40 * 96
    assert {(r, s) for r, s, _ in batches} == {(0, 88), (1, 96)}
    whole, streamed = SocketTable("netlink"), SocketTable("netlink")
    netlink._append(whole, netlink.dump(None, 4, 6, 0, b"", 1, bytearray()), 6, 4, 1)
    netlink.append_dump(streamed, iter(batches), 6, 4, 1, {})
    assert list(streamed.local_port) == list(whole.local_port) == [0, 1, 2, 9000] + list(range(2000, 4000))


def test_count_states_counts_what_the_table_holds(monkeypatch):
    chunks = _chunks(7)
    monkeypatch.setattr(netlink, "open_socket", lambda: type("S", (), {"close": lambda self: None})())
    monkeypatch.setattr(netlink, "dump_chunks", lambda *a: iter([(s, memoryview(c)) for s, c in chunks]))
    got = netlink.count_states(("tcp",), (4,), None)
    table = SocketTable("netlink")
    netlink._append(table, netlink.dump(None, 4, 6, 0, b"", 1, bytearray()), 6, 4, 1)
    assert got == Counter(zip(table.proto, table.state))
