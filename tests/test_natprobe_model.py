"""natprobe's netlink parsing on hand-built replies: attributes, multi-part dumps, errors,
an interrupted dump (the kernel's NLM_F_DUMP_INTR) and truncation all end in an answer
or in Undecided, never in a guess."""
from __future__ import annotations

import errno
import struct

import pytest

from portscope import natprobe as P


def _attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _msg(kind: int, seq: int, body: bytes, flags: int = 2) -> bytes:   # NLM_F_MULTI
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body


def _chain(seq: int, family: int, table: str, ctype: str | None, flags: int = 2) -> bytes:
    body = struct.pack("=BBH", family, 0, 0) + _attr(P.NFTA_CHAIN_TABLE, table.encode() + b"\0")
    if ctype:
        body += _attr(P.NFTA_CHAIN_TYPE, ctype.encode() + b"\0")
    return _msg(P.NFNL_SUBSYS_NFTABLES << 8 | P.NFT_MSG_GETCHAIN, seq, body, flags)


def _set(seq: int, name: str) -> bytes:
    body = struct.pack("=BBH", 1, 0, 0) + _attr(P.NFTA_SET_NAME, name.encode() + b"\0")
    return _msg(P.NFNL_SUBSYS_NFTABLES << 8 | P.NFT_MSG_GETSET, seq, body)


def _done(seq: int) -> bytes:
    return _msg(P.NLMSG_DONE, seq, struct.pack("=i", 0))


class FakeSock:
    """Replies handed out one datagram per recv(), as the kernel does."""

    def __init__(self, *datagrams: bytes) -> None:
        self.datagrams, self.sent = list(datagrams), []

    def send(self, b: bytes) -> int:
        self.sent.append(b)
        return len(b)

    def recv(self, n: int) -> bytes:
        return self.datagrams.pop(0) if self.datagrams else b""


def test_request_is_a_getchain_dump_of_every_family():
    s = FakeSock(_done(1))
    assert P.nft_dump(s, P.NFT_MSG_GETCHAIN, 1) == []
    length, kind, flags, seq, _ = struct.unpack_from("=IHHII", s.sent[0])
    assert (length, kind, flags, seq) == (20, 10 << 8 | 4, 0x301, 1)
    assert s.sent[0][16:] == b"\0\0\0\0"            # NFPROTO_UNSPEC, NFNETLINK_V0


def test_multi_part_dump_is_read_to_done():
    s = FakeSock(_chain(1, 2, "filter", "filter") + _chain(1, 1, "k", "nat"), _chain(1, 10, "nat", None), _done(1))
    got = P.nft_dump(s, P.NFT_MSG_GETCHAIN, 1)
    assert [fam for fam, _ in got] == [2, 1, 10]
    assert got[1][1][P.NFTA_CHAIN_TYPE] == b"nat\0"


def test_reasons_name_nat_chains_the_iptables_nft_table_and_nodeport_sets(monkeypatch):
    replies = FakeSock(_chain(1, 2, "filter", "filter"), _chain(1, 1, "k8s", "nat"), _chain(1, 10, "nat", None),
                       _chain(1, 7, "nat", None), _done(1),            # bridge "nat": not iptables-nft's
                       _set(2, "allowed"), _set(2, "Service-NodePorts"), _done(2))
    monkeypatch.setattr(P.socket, "socket", lambda *a: type("S", (), {
        "settimeout": lambda self, t: None, "close": lambda self: None,
        "send": lambda self, b: replies.send(b), "recv": lambda self, n: replies.recv(n)})())
    assert P.nft_nat_reasons() == ["nat chain in table k8s", "iptables-nft table nat (family 10)",
                                   "set Service-NodePorts"]


@pytest.mark.parametrize("reply", [
    _msg(P.NLMSG_ERROR, 1, struct.pack("=i", -errno.EPERM)),                    # no CAP_NET_ADMIN
    _chain(1, 2, "t", "filter", flags=2 | P.NLM_F_DUMP_INTR) + _done(1),       # changed during the dump
    _chain(1, 2, "t", "filter")[:-3],                                           # cut short
    b"",                                                                        # socket closed
])
def test_what_cannot_be_read_is_undecided(reply):
    with pytest.raises(P.Undecided):
        P.nft_dump(FakeSock(reply), P.NFT_MSG_GETCHAIN, 1)


def test_replies_to_another_request_are_skipped():
    s = FakeSock(_chain(7, 2, "x", "nat") + _chain(1, 2, "t", "filter"), _done(7) + _done(1))
    assert [fam for fam, _ in P.nft_dump(s, P.NFT_MSG_GETCHAIN, 1)] == [2]


def test_attrs_mask_the_nested_and_byteorder_flags_and_stop_at_a_bad_length():
    buf = _attr(P.NFTA_CHAIN_TABLE | 0x8000, b"t\0") + _attr(P.NFTA_CHAIN_TYPE | 0x4000, b"nat\0") + b"\x02\0\0\0"
    assert P.attrs(buf, 0, len(buf)) == {P.NFTA_CHAIN_TABLE: b"t\0", P.NFTA_CHAIN_TYPE: b"nat\0"}


def test_off_linux_no_nat(monkeypatch):
    monkeypatch.setattr(P.sys, "platform", "darwin")
    assert P.nat_reasons() == [] and P.may_hold_ports() is False
