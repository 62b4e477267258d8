"""Port numbers: inclusive ranges, sets in the kernel's list syntax, RFC 6335 classes."""
from __future__ import annotations

from .errors import BadInput
from .numparse import is_digits
from .value import Frozen

TYPE_CHECKING = False     # not typing's: importing typing would cost `portscope range` a third of the interpreter's start-up
if TYPE_CHECKING:
    from typing import Iterable, Iterator

MIN_PORT = 0
MAX_PORT = 65535
# the fewest usable ports (range minus reservations) an ephemeral range may have without
# --force: with one, each destination gets one connection at a time and the next connect()
# fails (EADDRNOTAVAIL). `range set` and `lab exhaust` share it.
MIN_USABLE_RANGE = 2

# RFC 6335 section 6
SYSTEM = "system"    # 0-1023, well known
USER = "user"        # 1024-49151, registered
DYNAMIC = "dynamic"  # 49152-65535, dynamic/private/ephemeral


def port_class(port: int) -> str:
    """RFC 6335 class of a port: "system" (0-1023), "user" (1024-49151) or "dynamic"."""
    check_port(port)
    if port <= 1023:
        return SYSTEM
    if port <= 49151:
        return USER
    return DYNAMIC


def check_port(port: int, what: str = "port") -> int:
    """`port` itself if it is an int in 0..65535 (bool is not a port); BadInput naming `what` otherwise."""
    if isinstance(port, bool) or not isinstance(port, int) or not MIN_PORT <= port <= MAX_PORT:
        raise BadInput(f"{what} must be an integer in 0..65535, got {port!r}")
    return port


def parse_port(text: str | int, what: str = "port") -> int:
    """A port number 0..65535 from ASCII digits (or an int); BadInput otherwise."""
    if isinstance(text, int):
        return check_port(text, what)
    s = str(text).strip()
    if not is_digits(s):     # ASCII only: str.isdigit() is true for "٤٠٠٠٠" and "²"
        if s.startswith("-") and is_digits(s[1:]):
            raise BadInput(f"{what} must be an integer in 0..65535, got {s} (a negative number)")
        raise BadInput(f"{what} must be an integer in 0..65535 written in digits 0-9, got {text!r}")
    return check_port(int(s), what)


class PortRange(Frozen):
    """An inclusive range low..high: frozen, equal and ordered by (low, high)."""

    __slots__ = ("low", "high")
    low: int
    high: int

    def __init__(self, low: int, high: int) -> None:
        check_port(low, "low port")
        check_port(high, "high port")
        if low > high:
            raise BadInput(f"range start {low} is above its end {high}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self.low == other.low and self.high == other.high

    def __hash__(self) -> int:
        return hash((self.low, self.high))

    def __lt__(self, other: "PortRange") -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return (self.low, self.high) < (other.low, other.high)

    def __le__(self, other: "PortRange") -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return (self.low, self.high) <= (other.low, other.high)

    def __gt__(self, other: "PortRange") -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return (self.low, self.high) > (other.low, other.high)

    def __ge__(self, other: "PortRange") -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return (self.low, self.high) >= (other.low, other.high)

    @classmethod
    def parse(cls, text: str) -> "PortRange":
        """Accept 'A-B', 'A B' (procfs, tab or spaces) or a single port 'A'."""
        s = str(text).strip()
        for sep in ("-", None):
            parts = [x.strip() for x in s.split(sep)] if sep else s.split()
            if len(parts) == 2 and all(parts):
                return cls(parse_port(parts[0], "low port"), parse_port(parts[1], "high port"))
        if len(s.split()) == 1 and "-" not in s:
            p = parse_port(s)
            return cls(p, p)
        raise BadInput(f"not a port range: {text!r} (expected LOW-HIGH)")

    @property
    def size(self) -> int:
        """Number of ports in the range, both ends included."""
        return self.high - self.low + 1

    @property
    def same_parity(self) -> bool:
        """The kernel prefers ends of different parity (it warns otherwise)."""
        return (self.low - self.high) % 2 == 0

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.low <= port <= self.high

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.low, self.high + 1))

    def __len__(self) -> int:
        return self.size

    def overlaps(self, other: "PortRange") -> bool:
        """True if the two ranges share at least one port."""
        return self.low <= other.high and other.low <= self.high

    def to_json(self) -> dict:
        """`{"low", "high", "size"}`: how every JSON document writes a range."""
        return {"low": self.low, "high": self.high, "size": self.size}

    def __str__(self) -> str:
        return f"{self.low}-{self.high}" if self.low != self.high else str(self.low)


# RFC 6335 section 6: the dynamic/private range IANA recommends for ephemeral ports
IANA_DYNAMIC = PortRange(49152, 65535)


class PortSet:
    """An immutable set of ports kept as sorted, merged inclusive ranges.

    Parses and prints the kernel's list syntax used by ip_local_reserved_ports:
    "1,2-4,10-10" (whitespace tolerant, empty string = empty set).
    """

    __slots__ = ("_ranges",)

    def __init__(self, ranges: Iterable[PortRange] = ()) -> None:
        merged: list[PortRange] = []
        for r in sorted(ranges):
            if merged and r.low <= merged[-1].high + 1:
                if r.high > merged[-1].high:
                    merged[-1] = PortRange(merged[-1].low, r.high)
            else:
                merged.append(r)
        self._ranges = tuple(merged)

    @classmethod
    def parse(cls, text: str) -> "PortSet":
        """The set written in the kernel's list syntax ("1,2-4"); BadInput for anything else."""
        s = str(text).strip()
        if not s:
            return cls()
        out = []
        for item in s.split(","):
            item = item.strip()
            if not item:
                raise BadInput(f"empty item in port list {text!r}")
            # spaces may surround items and dashes, never split a number: "80 80" is an error
            parts = [x.strip() for x in item.split("-")]
            if len(parts) == 2 and not parts[0] and parts[1]:
                raise BadInput(f"not a port or range: {item!r} in {text!r} (ports are 0..65535; "
                               f"a leading '-' makes a negative number, not a range)")
            if any(len(x.split()) > 1 for x in parts):
                raise BadInput(f"not a port or range: {item!r} in {text!r} (separate items with commas)")
            if len(parts) == 1:
                p = parse_port(parts[0])
                out.append(PortRange(p, p))
            elif len(parts) == 2:
                out.append(PortRange(parse_port(parts[0], "low port"), parse_port(parts[1], "high port")))
            else:
                raise BadInput(f"not a port or range: {item!r} in {text!r}")
        return cls(out)

    @classmethod
    def of(cls, ports: Iterable[int]) -> "PortSet":
        """The set of the given single ports."""
        return cls(PortRange(p, p) for p in ports)

    @property
    def ranges(self) -> tuple[PortRange, ...]:
        """The sorted, merged, non-adjacent ranges that make up the set."""
        return self._ranges

    def __contains__(self, port: object) -> bool:
        if not isinstance(port, int):
            return False
        # few ranges in practice; bisect would be premature
        return any(r.low <= port <= r.high for r in self._ranges)

    def __len__(self) -> int:
        return sum(r.size for r in self._ranges)

    def __iter__(self) -> Iterator[int]:
        for r in self._ranges:
            yield from r

    def __bool__(self) -> bool:
        return bool(self._ranges)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PortSet) and self._ranges == other._ranges

    def __hash__(self) -> int:
        return hash(self._ranges)

    def union(self, other: "PortSet") -> "PortSet":
        """Ports in either set."""
        return PortSet(self._ranges + other._ranges)

    def difference(self, other: "PortSet") -> "PortSet":
        """Ports in this set and not in `other`."""
        out: list[PortRange] = []
        for r in self._ranges:
            pieces = [r]
            for o in other._ranges:
                nxt = []
                for p in pieces:
                    if not p.overlaps(o):
                        nxt.append(p)
                        continue
                    if p.low < o.low:
                        nxt.append(PortRange(p.low, o.low - 1))
                    if p.high > o.high:
                        nxt.append(PortRange(o.high + 1, p.high))
                pieces = nxt
            out.extend(pieces)
        return PortSet(out)

    def intersection(self, other: "PortSet") -> "PortSet":
        """Ports in both sets."""
        return self.difference(self.difference(other))

    __and__ = intersection
    __or__ = union
    __sub__ = difference

    def count_in(self, rng: PortRange) -> int:
        """How many ports of this set lie inside rng."""
        return sum(max(0, min(r.high, rng.high) - max(r.low, rng.low) + 1) for r in self._ranges)

    def __str__(self) -> str:
        """Kernel syntax; single ports print bare, as the kernel does."""
        return ",".join(str(r) for r in self._ranges)

    def __repr__(self) -> str:
        return f"PortSet({str(self)!r})"
