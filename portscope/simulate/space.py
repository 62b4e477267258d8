"""The port space an allocator hands out from: range, reserved ports, bind-held ports."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import BadInput
from ..ports import PortRange, PortSet


@dataclass(frozen=True)
class PortSpace:
    """range: the netns ip_local_port_range; reserved: ip_local_reserved_ports;
    listeners: ports held by an explicit bind() (listeners, bind-before-connect),
    which connect() never shares (their bind bucket has fastreuse >= 0)."""

    range: PortRange
    reserved: PortSet = PortSet()
    listeners: PortSet = PortSet()

    @property
    def low(self) -> int:
        """The range's first port."""
        return self.range.low

    @property
    def high(self) -> int:
        """The range's last port."""
        return self.range.high

    @property
    def skip(self) -> frozenset[int]:
        """Ports every automatic choice passes over, restricted to the range."""
        r = self.range
        out = {p for p in self.reserved if p in r}
        out.update(p for p in self.listeners if p in r)
        return frozenset(out)

    def clamp(self, socket_range: PortRange) -> tuple[int, int]:
        """IP_LOCAL_PORT_RANGE on a socket: bounds outside the netns range are
        ignored by the kernel (each bound separately); an empty result keeps the range."""
        low, high = self.low, self.high
        lo = socket_range.low if low <= socket_range.low <= high else low
        hi = socket_range.high if low <= socket_range.high <= high else high
        return (lo, hi) if lo <= hi else (low, high)

    def capacity(self, algorithm: str = "linux", socket_range: PortRange | None = None,
                 per: str = "pair") -> "Capacity":
        """How many ports one pool holds when its search first fails, as (min, max)."""
        skip = self.skip

        def free(lo: int, hi: int) -> int:
            return sum(1 for p in range(lo, hi + 1) if p not in skip)

        if algorithm == "linux" and socket_range is not None:
            n = free(*self.clamp(socket_range))  # step 1, one pass: every port of the clamp
            return Capacity(n, n, per)
        total = free(self.low, self.high)
        size = self.range.size
        if algorithm not in ("linux", "linux-bind") or size < 3 or size % 2 == 0:
            return Capacity(total, total, per)
        # equal-parity ends: windows [low, high-1] (one start offset) and [low+1, high] (all others)
        w_low = total - (self.high not in skip)
        w_high = total - (self.low not in skip)
        if w_low == w_high == total:
            return Capacity(total, total, per)
        start = "start offset 0" if algorithm == "linux" else "start offset 1"
        note = (f"equal-parity ends: remaining is forced even, so each search walks {size - 1} of the "
                f"{size} ports: {self.low}-{self.high - 1} from {start} only, {self.low + 1}-{self.high} "
                f"from every other start; a pool fails holding {min(w_low, w_high)} to {total} ports")
        return Capacity(min(w_low, w_high), total, per, note)


@dataclass(frozen=True)
class Capacity:
    """Ports one pool can hold at once. min < max only for the Linux step-2 walks
    over a range whose ends have the same parity: then `remaining` (forced even)
    is one less than the range, so each search covers a window that misses
    either the top or the bottom port, depending on its start offset. A pool
    fails with anything from `min` to `max` ports held.
    per: "pair" (source IP, destination), "source" (source IP) or "host"."""

    min: int
    max: int
    per: str
    note: str | None = None

    def __str__(self) -> str:
        return str(self.min) if self.min == self.max else f"{self.min}-{self.max}"

    def to_json(self) -> dict:
        """Every field by name."""
        return asdict(self)


def make_space(rng: str | PortRange, reserved: str | PortSet = "", listeners: str | PortSet = "") -> PortSpace:
    """A PortSpace from the CLI's strings (or parsed values); BadInput naming the bad option."""
    def parsed(what, text, kind):
        if isinstance(text, kind):
            return text
        try:
            return kind.parse(text)
        except BadInput as e:
            raise BadInput(f"--{what} {text!r}: {e}") from None

    r = parsed("range", rng, PortRange)
    if r.low < 1:
        raise BadInput("the range must start at port 1 or above")
    return PortSpace(r, parsed("reserved", reserved, PortSet), parsed("listeners", listeners, PortSet))
