"""The RFC 6056 section 3.3 algorithms, and a sequential allocator, for comparison.

Each uses the RFC's pseudo-code over the whole range [min, max] (no parity
split), treats reserved and bind-held ports as unsuitable, and checks
suitability against the (source, destination) pair like connect() does.
"""
from __future__ import annotations

import random

from .alloc_base import Allocator, free
from .space import PortSpace


class _Rfc(Allocator):
    def __init__(self, space: PortSpace, rng: random.Random):
        super().__init__(space, rng)
        self.min = space.low
        self.num = space.high - space.low + 1

    def ok(self, port, used, now, reuse_after) -> bool:
        return port not in self.skip and free(used, port, now, reuse_after)


class Rfc1(_Rfc):
    """Algorithm 1, simple port randomization: random start, then +1 with wrap."""

    name = "rfc6056-1"

    def choose(self, kid: int, used: dict, now: float, reuse_after: float | None) -> tuple[int, int]:
        """(port, candidates examined) by this algorithm's search; (-1, steps) when no port is free."""
        num, lo = self.num, self.min
        nxt = self.rng.randrange(num)
        for steps in range(1, num + 1):
            port = lo + nxt
            if self.ok(port, used, now, reuse_after):
                return port, steps
            nxt = 0 if nxt == num - 1 else nxt + 1
        return -1, num


class Rfc2(_Rfc):
    """Algorithm 2: a fresh random port at every try, num tries - so it can give
    up while free ports remain."""

    name = "rfc6056-2"

    def choose(self, kid: int, used: dict, now: float, reuse_after: float | None) -> tuple[int, int]:
        """(port, candidates examined) by this algorithm's search; (-1, steps) when no port is free."""
        num, lo, rnd = self.num, self.min, self.rng.randrange
        for steps in range(1, num + 1):
            port = lo + rnd(num)
            if self.ok(port, used, now, reuse_after):
                return port, steps
        return -1, num


class Rfc3(_Rfc):
    """Algorithm 3, simple hash-based: port = min + (next_ephemeral + F(pair)) % num,
    one global counter incremented at every try."""

    name = "rfc6056-3"
    keyed = True

    def __init__(self, space: PortSpace, rng: random.Random) -> None:
        super().__init__(space, rng)
        self.next = rng.getrandbits(16)

    def choose(self, kid: int, used: dict, now: float, reuse_after: float | None) -> tuple[int, int]:
        """(port, candidates examined) by this algorithm's search; (-1, steps) when no port is free."""
        num, lo = self.num, self.min
        offset = self.key_hash(kid)
        for steps in range(1, num + 1):
            port = lo + (self.next + offset) % num
            self.next += 1
            if self.ok(port, used, now, reuse_after):
                return port, steps
        return -1, num


class Rfc4(_Rfc):
    """Algorithm 4, double-hash: port = min + (F(pair) + table[G(pair)]) % num with
    the RFC's TABLE_LENGTH of 10, the slot incremented at every try."""

    name = "rfc6056-4"
    keyed = True
    TABLE_LENGTH = 10

    def __init__(self, space: PortSpace, rng: random.Random) -> None:
        super().__init__(space, rng)
        self.table = [rng.getrandbits(16) for _ in range(self.TABLE_LENGTH)]

    def choose(self, kid: int, used: dict, now: float, reuse_after: float | None) -> tuple[int, int]:
        """(port, candidates examined) by this algorithm's search; (-1, steps) when no port is free."""
        num, lo, table = self.num, self.min, self.table
        h = self.key_hash(kid)
        offset, index = h >> 32, (h & 0xFFFFFFFF) % self.TABLE_LENGTH
        for steps in range(1, num + 1):
            port = lo + (offset + table[index]) % num
            table[index] += 1
            if self.ok(port, used, now, reuse_after):
                return port, steps
        return -1, num


class Rfc5(_Rfc):
    """Algorithm 5, random-increments: next += random(1..N), N = 500 (the RFC's
    suggested default)."""

    name = "rfc6056-5"
    N = 500

    def __init__(self, space: PortSpace, rng: random.Random) -> None:
        super().__init__(space, rng)
        self.next = rng.randrange(self.num)

    def choose(self, kid: int, used: dict, now: float, reuse_after: float | None) -> tuple[int, int]:
        """(port, candidates examined) by this algorithm's search; (-1, steps) when no port is free."""
        num, lo, rnd, n = self.num, self.min, self.rng.randrange, self.N
        for steps in range(1, num + 1):
            self.next += rnd(n) + 1
            port = lo + self.next % num
            if self.ok(port, used, now, reuse_after):
                return port, steps
        return -1, num


class Sequential(_Rfc):
    """One global counter, +1 per try (old BSD stacks, many NATs)."""

    name = "sequential"

    def __init__(self, space: PortSpace, rng: random.Random) -> None:
        super().__init__(space, rng)
        self.next = 0

    def choose(self, kid: int, used: dict, now: float, reuse_after: float | None) -> tuple[int, int]:
        """(port, candidates examined) by this algorithm's search; (-1, steps) when no port is free."""
        num, lo = self.num, self.min
        for steps in range(1, num + 1):
            port = lo + self.next
            self.next = (self.next + 1) % num
            if self.ok(port, used, now, reuse_after):
                return port, steps
        return -1, num
