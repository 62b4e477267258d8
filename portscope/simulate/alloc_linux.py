"""Linux's TCP allocators: connect() (__inet_hash_connect) and bind(0)
(inet_csk_find_open_port), kernel 6.8+ behaviour.

Both walk the range from a start offset with step 2 (one parity, then the
other). Walking port by port is exact but costs O(range) per connect once the
range is nearly full, which is exactly when users care. So a pair whose walk
gets long becomes "hot": it gets a bitset of free ports (bit v = port low+v),
kept current by the engine, and the walk becomes two masked find-first-set
operations on Python ints. Same port, same step count, same perturbation
update - only faster.
"""
from __future__ import annotations

import random

from ..ports import PortRange
from .alloc_base import SOURCE, TUPLE, Allocator, free
from .space import PortSpace

PERTURB_ORDER = 16  # CONFIG_INET_TABLE_PERTURB_ORDER default: 65,536 entries
U32 = 0xFFFFFFFF
HOT_STEPS = 48  # a walk longer than this makes the pair hot


class _Walker(Allocator):
    """The kernel's walk over [low, high_x) with wrap by `remaining`."""

    step = 2

    def _setup(self, low: int, high: int, step: int) -> None:
        self.low = low
        self.high_x = high + 1  # the kernel's high++: [low, high_x)
        self.step = step
        remaining = self.high_x - low
        if step == 2 and remaining > 1:
            remaining &= ~1
        self.remaining = remaining
        self.size_x = self.high_x - low
        self.passlen = -(-remaining // step)
        # bit pattern 1010...1 selecting every other position
        self.alt = int("01" * (self.size_x // 2 + 1), 2) if step == 2 else -1
        self.bits: dict[int, int] = {}  # hot pair -> free-port bitset

    # -- bitsets, kept current by the engine for hot pairs
    def build(self, key: int, used: dict, now: float, reuse_after) -> None:
        x = 0
        low, skip = self.low, self.skip
        for v in range(self.size_x):
            p = low + v
            if p not in skip and free(used, p, now, reuse_after):
                x |= 1 << v
        self.bits[key] = x

    def release(self, key: int, port: int) -> None:
        v = port - self.low
        if 0 <= v < self.size_x and port not in self.skip:
            self.bits[key] |= 1 << v

    def occupy(self, key: int, port: int) -> None:
        v = port - self.low
        if 0 <= v < self.size_x:
            self.bits[key] &= ~(1 << v)

    def _first(self, x: int, a: int, count: int) -> int:
        """Index j (0-based, in walk order) of the first free position among
        a, a+step, ..., (count positions), or -1."""
        if count <= 0:
            return -1
        step = self.step
        y = (x >> a) & ((1 << ((count - 1) * step + 1)) - 1)
        if step == 2:
            y &= self.alt
        if not y:
            return -1
        return ((y & -y).bit_length() - 1) // step

    def _walk_bits(self, x: int, offset: int) -> tuple[int, int]:
        """(port, j) for one pass from offset, or (-1, passlen)."""
        step, n = self.step, self.passlen
        # run A: positions offset + j*step below size_x; run B: the wrapped rest
        na = min(n, max(0, -(-(self.size_x - offset) // step)))
        j = self._first(x, offset, na)
        if j >= 0:
            return self.low + offset + j * step, j
        vb = offset + na * step - self.remaining
        j = self._first(x, vb, n - na) if n > na else -1
        if j >= 0:
            return self.low + vb + j * step, na + j
        return -1, n

    def _walk_slow(self, used, now, reuse_after, offset) -> tuple[int, int]:
        remaining, step, high_x, skip = self.remaining, self.step, self.high_x, self.skip
        port = self.low + offset
        i = 0
        j = 0
        while i < remaining:
            if port >= high_x:
                port -= remaining
            if port not in skip and (port not in used or free(used, port, now, reuse_after)):
                return port, j
            i += step
            port += step
            j += 1
        return -1, j

    def _walk(self, key, used, now, reuse_after, offset) -> tuple[int, int]:
        x = self.bits.get(key)
        if x is not None:
            return self._walk_bits(x, offset)
        port, j = self._walk_slow(used, now, reuse_after, offset)
        if j >= HOT_STEPS:
            self.build(key, used, now, reuse_after)
            if port >= 0:
                self.occupy(key, port)  # the engine takes it right after we return
        return port, j


class LinuxConnect(_Walker):
    """RFC 6056 algorithm 4 as Linux does it: a per-destination hash picks a slot
    of the 2^16 perturbation table; the walk starts at low + offset (offset made
    even), step 2 over ports of low's parity, then the other parity; reserved and
    bind-held ports are skipped; ports used towards other destinations are shared
    when the 4-tuple is unique. On success the slot advances by
    max(i, random(0..7)*step) + step. With IP_LOCAL_PORT_RANGE on the socket
    (socket_range) the kernel walks with step 1 in one pass, no parity split."""

    name = "linux"
    scope = TUPLE
    parity: str | None = "low"
    keyed = True

    def __init__(self, space: PortSpace, rng: random.Random, socket_range: PortRange | None = None,
                 perturb_order: int = PERTURB_ORDER) -> None:
        super().__init__(space, rng)
        low, high, step = space.low, space.high, 2
        if socket_range is not None:
            low, high = space.clamp(socket_range)  # bounds outside the netns range are ignored
            step = 1
            self.parity = None
        self._setup(low, high, step)
        self.mask = (1 << perturb_order) - 1
        # get_random_sleepable_once fills the table with random bytes
        self.perturb = [rng.getrandbits(32) for _ in range(1 << perturb_order)]

    def choose(self, kid: int, used: dict, now: float, reuse_after: float | None) -> tuple[int, int]:
        """The port __inet_hash_connect() would give for pool `kid`, and the candidates it examined; (-1, steps) when the search fails."""
        po = self._keys.get(kid)
        if po is None:
            po = self.key_hash(kid)
        index = po & self.mask
        perturb = self.perturb
        step = self.step
        offset = ((perturb[index] + (po >> 32)) & U32) % self.remaining
        # fast path: the first candidate is free (most connects, far from full)
        port = self.low + (offset & ~1 if step == 2 else offset)
        if port >= self.high_x:
            port -= self.remaining
        v = used.get(port)
        if ((v is None or (v >= 0.0 and reuse_after is not None and now - v >= reuse_after))
                and port not in self.skip and kid not in self.bits):
            r = self.rng.getrandbits(3) * step
            perturb[index] = (perturb[index] + r + step) & U32
            return port, 1
        if step == 2:
            offset &= ~1
        port, j = self._walk(kid, used, now, reuse_after, offset)
        steps = j + 1
        if port < 0 and step == 2 and self.remaining > 1:
            port, j = self._walk(kid, used, now, reuse_after, offset + 1)  # other_parity_scan
            steps = self.passlen + j + 1
        if port < 0:
            return -1, steps - 1
        i = j * step
        r = self.rng.getrandbits(3) * step  # get_random_u32_below(8) * step
        perturb[index] = (perturb[index] + (i if i > r else r) + step) & U32
        return port, steps


class LinuxBind(_Walker):
    """bind(addr, 0) without SO_REUSEADDR: a random start forced to an odd
    offset (the parity connect() does not prefer), step 2, then the other
    parity. The port is held for every destination. Scope "source": each
    source IP binds its own specific address, and inet_csk_bind_conflict only
    sees a conflict between sockets whose bound addresses are equal (or one is
    the wildcard), so another IP may take the same port. bind(0.0.0.0, 0)
    conflicts with every address: model that as one source."""

    name = "linux-bind"
    scope = SOURCE
    parity: str | None = "other"

    def __init__(self, space: PortSpace, rng: random.Random) -> None:
        super().__init__(space, rng)
        self._setup(space.low, space.high, 2)

    def choose(self, kid: int, used: dict, now: float, reuse_after: float | None) -> tuple[int, int]:
        """The port inet_csk_find_open_port() would give bind(IP, 0), and the candidates examined; (-1, steps) when none is free."""
        # any socket or TIME_WAIT on the port conflicts: no tw_reuse for bind
        offset = self.rng.randrange(self.remaining) | 1  # get_random_u32_below(remaining) | 1
        port, j = self._walk(kid, used, now, None, offset)
        steps = j + 1
        if port < 0 and self.remaining > 1:
            port, j = self._walk(kid, used, now, None, offset - 1)
            steps = self.passlen + j + 1
        if port < 0:
            return -1, steps - 1
        return port, steps
