"""filters.mark_ephemeral decides every row in C, from one packed byte of facts per row;
here it is held to the rules written out row by row (the decision as docs/conns.md
describes it), over every combination of those facts and over random tables."""
from __future__ import annotations

import itertools
import random

from portscope.ports import PortRange, PortSet
from portscope.sockets import filters
from portscope.sockets.table import (
    AUTO_NO,
    AUTO_UNKNOWN,
    AUTO_YES,
    EPH_LOCAL,
    EPH_NONE,
    EPH_REMOTE,
    METHOD_KERNEL,
    METHOD_RANGE,
    TCP_LISTEN,
    SocketTable,
)


def _rule(proto, state, lp, rp, ab, ephemeral: PortRange, reserved: PortSet | None, listen: set):
    """(ephemeral, method, auto_bound) of one row, decided the plain way."""
    def auto(p):
        return ephemeral.low <= p <= ephemeral.high and not (reserved is not None and p in reserved)
    listened = (proto, lp) in listen
    if ab == AUTO_YES:
        if listened:            # accepted: the clone of a listener
            return (EPH_REMOTE, METHOD_RANGE, AUTO_NO) if auto(rp) else (EPH_NONE, METHOD_KERNEL, AUTO_NO)
        return EPH_LOCAL, METHOD_KERNEL, AUTO_YES
    if ab == AUTO_NO:
        if state != TCP_LISTEN and rp and auto(rp):
            return EPH_REMOTE, METHOD_RANGE, AUTO_NO
        return EPH_NONE, METHOD_KERNEL, AUTO_NO
    if state == TCP_LISTEN:
        side = EPH_NONE
    elif rp == 0:
        side = EPH_LOCAL if auto(lp) else EPH_NONE
    elif listened:
        side = EPH_REMOTE if auto(rp) else EPH_NONE
    else:
        side = EPH_LOCAL if auto(lp) else EPH_REMOTE if auto(rp) else EPH_NONE
    return side, METHOD_RANGE, AUTO_UNKNOWN


def _check(rows, listen, ephemeral, reserved=None):
    t = SocketTable(backend="procfs")
    for proto, state, lp, rp, ab in rows:
        t.append(proto, 4, state, b"\x7f\0\0\1", lp, b"\x7f\0\0\1", rp, 0, 0, ab)
    t.listen_ports.update(listen)
    filters.mark_ephemeral(t, ephemeral, reserved)
    got = list(zip(t.ephemeral, t.method, t.auto_bound))
    want = [_rule(*r, ephemeral, reserved, listen) for r in rows]
    assert got == want


def test_every_combination_of_the_facts_a_row_is_decided_by():
    rng = PortRange(32768, 60999)
    listen = {(6, 8080), (6, 40000), (17, 5353), (132, 3868)}
    ports = [0, 80, 8080, 40000, 45000, 5353, 3868, 61000]
    rows = list(itertools.product([6, 17, 136, 132], [1, 6, 7, 10, 12], ports, ports, [AUTO_NO, AUTO_YES, AUTO_UNKNOWN]))
    _check(rows, listen, rng)
    _check(rows, listen, rng, PortSet.parse("45000,40000-40010"))


def test_random_tables():
    r = random.Random(16)
    for _ in range(200):
        ports = [r.randrange(65536) for _ in range(6)] + [0, 1024, 32768, 60999]
        listen = {(r.choice([6, 17, 132, 99]), r.choice(ports)) for _ in range(r.randrange(4))}
        rows = [(r.choice([6, 17, 136, 132, 99]), r.choice([1, 2, 3, 6, 7, 10, 12, 13, 42]), r.choice(ports),
                 r.choice(ports), r.choice([AUTO_NO, AUTO_YES, AUTO_UNKNOWN])) for _ in range(r.randrange(60))]
        low = r.choice([1, 1024, 32768])
        _check(rows, listen, PortRange(low, r.choice([low, 40000, 65535])),
               PortSet.parse(r.choice(["50000-50010", "40000", "80,60999"])) if r.random() < 0.5 else None)


def test_no_rows():
    _check([], set(), PortRange(32768, 60999))
