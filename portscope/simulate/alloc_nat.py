"""netfilter's SNAT port choice (nf_nat_core.c: get_unique_tuple and
nf_nat_l4proto_unique_tuple), one pool per (NAT IP, destination IP, destination port).

1. Without --random-fully the original source port is kept when it lies in the NAT
   range and its tuple is free. The original port is the client's own ephemeral port,
   drawn here from the default ip_local_port_range 32768-60999.
2. Otherwise: a random u16 offset (SNAT uses a random start in both the plain and the
   --random modes since the 2023 fix of 6ed5943f8735), and candidate
   `low + off % size`, off++ (a u16, so it wraps at 65536), for at most
   min(size, 128) attempts. If every one is taken and attempts < size and attempts
   >= 16, it halves the attempts, draws a new offset and goes again. So SNAT can fail
   before its range is full when the range has more than 128 ports.
3. Linux 6.5+: in a round's last 32 attempts a TCP SYN may evict a colliding entry in
   TIME_WAIT whose sequence number it has passed. With random initial sequence numbers
   that is a coin toss, modelled as probability 1/2 (`evict_tw`).

Ports are held by conntrack entries: ESTABLISHED while open, then TIME_WAIT for
nf_conntrack_tcp_timeout_time_wait (120 s by default). ip_local_reserved_ports does
not apply.
"""
from __future__ import annotations

import random

from .alloc_base import TUPLE, Allocator
from .space import PortSpace

MAX_ATTEMPTS = 128          # NF_NAT_MAX_ATTEMPTS
HARDER_THRESH = 32          # NF_NAT_HARDER_THRESH = MAX_ATTEMPTS / 4
CLIENT_RANGE = (32768, 60999)
CONNTRACK_TIME_WAIT = 120.0


class NatSnat(Allocator):
    """netfilter's SNAT port choice (see the module docstring)."""
    name = "nat"
    scope = TUPLE

    def __init__(self, space: PortSpace, rng: random.Random, *, random_fully: bool = False,
                 evict_tw: bool = True) -> None:
        super().__init__(space, rng)
        self.random_fully = random_fully
        self.evict_tw = evict_tw

    def choose(self, kid: int, used: dict, now: float, reuse_after: float | None) -> tuple[int, int]:
        """(NAT port, candidates examined), or (-1, examined) when SNAT gives up."""
        low, high = self.space.low, self.space.high
        size = high - low + 1
        rng = self.rng
        steps = 0
        if not self.random_fully:
            orig = rng.randint(*CLIENT_RANGE)
            if low <= orig <= high:
                steps += 1
                if orig not in used:
                    return orig, steps
        off = rng.getrandbits(16)
        attempts = min(size, MAX_ATTEMPTS)
        while True:
            for i in range(attempts):
                port = low + off % size
                off = (off + 1) & 0xFFFF
                steps += 1
                v = used.get(port)
                if v is None:
                    return port, steps
                if (self.evict_tw and v >= 0.0 and attempts - i <= HARDER_THRESH
                        and rng.random() < 0.5):
                    return port, steps          # the TIME_WAIT entry is killed and reused
            if attempts >= size or attempts < 16:
                return -1, steps
            attempts //= 2
            off = rng.getrandbits(16)
