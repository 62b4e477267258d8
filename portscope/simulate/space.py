"""The port space an allocator hands out from: range, reserved ports, bind-held ports."""
from __future__ import annotations

from dataclasses import dataclass

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
        return self.range.low

    @property
    def high(self) -> int:
        return self.range.high

    @property
    def skip(self) -> frozenset[int]:
        """Ports every automatic choice passes over, restricted to the range."""
        r = self.range
        out = {p for p in self.reserved if p in r}
        out.update(p for p in self.listeners if p in r)
        return frozenset(out)

    def connect_ports(self, step: int = 2) -> range:
        """Ports __inet_hash_connect can reach: with step 2 it walks `remaining`
        ports from low, and `remaining` is forced even, so when both ends have the
        same parity the top port is only reachable from some start offsets."""
        remaining = self.range.size
        if step == 2 and remaining > 1:
            remaining &= ~1
        return range(self.low, self.low + remaining)

    def usable(self, algorithm: str = "linux") -> int:
        """Ports one (source, destination) pair - or the whole host for global
        allocators - can hold at once."""
        # both Linux TCP walks force `remaining` even; UDP and the RFC models use the full range
        step2 = algorithm in ("linux", "linux-bind")
        ports = self.connect_ports(2) if step2 else range(self.low, self.high + 1)
        skip = self.skip
        return sum(1 for p in ports if p not in skip)


def make_space(rng: str | PortRange, reserved: str | PortSet = "", listeners: str | PortSet = "") -> PortSpace:
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
