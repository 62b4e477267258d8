"""Linux UDP autobind (udp_lib_get_port with snum 0)."""
from __future__ import annotations

import random

from .alloc_base import GLOBAL, Allocator
from .space import PortSpace

UDP_HASH_SIZE = 16384  # "UDP hash table entries" in dmesg; sized from RAM at boot


class UdpAutobind(Allocator):
    """A random first port; then hash slot by hash slot (first, first+1, ...,
    first+size-1), and inside a slot the ports congruent to it mod the table
    size, stepping by an odd multiple of the size (mod 2^16). No parity
    preference, no sharing across destinations or source IPs: autobind runs
    before connect() picks the source address (inet_dgram_connect), so the
    socket is bound to the wildcard address and its port conflicts with every
    other socket on it; each socket holds its port for the whole host until
    closed, and UDP has no TIME_WAIT."""

    name = "udp"
    scope = GLOBAL

    def __init__(self, space: PortSpace, rng: random.Random, hash_size: int = UDP_HASH_SIZE) -> None:
        super().__init__(space, rng)
        if hash_size & (hash_size - 1) or not 128 <= hash_size <= 65536:
            raise ValueError("--udp-hash-size must be a power of two from 128 to 65536 (the sizes the "
                             f"kernel's UDP hash table can have), got {hash_size!r}")
        self.hash_size = hash_size

    def choose(self, kid: int, used: dict, now: float, reuse_after: float | None) -> tuple[int, int]:
        """The port udp_lib_get_port() would autobind, and the candidates examined; (-1, steps) when none is free."""
        low, high, skip, size = self.space.low, self.space.high, self.skip, self.hash_size
        remaining = high - low + 1
        rand = self.rng.getrandbits(32)
        first = ((rand * remaining) >> 32) + low  # reciprocal_scale
        stride = (((rand | 1) & 0xFFFFFFFF) * size) & 0xFFFF  # snum is an unsigned short
        last = (first + size) & 0xFFFF
        steps = 0
        while True:
            snum = first
            while True:
                if low <= snum <= high:
                    steps += 1
                    if snum not in used and snum not in skip:
                        return snum, steps
                snum = (snum + stride) & 0xFFFF
                if snum == first:
                    break
            first = (first + 1) & 0xFFFF
            if first == last:
                return -1, steps
