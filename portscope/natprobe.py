"""Could any NAT rule hold a port in this namespace? Asked of the kernel, without a command.

`portscope port N` and `suggest` list the ports inbound NAT rules hold (nat.held_ports).
Reading the rules runs `iptables-nft-save`, `ip6tables-nft-save` and `nft -j list ruleset`:
three processes, several times the whole rest of `port N`, on every run, while most hosts
have no NAT table at all. This module answers first, from what the rule readers could
possibly find:

* legacy iptables (x_tables) tables are listed in /proc/net/ip_tables_names and
  ip6_tables_names; the readers only read the `nat` table;
* nf_tables chains come from a netlink dump (NFNL_SUBSYS_NFTABLES, NFT_MSG_GETCHAIN with
  NLM_F_DUMP): nft's holders need a chain of type nat (NFTA_CHAIN_TYPE) to start from, and
  iptables-nft keeps its rules in a table named `nat` (family ip or ip6);
* kube-proxy's nftables NodePort map is a set whose name says `nodeport` (NFT_MSG_GETSET).

`may_hold_ports()` is False only when none of these exist, so skipping the readers then
gives exactly what they would have found: nothing. Anything that cannot be decided (a
refused or failed dump, no netlink) answers True, and the readers run as before.
"""
from __future__ import annotations

import _socket as socket  # the C module: socket.py builds IntEnums of every constant at import (~3 ms)
import os
import sys

from .errors import PortscopeError
from .netns import entered, proc_net_path

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETCHAIN = 4
NFT_MSG_GETSET = 10
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_DUMP_INTR = 0x10                   # the set of objects changed while the dump ran
NFTA_CHAIN_TABLE, NFTA_CHAIN_TYPE = 1, 7
NFTA_SET_NAME = 2
NFPROTO_IPV4, NFPROTO_IPV6 = 2, 10
LEGACY_FILES = ("ip_tables_names", "ip6_tables_names")
# struct nlmsghdr (u32 len, u16 type, u16 flags, u32 seq, u32 pid), struct nfgenmsg (u8 family,
# u8 version, be16 res_id), struct nlattr (u16 len, u16 type): host byte order, read with
# int.from_bytes (the struct module is a C extension loaded from disk, on `port N`'s path)
HDR_SIZE, GEN_SIZE = 16, 4
_ORDER = sys.byteorder
NLA_TYPE_MASK = 0x3FFF                   # without NLA_F_NESTED / NLA_F_NET_BYTEORDER


class Undecided(Exception):
    """The nf_tables dump could not be read: whether NAT exists is unknown."""


def legacy_nat_tables() -> list[str]:
    """The x_tables files (of the calling thread's namespace) that list a `nat` table."""
    out = []
    for name in LEGACY_FILES:
        try:
            with open(proc_net_path(name)) as f:
                if "nat" in f.read().split():
                    out.append(name)
        except OSError:         # absent: that x_tables module is not loaded, so it has no table
            pass
    return out


def _word(buf: bytes, pos: int, size: int, signed: bool = False) -> int:
    return int.from_bytes(buf[pos:pos + size], _ORDER, signed=signed)


def attrs(buf: bytes, start: int, end: int) -> dict[int, bytes]:
    """The netlink attributes in buf[start:end], type -> payload (the last of a repeated type)."""
    out = {}
    while start + 4 <= end:
        length, kind = _word(buf, start, 2), _word(buf, start + 2, 2)
        if length < 4:
            break
        out[kind & NLA_TYPE_MASK] = buf[start + 4:start + length]
        start += (length + 3) & ~3
    return out


def _text(b: bytes | None) -> str:
    return (b or b"").split(b"\0", 1)[0].decode("utf-8", "replace")


def nft_dump(sock: socket.socket, msg: int, seq: int) -> list[tuple[int, dict[int, bytes]]]:
    """(nfgen family, attributes) of every object one nf_tables dump request returns."""
    req = (HDR_SIZE + GEN_SIZE).to_bytes(4, _ORDER) + (NFNL_SUBSYS_NFTABLES << 8 | msg).to_bytes(2, _ORDER) \
        + (NLM_F_REQUEST | NLM_F_DUMP).to_bytes(2, _ORDER) + seq.to_bytes(4, _ORDER) + bytes(4) \
        + bytes(GEN_SIZE)               # NFPROTO_UNSPEC: every family; NFNETLINK_V0
    sock.send(req)
    out: list[tuple[int, dict[int, bytes]]] = []
    while True:
        buf = sock.recv(1 << 16)
        if not buf:
            raise Undecided("the nf_tables dump ended without NLMSG_DONE")
        pos = 0
        while pos + HDR_SIZE <= len(buf):
            length, kind, flags = _word(buf, pos, 4), _word(buf, pos + 4, 2), _word(buf, pos + 6, 2)
            mseq = _word(buf, pos + 8, 4)
            if length < HDR_SIZE or pos + length > len(buf):
                raise Undecided("a truncated netlink message")
            if mseq == seq:
                if flags & NLM_F_DUMP_INTR:
                    raise Undecided("the ruleset changed during the dump")
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    err = _word(buf, pos + HDR_SIZE, 4, signed=True)
                    if err:
                        raise Undecided(os.strerror(-err))
                elif kind >> 8 == NFNL_SUBSYS_NFTABLES:
                    family = buf[pos + HDR_SIZE]
                    out.append((family, attrs(buf, pos + HDR_SIZE + GEN_SIZE, pos + length)))
            pos += (length + 3) & ~3


def nft_nat_reasons() -> list[str]:
    """Why the nf_tables rule readers could find a NAT holder here (empty: they cannot);
    Undecided when the kernel's answer cannot be read."""
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    except OSError as e:
        raise Undecided(f"no NETLINK_NETFILTER socket: {e}")
    try:
        sock.settimeout(5)
        reasons = []
        for family, a in nft_dump(sock, NFT_MSG_GETCHAIN, 1):
            table = _text(a.get(NFTA_CHAIN_TABLE))
            if _text(a.get(NFTA_CHAIN_TYPE)) == "nat":
                reasons.append(f"nat chain in table {table}")
            elif table == "nat" and family in (NFPROTO_IPV4, NFPROTO_IPV6):
                reasons.append(f"iptables-nft table nat (family {family})")
        for _, a in nft_dump(sock, NFT_MSG_GETSET, 2):
            name = _text(a.get(NFTA_SET_NAME))
            if "nodeport" in name.lower():
                reasons.append(f"set {name}")
        return reasons
    except OSError as e:
        raise Undecided(str(e))
    finally:
        sock.close()


def nat_reasons() -> list[str] | None:
    """Every reason the NAT rule readers could find a held port in the calling thread's
    namespace: [] when they cannot (no legacy nat table, no nf_tables nat chain, table or
    NodePort set), None when that cannot be told (run the readers)."""
    if not sys.platform.startswith("linux"):
        return []
    try:
        return legacy_nat_tables() + nft_nat_reasons()
    except Undecided:
        return None


def may_hold_ports(netns: str | None = None) -> bool:
    """False only when no NAT rule can hold a port in `netns` (None: the calling thread's
    namespace); True when one can, or when that cannot be told."""
    try:
        with entered(netns):
            return nat_reasons() != []
    except (PortscopeError, OSError):     # the readers' own errors are their caller's to judge
        return True
