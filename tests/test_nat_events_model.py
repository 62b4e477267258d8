"""The event-kept SNAT book on hand-made ctnetlink messages: events applied by reply
tuple and CTA_ID, and the same destinations as SnatTally (a full dump) gives."""
from __future__ import annotations

import socket
import struct

from portscope.nat.events import IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_NEW, NLM_F_CREATE, SnatBook
from portscope.nat.rules import NatRule
from portscope.nat.snat import SnatTally

NESTED = 0x8000
SRC_NAT, ASSURED, CONFIRMED = 0x10, 0x4, 0x8
ESTABLISHED, TIME_WAIT = 3, 7


def attr(typ: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), typ) + payload
    return raw + bytes(-len(raw) % 4)


def nest(typ: int, *inner: bytes) -> bytes:
    return attr(typ | NESTED, b"".join(inner))


def tuple_(typ: int, src: str, dst: str, proto: int, sport: int, dport: int) -> bytes:
    return nest(typ, nest(1, attr(1, socket.inet_aton(src)), attr(2, socket.inet_aton(dst))),
                nest(2, attr(1, bytes((proto,))), attr(2, struct.pack(">H", sport)), attr(3, struct.pack(">H", dport))))


def message(kind: int, *, ct_id: int, sport: int, nat_port: int, status: int = SRC_NAT | ASSURED | CONFIRMED,
            proto: int = 6, state: int | None = ESTABLISHED, timeout: int = 100, dst: str = "203.0.113.2",
            dport: int = 5001, nat_ip: str = "198.51.100.1", zone: int = 0, flags: int = 0) -> bytes:
    """A ctnetlink conntrack message laid out as the kernel lays out events and dump replies."""
    body = (tuple_(1, "192.0.2.10", dst, proto, sport, dport) + tuple_(2, dst, nat_ip, proto, dport, nat_port)
            + (attr(18, struct.pack(">H", zone)) if zone else b"")
            + attr(12, struct.pack(">I", ct_id)) + attr(3, struct.pack(">I", status))
            + (attr(7, struct.pack(">I", timeout)) if kind != IPCTNL_MSG_CT_DELETE else b"")
            + (nest(4, nest(1, attr(1, bytes((state,))))) if state is not None else b""))
    payload = struct.pack("=BBH", socket.AF_INET, 0, 0) + body
    return struct.pack("=IHHII", 16 + len(payload), (1 << 8) | kind, flags, 0, 0) + payload


def new(**kw) -> bytes:
    return message(IPCTNL_MSG_CT_NEW, flags=NLM_F_CREATE | 0x200, **kw)


def reply(**kw) -> bytes:
    """One reply of a table dump (NLM_F_MULTI)."""
    return message(IPCTNL_MSG_CT_NEW, flags=0x2, **kw)


def update(**kw) -> bytes:
    return message(IPCTNL_MSG_CT_NEW, **kw)


def destroy(**kw) -> bytes:
    return message(IPCTNL_MSG_CT_DELETE, **kw)


def feed(book: SnatBook, *msgs: bytes, now: float = 1000.0) -> None:
    for m in msgs:
        assert book.apply(m, len(m), now) == 1


def summary(dests) -> list:
    return [(d.proto, d.nat_ip, d.dst, d.dport, d.in_use, d.time_wait, d.capacity, d.low, d.high) for d in dests]


def tally_of(*msgs: bytes, rules=()) -> list:
    """What a full dump of these entries gives (SnatTally, the existing path)."""
    t = SnatTally()
    for m in msgs:
        t.add(m, len(m))
    return summary(t.destinations(rules))


def test_new_update_to_time_wait_and_destroy():
    b = SnatBook()
    feed(b, new(ct_id=1, sport=40001, nat_port=1100, state=None), new(ct_id=2, sport=40002, nat_port=1101, state=None))
    assert summary(b.destinations()) == [("tcp", "198.51.100.1", "203.0.113.2", 5001, 2, 0, 64512, 1024, 65535)]
    feed(b, update(ct_id=1, sport=40001, nat_port=1100, state=TIME_WAIT, timeout=120))
    (d,) = b.destinations(now=1000.0)
    assert (d.in_use, d.time_wait, d.time_wait_timeout_max) == (2, 1, 120)
    # an UPDATE without CTA_PROTOINFO (status only) keeps the state and the deadline
    feed(b, update(ct_id=1, sport=40001, nat_port=1100, state=None, timeout=50), now=1010.0)
    (d,) = b.destinations(now=1010.0)
    assert (d.time_wait, d.time_wait_timeout_max) == (1, 110)
    feed(b, destroy(ct_id=1, sport=40001, nat_port=1100, state=None))
    assert summary(b.destinations())[0][4:6] == (1, 0)
    feed(b, destroy(ct_id=2, sport=40002, nat_port=1101))
    assert b.destinations() == [] and b.rows == 0 and b.keys == {}
    assert b.events == 6 and b.ignored == 0


def test_events_apply_only_to_the_entry_their_id_names():
    b = SnatBook()
    feed(b, new(ct_id=7, sport=40001, nat_port=1100))
    # an older entry of the same reply tuple going away, and an UPDATE of one the book never held
    feed(b, destroy(ct_id=6, sport=40001, nat_port=1100), update(ct_id=9, sport=40003, nat_port=1102, state=TIME_WAIT))
    assert b.rows == 1 and b.ignored == 2
    # a NEW of the tuple with another id replaces the entry (its DESTROY was missed)
    feed(b, new(ct_id=8, sport=40001, nat_port=1100, state=TIME_WAIT))
    assert b.rows == 1 and summary(b.destinations())[0][4:6] == (1, 1)
    feed(b, destroy(ct_id=7, sport=40001, nat_port=1100))
    assert b.rows == 1
    # flows that are not source-NATed are not counted, whatever their events
    feed(b, new(ct_id=20, sport=40009, nat_port=40009, status=ASSURED | CONFIRMED))
    assert b.rows == 1


def test_dump_seed_equals_snat_tally_and_events_confirm_entries():
    msgs = [reply(ct_id=i + 1, sport=40000 + i, nat_port=1100 + i, state=TIME_WAIT if i % 3 == 0 else ESTABLISHED,
                  dport=5001 + i % 2) for i in range(30)]
    msgs += [reply(ct_id=100 + i, sport=500 + i, nat_port=600 + i, proto=17, state=None, dport=53)
             for i in range(4)]                                    # original ports 512..1023: 600-1023
    msgs += [reply(ct_id=200, sport=80, nat_port=80, proto=17, state=None, dport=123)]   # < 512: 1-511
    b = SnatBook()
    blob = b"".join(msgs[:30])
    b.add_dump(blob, len(msgs[0]), now=0.0, known=SnatBook())
    for m in msgs[30:]:
        b.add_dump(m, len(m), now=0.0, known=SnatBook())
    assert summary(b.destinations()) == tally_of(*msgs)
    assert b.unconfirmed == b.rows == 35
    feed(b, update(ct_id=1, sport=40000, nat_port=1100, state=None))
    assert b.unconfirmed == 34
    # a resync keeps what events have confirmed
    again = SnatBook()
    again.add_dump(blob, len(msgs[0]), now=0.0, known=b)
    assert again.unconfirmed == 29


def test_range_of_a_rule_follows_the_ports_left_and_zones_count_a_port_once():
    rule = NatRule(table="nat", chain="POSTROUTING", kind="snat", proto="tcp", ports=(1100, 1199),
                   random=False, random_fully=False, source="iptables", family=4, to_addr="198.51.100.1")
    wide = NatRule(table="nat", chain="POSTROUTING", kind="snat", proto="tcp", ports=(1000, 1999),
                   random=False, random_fully=False, source="iptables", family=4, to_addr="198.51.100.1")
    b = SnatBook()
    a, c = new(ct_id=1, sport=40001, nat_port=1050), new(ct_id=2, sport=40002, nat_port=1150)
    feed(b, a, c)
    assert summary(b.destinations([rule, wide])) == tally_of(a, c, rules=[rule, wide])
    assert b.destinations([rule, wide])[0].capacity == 1000
    feed(b, destroy(ct_id=1, sport=40001, nat_port=1050))     # the lowest port left: the narrow rule fits
    assert summary(b.destinations([rule, wide])) == tally_of(c, rules=[rule, wide])
    assert b.destinations([rule, wide])[0].capacity == 100
    z = new(ct_id=3, sport=40002, nat_port=1150, zone=7)      # the same reply tuple in another zone
    feed(b, z)
    assert b.rows == 2 and b.destinations()[0].in_use == 1 == tally_of(c, z)[0][4]


def test_dump_runs_that_cannot_be_added_in_bulk_are_read_entry_by_entry():
    a = reply(ct_id=1, sport=40001, nat_port=1100)
    plain = reply(ct_id=2, sport=40002, nat_port=40002, status=ASSURED | CONFIRMED)   # not NATed (an old kernel)
    twice = reply(ct_id=3, sport=40003, nat_port=1101)
    for run in ([a, plain, twice], [a, twice, twice]):
        b = SnatBook()
        b.add_dump(b"".join(run), len(a), now=0.0, known=SnatBook())
        assert summary(b.destinations()) == tally_of(*run)
        assert b.rows == 2 and b.unconfirmed == 2
    b = SnatBook()
    b.add_dump(a + twice, len(a), now=0.0, known=SnatBook())
    b.add_dump(twice, len(a), now=0.0, known=SnatBook())          # a tuple the book holds already
    assert b.rows == 2 and summary(b.destinations())[0][4] == 2
