"""The census of netlink.read_table (census=True) on recorded reply heads: which rows it
counts as full sockets, and when it cannot decide (then the second walk runs)."""
from __future__ import annotations

from portscope.ports import PortRange
from portscope.sockets import netlink as nl


def _head(state: int, timer: int, sport: int = 40000) -> bytearray:
    h = bytearray(nl.HEAD)
    h[17], h[18] = state, timer
    h[20:22] = sport.to_bytes(2, "big")
    return h


def test_syn_recv_rows_leave_the_count_undecided():
    """A SYN_RECV row may be a request socket (not in the kernel's count) or a full one
    (in it): the count cannot settle it, so the second walk runs."""
    c = nl._Census(None)
    c.before = c.after = 1
    c.take({nl.HEAD: _head(3, 1)})
    assert c.full == 1 and not c.complete()


def test_time_wait_and_bound_only_rows_are_not_full_sockets():
    c = nl._Census(None)
    c.before = c.after = 1
    # TIME_WAIT (timer 3), a FIN_WAIT2 timewait socket (timer 3), bound-only (CLOSE), established
    c.take({nl.HEAD: _head(6, 3) + _head(5, 3) + _head(7, 0) + _head(1, 0)})
    assert c.full == 1 and c.complete()
    c.after = 2                                  # a socket came or went during the walk
    assert not c.complete()


def test_rows_outside_the_range_are_counted_then_dropped():
    c = nl._Census(PortRange(32768, 60999))
    c.before = c.after = 3
    kept = c.take({nl.HEAD: _head(1, 0, 5000) + _head(1, 0, 40000) + _head(10, 0, 80)})
    assert c.complete()
    assert bytes(kept[nl.HEAD]) == bytes(_head(1, 0, 40000))


def test_no_count_no_skip():
    c = nl._Census(None)
    c.before, c.after = None, None
    c.take({nl.HEAD: _head(1, 0)})
    assert not c.complete()
