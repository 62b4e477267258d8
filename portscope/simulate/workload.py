"""What the simulated clients do: how many pairs, when they connect, how long
connections live, and the TCP settings that decide when a port is free again."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import BadInput
from ..numparse import is_decimal
from ..ports import PortRange
from .alloc_base import SOURCE, TUPLE
from .allocators import scope_of
from .space import Capacity, PortSpace, make_space

if TYPE_CHECKING:     # numpy is imported where used (start-up time)
    import numpy as np

TIME_WAIT = 60.0  # TCP_TIMEWAIT_LEN, hard-coded in the kernel
MAX_CONNECTS = 100_000_000  # ~10 minutes of simulation: a bound, not a model limit
MAX_SAMPLES = 100_000  # time-series points
MAX_LIVE = 20_000_000  # sockets held at once: about 150 bytes each, 3 GB
LIFETIME_FORMS = "use SECONDS, exp:MEAN, uniform:A-B, lognormal:MEDIAN,SIGMA or inf"
# options that shape a --rate run; a --connects run without --rate closes nothing
RATE_ONLY = ("lifetime", "arrivals", "duration", "time_wait", "tw_reuse", "tw_reuse_delay_ms", "loopback")


@dataclass(frozen=True)
class Lifetime:
    """How long a connection stays open before the client closes it (seconds).
    kind: fixed | exp | uniform | lognormal | inf."""

    kind: str = "fixed"
    a: float = 0.0
    b: float = 0.0

    @classmethod
    def parse(cls, text: str | float | int) -> "Lifetime":
        """A lifetime from `--lifetime` (LIFETIME_FORMS, seconds) or a number; BadInput otherwise."""
        if isinstance(text, bool):
            raise BadInput(f"--lifetime {text!r}: not a lifetime ({LIFETIME_FORMS})")
        if isinstance(text, (int, float)):
            if text == math.inf:
                return cls("inf")
            return cls._checked(text, "fixed", float(text))
        s = str(text).strip().lower()
        if s in ("inf", "forever", "never"):
            return cls("inf")
        kind, _, arg = s.partition(":")
        if not arg:
            kind, arg = "fixed", s
        want = {"fixed": 1, "exp": 1, "uniform": 2, "lognormal": 2}
        arg = arg.strip().removesuffix("s")
        parts = [arg] if want.get(kind) == 1 else re.split(r"(?<=\d)-|,", arg)
        # ASCII decimals only: float() also takes "٣", "1_0" and "nan"
        vals = [float(x) for x in parts] if all(is_decimal(x.strip()) for x in parts) else []
        if kind not in want or len(vals) != want[kind]:
            raise BadInput(f"--lifetime {text!r}: not a lifetime ({LIFETIME_FORMS})")
        return cls._checked(text, kind, *vals)

    @classmethod
    def _checked(cls, text, kind: str, a: float, b: float = 0.0) -> "Lifetime":
        """Each number finite and >= 0, A <= B for uniform; the message echoes `text`."""
        if not (math.isfinite(a) and math.isfinite(b)) or a < 0 or b < 0:
            raise BadInput(f"--lifetime {text!r}: every number must be finite and >= 0 seconds "
                           f"({LIFETIME_FORMS})")
        if kind == "uniform" and b < a:
            raise BadInput(f"--lifetime {text!r}: uniform:A-B needs A <= B")
        return cls(kind, a, b)

    @property
    def mean(self) -> float:
        """Mean lifetime in seconds (inf for "inf"; lognormal:A,S gives A * exp(S^2 / 2))."""
        if self.kind == "inf":
            return math.inf
        if self.kind == "uniform":
            return (self.a + self.b) / 2
        if self.kind == "lognormal":
            try:
                return self.a * math.exp(self.b ** 2 / 2)
            except OverflowError:
                return math.inf if self.a > 0 else 0.0
        return self.a

    def sample(self, gen: np.random.Generator, n: int) -> np.ndarray:
        """n lifetimes as a numpy array (gen: numpy Generator)."""
        import numpy as np
        if self.kind == "inf":
            return np.full(n, np.inf)
        if self.kind == "fixed":
            return np.full(n, self.a)
        if self.kind == "exp":
            return gen.exponential(self.a, n) if self.a > 0 else np.zeros(n)
        if self.kind == "uniform":
            return gen.uniform(self.a, self.b, n)
        return gen.lognormal(math.log(self.a) if self.a > 0 else -50.0, self.b, n)

    def __str__(self) -> str:
        if self.kind == "inf":
            return "inf"
        if self.kind == "fixed":
            return f"{self.a:g}"
        if self.kind == "exp":
            return f"exp:{self.a:g}"
        sep = "-" if self.kind == "uniform" else ","
        return f"{self.kind}:{self.a:g}{sep}{self.b:g}"


def parse_rate(text: str | float | int) -> float:
    """Connections per second from "500", "500/s", "500/sec" or "500ps"; BadInput otherwise."""
    s = str(text).strip().lower().replace(" ", "")
    for suffix in ("/s", "/sec", "ps"):
        if s.endswith(suffix):
            s = s[: -len(suffix)]
            break
    if s.lstrip("+-") in ("inf", "infinity", "nan"):
        raise BadInput(f"the rate must be a finite number of connections per second, got {text!r}")
    if isinstance(text, bool) or not is_decimal(s):
        raise BadInput(f"not a rate: {text!r} (expected e.g. 500/s, digits 0-9)")
    r = float(s)
    if not math.isfinite(r):
        raise BadInput(f"the rate must be a finite number of connections per second, got {text!r}")
    if r <= 0:
        raise BadInput(f"the rate must be above 0, got {text!r}")
    return r


def _whole(name: str, v, lo: int, hi: int | None = None, hint: str = "") -> None:
    """Integers must be integers: no bools, no 1.5 silently made 1."""
    if isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi):
        return
    span = f"in {lo}..{hi}" if hi is not None else ("non-negative" if lo == 0 else f">= {lo}")
    if lo == 0 and hi is None:
        raise BadInput(f"--{name} must be a non-negative whole number{hint}, got {v!r}")
    raise BadInput(f"--{name} must be a whole number {span}{hint}, got {v!r}")


def _seconds(name: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise BadInput(f"--{name} must be a finite number of seconds above 0, got {v!r}")


@dataclass(frozen=True)
class Workload:
    """rate: new connections per second over all pairs (None: `connects` in a row,
    1 ms apart, none closed). Each arrival goes to one of sources x destinations
    pairs: round-robin for fixed-rate arrivals, uniformly at random for Poisson
    (which makes each pair its own Poisson process of rate/pairs).

    A rate run with neither `duration` nor `connects` is open-ended: the plan
    accepts it (it picks its own check span), `engine.run` refuses it."""

    space: PortSpace
    algorithm: str = "linux"
    destinations: int = 1
    sources: int = 1
    connects: int | None = None
    rate: float | None = None
    arrivals: str = "fixed"
    lifetime: Lifetime = field(default_factory=Lifetime)
    duration: float | None = None
    time_wait: float = TIME_WAIT
    tw_reuse: int = 0
    tw_reuse_delay_ms: int = 1000
    loopback: bool = False
    socket_range: PortRange | None = None
    udp_hash_size: int | None = None
    seed: int = 0
    interval: float | None = None

    @property
    def rate_per_s(self) -> float:
        """The arrival rate of a rate-driven run (set whenever `in_a_row` is false)."""
        if self.rate is None:
            raise BadInput("this workload has no --rate")
        return self.rate

    @property
    def connect_count(self) -> int:
        """The number of connects of an in-a-row run (set whenever `in_a_row` is true)."""
        if self.connects is None:
            raise BadInput("this workload has no --connects")
        return self.connects

    def __post_init__(self) -> None:
        if self.rate is not None and (isinstance(self.rate, bool) or not isinstance(self.rate, (int, float))
                                      or not math.isfinite(self.rate) or self.rate <= 0):
            raise BadInput(f"the rate must be a finite number of connections per second above 0, got {self.rate!r}")
        for name in ("destinations", "sources"):
            _whole(name, getattr(self, name), 1, 1_000_000)
        if self.connects is not None:
            _whole("connects", self.connects, 1,
                   hint=" (without --rate: that many connects in a row; with --rate: stop after that many)")
        _whole("seed", self.seed, 0)
        if self.rate is None and self.connects is None:
            raise BadInput("give --connects N or --rate R/s")
        if self.duration is not None:
            _seconds("duration", self.duration)
        if self.arrivals not in ("fixed", "poisson"):
            raise BadInput(f"--arrivals must be fixed or poisson, got {self.arrivals!r}")
        if self.tw_reuse not in (0, 1, 2) or isinstance(self.tw_reuse, bool):
            raise BadInput(f"--tw-reuse must be 0, 1 or 2, got {self.tw_reuse!r}")
        tw = self.time_wait
        if isinstance(tw, bool) or not isinstance(tw, (int, float)) or not 0 <= tw <= 3600:  # nan fails too
            raise BadInput(f"--time-wait must be a number of seconds in 0..3600, got {tw!r}")
        _whole("tw-reuse-delay", self.tw_reuse_delay_ms, 0, hint=" of ms")
        if self.interval is not None:
            _seconds("interval", self.interval)
        if self.udp_hash_size is not None:
            if self.algorithm != "udp":
                raise BadInput("--udp-hash-size applies to --algorithm udp only")
            n = self.udp_hash_size
            if (not isinstance(n, int) or isinstance(n, bool) or not 128 <= n <= 65536 or n & (n - 1)):
                raise BadInput(f"--udp-hash-size must be a power of two from 128 to 65536 (the sizes the "
                               f"kernel's UDP hash table can have), got {n!r}")
        planned = self.connects if self.connects is not None else math.inf
        if self.rate is not None and self.duration is not None:
            planned = min(planned, self.rate * self.duration)   # may overflow to inf: still bounded
        bounded = self.connects is not None or (self.rate is not None and self.duration is not None)
        if bounded and planned > MAX_CONNECTS:  # open-ended: only --plan, which bounds its check
            raise BadInput(f"that is about {planned:.3g} connects; the limit is {MAX_CONNECTS:.0e} "
                           "(lower --rate/--duration or cap with --connects)")
        live = self.live_bound(planned)
        if live > MAX_LIVE:
            raise BadInput(f"that run could hold about {live:.3g} sockets at once; the limit is {MAX_LIVE:.0e} "
                           "(about 3 GB of simulator state): lower --connects, --rate, --lifetime or the "
                           "number of destinations x sources")

    def live_bound(self, planned: float) -> float:
        """An upper estimate of the sockets held at once (ESTABLISHED + TIME_WAIT):
        never more than the connects made, than every pool full, or (rate runs) than
        about twice rate x (lifetime + TIME_WAIT). The simulator's state is
        proportional to this, not to destinations x sources."""
        bound = min(planned, self.pools * self.capacity.max)
        if self.rate is not None:
            little = self.rate * (self.lifetime.mean + self.effective_time_wait)
            if math.isfinite(little):
                bound = min(bound, 2 * little + 10_000)
        return bound

    def require_end(self) -> None:
        """BadInput unless a rate run says when it ends (--duration or --connects)."""
        if self.rate is not None and self.duration is None and self.connects is None:
            raise BadInput("a --rate run needs --duration S or --connects N "
                           "(--plan alone picks its own check span)")

    @property
    def pairs(self) -> int:
        """Source x destination pairs."""
        return self.destinations * self.sources

    @property
    def scope(self) -> str:
        """Whose ports the allocator shares: "tuple" (one pool per source x
        destination: connect()), "source" (one per source IP: bind(0) to that IP),
        "global" (one for the host: UDP autobind)."""
        return scope_of(self.algorithm)

    @property
    def pools(self) -> int:
        """How many independent port pools the workload has."""
        return {TUPLE: self.pairs, SOURCE: self.sources}.get(self.scope, 1)

    @property
    def capacity(self) -> Capacity:
        """Ports one pool is sure to get (and may get), per the pool the scope defines."""
        per = {TUPLE: "pair", SOURCE: "source"}.get(self.scope, "host")
        return self.space.capacity(self.algorithm, self.socket_range, per)

    @property
    def reuse_after(self) -> float | None:
        """Seconds after which a TIME_WAIT may be taken over, or None: tcp_tw_reuse
        1 = always, 2 = loopback only (the default), 0 = never; TCP-only."""
        if self.algorithm not in ("linux",) and not self.algorithm.startswith(("rfc6056", "seq")):
            return None
        if self.tw_reuse == 1 or (self.tw_reuse == 2 and self.loopback):
            return self.tw_reuse_delay_ms / 1000.0
        return None

    @property
    def effective_time_wait(self) -> float:
        """TIME_WAIT seconds that apply: 0 for UDP, which has none."""
        return 0.0 if self.algorithm == "udp" else float(self.time_wait)

    @property
    def in_a_row(self) -> bool:
        """True without a rate: connects back to back, nothing closes."""
        return self.rate is None

    def settings(self) -> dict:
        """The options as run, for the `settings` object of the JSON output."""
        s = self.space
        return {
            "algorithm": self.algorithm, "range": str(s.range), "reserved": str(s.reserved),
            "listeners": str(s.listeners), "destinations": self.destinations, "sources": self.sources,
            "connects": self.connects, "rate": self.rate, "arrivals": self.arrivals,
            "lifetime": str(self.lifetime) if not self.in_a_row else "inf",
            "duration": self.duration, "time_wait": self.effective_time_wait, "tw_reuse": self.tw_reuse,
            "tw_reuse_delay_ms": self.tw_reuse_delay_ms, "loopback": self.loopback,
            "socket_range": str(self.socket_range) if self.socket_range else None,
            "seed": self.seed,
        }


def workload(range: str = "32768-60999", reserved: str = "", listeners: str = "", **kw: Any) -> Workload:
    """Convenience: build a Workload from strings, as the CLI and config files give
    them. Keys given as None take the defaults. Without a rate nothing closes, so
    the options that shape a rate run (RATE_ONLY) are refused rather than ignored."""
    if kw.get("loopback") is False:
        kw["loopback"] = None  # the flag's default: not "given"
    kw = {k: v for k, v in kw.items() if v is not None}
    if kw.get("rate") is None:
        for k in RATE_ONLY:
            if k in kw:
                opt = "--" + k.replace("_ms", "").replace("_", "-")
                raise BadInput(f"{opt} applies to --rate runs only: --connects N without --rate opens N "
                               f"connections and closes none (add --rate R/s, or drop {opt})")
    if "lifetime" in kw and not isinstance(kw["lifetime"], Lifetime):
        kw["lifetime"] = Lifetime.parse(kw["lifetime"])
    if "rate" in kw and not isinstance(kw["rate"], float):
        kw["rate"] = parse_rate(kw["rate"])
    if "socket_range" in kw and not isinstance(kw["socket_range"], PortRange):
        kw["socket_range"] = PortRange.parse(kw["socket_range"])
    return Workload(space=make_space(range, reserved, listeners), **kw)
