"""Linux's TCP allocators: connect() (__inet_hash_connect) and bind(0)
(inet_csk_find_open_port), kernel 6.8+ behaviour."""
from __future__ import annotations

import random

from ..ports import PortRange
from .alloc_base import GLOBAL, TUPLE, Allocator, free
from .space import PortSpace

PERTURB_ORDER = 16  # CONFIG_INET_TABLE_PERTURB_ORDER default: 65,536 entries
U32 = 0xFFFFFFFF


class LinuxConnect(Allocator):
    """RFC 6056 algorithm 4 as Linux does it: per-destination hash picks a slot of
    the 2^16 perturbation table; the scan starts at low + offset, walks with step
    2 over ports of low's parity, then the other parity; reserved and bind-held
    ports are skipped; ports already used towards other destinations are shared
    when the 4-tuple is unique. On success the slot advances by
    max(i, random(0..7)*step) + step, so the next start moves past the port just
    taken. With IP_LOCAL_PORT_RANGE set on the socket (socket_range) the kernel
    uses step 1 and a single pass, no parity split."""

    name = "linux"
    scope = TUPLE
    parity = "low"

    def __init__(self, space: PortSpace, rng: random.Random, socket_range: PortRange | None = None,
                 perturb_order: int = PERTURB_ORDER):
        super().__init__(space, rng)
        low, high = space.low, space.high
        self.step = 2
        if socket_range is not None:
            # bounds that are outside the netns range are ignored by the kernel
            lo = socket_range.low if low <= socket_range.low <= high else low
            hi = socket_range.high if low <= socket_range.high <= high else high
            if lo <= hi:
                low, high = lo, hi
            self.step = 1
            self.parity = None
        self.low = low
        self.high_x = high + 1  # the kernel's high++: [low, high_x)
        remaining = self.high_x - low
        if self.step == 2 and remaining > 1:
            remaining &= ~1
        self.remaining = remaining
        self.mask = (1 << perturb_order) - 1
        # get_random_sleepable_once fills the table with random bytes
        self.perturb = [rng.getrandbits(32) for _ in range(1 << perturb_order)]

    def choose(self, kid, used, now, reuse_after):
        po = self._keys.get(kid)
        if po is None:
            po = self.key_hash(kid)
        index = po & self.mask
        perturb = self.perturb
        remaining = self.remaining
        step = self.step
        low = self.low
        high_x = self.high_x
        skip = self.skip
        offset = ((perturb[index] + (po >> 32)) & U32) % remaining
        if step == 2:
            offset &= ~1
        steps = 0
        while True:
            port = low + offset
            i = 0
            while i < remaining:
                if port >= high_x:
                    port -= remaining
                steps += 1
                if port not in skip and (port not in used or free(used, port, now, reuse_after)):
                    r = self.rng.getrandbits(3) * step  # get_random_u32_below(8) * step
                    perturb[index] = (perturb[index] + (i if i > r else r) + step) & U32
                    return port, steps
                i += step
                port += step
            if step == 2:
                offset += 1
                if offset & 1 and remaining > 1:
                    continue  # other_parity_scan
            return -1, steps


class LinuxBind(Allocator):
    """bind(addr, 0) without SO_REUSEADDR: a random start forced to odd offset
    (the parity connect() does not prefer), step 2, then the other parity. The
    port is held for every destination, so the engine passes one global map."""

    name = "linux-bind"
    scope = GLOBAL
    parity = "other"

    def __init__(self, space: PortSpace, rng: random.Random):
        super().__init__(space, rng)
        self.low = space.low
        self.high_x = space.high + 1
        remaining = self.high_x - self.low
        if remaining > 1:
            remaining &= ~1
        self.remaining = remaining

    def choose(self, kid, used, now, reuse_after):
        remaining, low, high_x, skip = self.remaining, self.low, self.high_x, self.skip
        offset = self.rng.randrange(remaining) | 1  # get_random_u32_below(remaining) | 1
        steps = 0
        while True:
            port = low + offset
            i = 0
            while i < remaining:
                if port >= high_x:
                    port -= remaining
                steps += 1
                # any socket or TIME_WAIT on the port conflicts (no SO_REUSEADDR)
                if port not in skip and port not in used:
                    return port, steps
                i += 2
                port += 2
            offset -= 1
            if not offset & 1:
                continue
            return -1, steps
