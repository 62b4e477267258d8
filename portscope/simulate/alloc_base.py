"""What every allocator model shares.

An allocator answers one question: which port does the next socket get?
`choose(kid, used, now, reuse_after)` returns (port, steps) or (-1, steps) when
the search fails (EADDRNOTAVAIL / EAGAIN). `kid` names the pool
the port comes from; `used` maps port -> -1.0 for a live socket or the TIME_WAIT
start time. For "tuple" scope a pool is one (source IP, destination) pair and
the engine passes that pair's own map (connect() shares a port across
destinations while the 4-tuple is unique); for "source" scope a pool is one
source IP (bind(IP, 0): the port is held for every destination, but another
specific IP may bind the same port); for "global" scope one map serves the
whole host (UDP autobind, which binds before a source address is chosen).
`steps` counts the candidates examined: the latency proxy.
"""
from __future__ import annotations

import random

from .space import PortSpace

TUPLE = "tuple"
SOURCE = "source"
GLOBAL = "global"
M64 = (1 << 64) - 1
KEY_CACHE = 1 << 20  # cached pair hashes; the hash is a pure function, so clearing is harmless


def mix64(x: int) -> int:
    """splitmix64's finalizer: a bijection on 64-bit ints that spreads every bit."""
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def free(used: dict, port: int, now: float, reuse_after: float | None) -> bool:
    """A port is free for this pair if nothing holds it, or only a TIME_WAIT that
    tcp_tw_reuse lets a new outgoing connection take over."""
    v = used.get(port)
    if v is None:
        return True
    return v >= 0.0 and reuse_after is not None and now - v >= reuse_after


class Allocator:
    """Base of every allocator model: the port space, the run's random source, the keyed hash."""

    name = "?"
    scope = TUPLE
    # the parity preference, for reports: "low" (connect), "other" (bind), None
    parity: str | None = None
    keyed = False  # uses key_hash: draws a per-run secret

    def __init__(self, space: PortSpace, rng: random.Random) -> None:
        self.space = space
        self.rng = rng
        self.skip = space.skip
        self._keys: dict[int, int] = {}
        self._secret = rng.getrandbits(64) if self.keyed else 0

    def key_hash(self, kid: int) -> int:
        """A 64-bit keyed hash of (saddr, daddr, dport): the kernel uses siphash
        with a boot-time secret; a mix of the pair id with a per-run secret
        imitates it. A pure function, so no per-pair state has to be kept: the
        cache only saves time and is dropped when it grows large."""
        h = self._keys.get(kid)
        if h is None:
            if len(self._keys) >= KEY_CACHE:
                self._keys.clear()
            h = self._keys[kid] = mix64(self._secret ^ kid)
        return h

    def choose(self, kid: int, used: dict, now: float, reuse_after: float | None) -> tuple[int, int]:
        """(port, candidates examined) for the next socket of pool `kid`; (-1, steps) when the
        search fails (see the module doc). Each model implements it."""
        raise NotImplementedError
