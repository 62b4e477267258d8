"""What every allocator model shares.

An allocator answers one question: which port does the next socket get?
`choose(kid, used, now, reuse_after)` returns (port, steps) or (-1, steps) when
the search fails (EADDRNOTAVAIL / EAGAIN). `kid` names the (source IP,
destination) pair; `used` maps port -> -1.0 for a live socket or the TIME_WAIT
start time. For "tuple" scope the engine passes that pair's own map (connect()
shares a port across destinations while the 4-tuple is unique); for "global"
scope it passes one map for the whole host (bind(0), UDP autobind).
`steps` counts the candidates examined: the latency proxy.
"""
from __future__ import annotations

import random

from .space import PortSpace

TUPLE = "tuple"
GLOBAL = "global"


def free(used: dict, port: int, now: float, reuse_after: float | None) -> bool:
    """A port is free for this pair if nothing holds it, or only a TIME_WAIT that
    tcp_tw_reuse lets a new outgoing connection take over."""
    v = used.get(port)
    if v is None:
        return True
    return v >= 0.0 and reuse_after is not None and now - v >= reuse_after


class Allocator:
    name = "?"
    scope = TUPLE
    # the parity preference, for reports: "low" (connect), "other" (bind), None
    parity = None

    def __init__(self, space: PortSpace, rng: random.Random):
        self.space = space
        self.rng = rng
        self.skip = space.skip
        self._keys: dict[int, int] = {}

    def key_hash(self, kid: int) -> int:
        """A 64-bit keyed hash of (saddr, daddr, dport): the kernel uses siphash
        with a boot-time secret, which a fresh random value per pair imitates."""
        h = self._keys.get(kid)
        if h is None:
            h = self._keys[kid] = self.rng.getrandbits(64)
        return h

    def choose(self, kid: int, used: dict, now: float, reuse_after: float | None) -> tuple[int, int]:
        raise NotImplementedError
