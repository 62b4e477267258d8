"""sockets/tcpiter.py's reading of the iterator's file: however the kernel's reads cut the
stream (inside a record, at its 32 KiB seq buffer, or one byte at a time), the batches are
whole records, in order, each at most a batch and a read long, and the stream ends only
where a record ends."""
from __future__ import annotations

import os
import random

import pytest

from portscope.sockets import tcpiter


class _Kernel:
    """read()s of a recorded record stream, each cut where `sizes` says; readv() as the
    kernel does it for a file without read_iter (do_loop_readv_writev): one read per
    buffer, in order, stopping after the first that comes back short."""

    def __init__(self, stream: bytes, sizes) -> None:
        self.stream, self.sizes, self.at = stream, sizes, 0
        self.calls = 0

    def readv(self, fd, buffers):
        self.calls += 1
        total = 0
        for mv in buffers:
            n = min(next(self.sizes), len(mv), len(self.stream) - self.at)
            mv[:n] = self.stream[self.at:self.at + n]
            self.at += n
            total += n
            if n < len(mv):
                break
        return total


def _batches(monkeypatch, stream: bytes, sizes, kernel: list | None = None) -> list[bytes]:
    k = _Kernel(stream, sizes)
    if kernel is not None:
        kernel.append(k)
    monkeypatch.setattr(tcpiter.os, "readv", k.readv)
    monkeypatch.setattr(tcpiter.bpf, "iter_open", lambda link: os.open(os.devnull, os.O_RDONLY))
    r = tcpiter.Reader.__new__(tcpiter.Reader)
    r.link = 3
    return list(r.batches())


def _stream(records: int, seed: int) -> bytes:
    rnd = random.Random(seed)
    return b"".join(bytes([i % 251]) + rnd.randbytes(tcpiter.RECORD - 1) for i in range(records))


@pytest.mark.parametrize("seed", range(6))
def test_batches_are_whole_records_in_order(monkeypatch, seed):
    rnd = random.Random(seed)
    records = rnd.choice([0, 1, 371, 372, 5000, 9000])
    stream = _stream(records, seed)
    kind = seed % 3
    if kind == 0:        # what the kernel does: whole seq buffers of whole records
        sizes = iter(lambda: tcpiter.SEQ_BYTES - tcpiter.SEQ_BYTES % tcpiter.RECORD, None)
    elif kind == 1:      # any cut, records split across reads
        sizes = iter(lambda: rnd.randint(1, tcpiter.SEQ_BYTES), None)
    else:                # tiny reads
        sizes = iter(lambda: rnd.randint(1, 200), None)
    out = _batches(monkeypatch, stream, sizes)
    assert b"".join(out) == stream
    assert all(b and len(b) % tcpiter.RECORD == 0 for b in out)
    assert all(len(b) <= tcpiter.BATCH_BYTES + tcpiter.SEQ_BYTES for b in out)
    # whole batches, not one per read: a 9000-record walk (792 KB) is a handful of batches
    assert len(out) <= -(-len(stream) // tcpiter.BATCH_BYTES) + 1


@pytest.mark.parametrize("records", [0, 371, 372, 2976, 2977, 9000])
def test_whole_seq_buffers_fill_a_batch_in_one_call(monkeypatch, records):
    # the kernel's reads: whole seq buffers of whole records, the last one short
    k: list = []
    stream = _stream(records, records)
    out = _batches(monkeypatch, stream, iter(lambda: tcpiter.PIECE, None), k)
    assert b"".join(out) == stream
    assert tcpiter.PIECE % tcpiter.RECORD == 0 and tcpiter.PIECE <= tcpiter.SEQ_BYTES
    # one call per full batch, one for the rest (or the end), one that finds the end
    full = len(stream) // tcpiter.BATCH_BYTES
    assert k[0].calls <= full + 2
    assert all(len(b) == tcpiter.BATCH_BYTES for b in out[:full])


def test_a_stream_ending_inside_a_record_is_refused(monkeypatch):
    stream = _stream(10, 1)[:-5]
    with pytest.raises(tcpiter.Unavailable, match="inside a record"):
        _batches(monkeypatch, stream, iter(lambda: 1000, None))


def test_a_failing_read_is_unavailable(monkeypatch):
    def refuse(fd, buffers):
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(tcpiter.os, "readv", refuse)
    monkeypatch.setattr(tcpiter.bpf, "iter_open", lambda link: os.open(os.devnull, os.O_RDONLY))
    r = tcpiter.Reader.__new__(tcpiter.Reader)
    r.link = 3
    with pytest.raises(tcpiter.Unavailable, match="Input/output error"):
        list(r.batches())
