"""What the simulated clients do: how many pairs, when they connect, how long
connections live, and the TCP settings that decide when a port is free again."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..errors import BadInput
from ..ports import PortRange
from .space import PortSpace, make_space

TIME_WAIT = 60.0  # TCP_TIMEWAIT_LEN, hard-coded in the kernel
MAX_CONNECTS = 100_000_000  # ~10 minutes of simulation: a bound, not a model limit
MAX_SAMPLES = 100_000  # time-series points


@dataclass(frozen=True)
class Lifetime:
    """How long a connection stays open before the client closes it (seconds).
    kind: fixed | exp | uniform | lognormal | inf."""

    kind: str = "fixed"
    a: float = 0.0
    b: float = 0.0

    @classmethod
    def parse(cls, text: str | float | int) -> "Lifetime":
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            return cls._checked("fixed", float(text))
        s = str(text).strip().lower()
        if s in ("inf", "forever", "never"):
            return cls("inf")
        kind, _, arg = s.partition(":")
        if not arg:
            kind, arg = "fixed", s
        want = {"fixed": 1, "exp": 1, "uniform": 2, "lognormal": 2}
        arg = arg.strip().removesuffix("s")
        parts = [arg] if want.get(kind) == 1 else re.split(r"(?<=\d)-|,", arg)
        try:
            vals = [float(x) for x in parts]
        except ValueError:
            vals = []
        if kind not in want or len(vals) != want[kind]:
            raise BadInput(f"not a lifetime: {text!r} (use SECONDS, exp:MEAN, uniform:A-B, "
                           "lognormal:MEDIAN,SIGMA or inf)")
        return cls._checked(kind, *vals)

    @classmethod
    def _checked(cls, kind: str, a: float, b: float = 0.0) -> "Lifetime":
        if not (math.isfinite(a) and math.isfinite(b)) or a < 0 or b < 0 or (kind == "uniform" and b < a):
            raise BadInput(f"lifetime parameters must be finite, >= 0 (and A <= B): {kind}:{a},{b}")
        return cls(kind, a, b)

    @property
    def mean(self) -> float:
        if self.kind == "inf":
            return math.inf
        if self.kind == "uniform":
            return (self.a + self.b) / 2
        if self.kind == "lognormal":
            return self.a * math.exp(self.b ** 2 / 2)
        return self.a

    def sample(self, gen, n: int):
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
    s = str(text).strip().lower().replace(" ", "")
    for suffix in ("/s", "/sec", "ps"):
        if s.endswith(suffix):
            s = s[: -len(suffix)]
            break
    try:
        r = float(s)
    except ValueError:
        raise BadInput(f"not a rate: {text!r} (expected e.g. 500/s)") from None
    if not math.isfinite(r) or r <= 0:
        raise BadInput(f"the rate must be above 0, got {text!r}")
    return r


@dataclass(frozen=True)
class Workload:
    """rate: new connections per second over all pairs (None: `connects` in a row,
    1 ms apart, none closed). Each arrival goes to one of sources x destinations
    pairs: round-robin for fixed-rate arrivals, uniformly at random for Poisson
    (which makes each pair its own Poisson process of rate/pairs)."""

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

    def __post_init__(self) -> None:
        for name in ("destinations", "sources"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 1_000_000:
                raise BadInput(f"--{name} must be an integer in 1..1000000, got {v!r}")
        if self.connects is not None and (not isinstance(self.connects, int) or self.connects < 0):
            raise BadInput(f"--connects must be a whole number >= 0, got {self.connects!r}")
        if self.rate is None and self.connects is None:
            raise BadInput("give --connects N or --rate R/s")
        if self.rate is not None and self.duration is None and self.connects is None:
            raise BadInput("a --rate run needs --duration S or --connects N")
        if self.duration is not None and not (math.isfinite(self.duration) and self.duration > 0):
            raise BadInput(f"--duration must be above 0 seconds, got {self.duration!r}")
        if self.arrivals not in ("fixed", "poisson"):
            raise BadInput(f"--arrivals must be fixed or poisson, got {self.arrivals!r}")
        if self.tw_reuse not in (0, 1, 2):
            raise BadInput(f"--tw-reuse must be 0, 1 or 2, got {self.tw_reuse!r}")
        if not 0 <= self.time_wait <= 3600:
            raise BadInput(f"--time-wait must be in 0..3600 seconds, got {self.time_wait!r}")
        if self.tw_reuse_delay_ms < 0:
            raise BadInput("--tw-reuse-delay must be >= 0 ms")
        if self.interval is not None and not self.interval > 0:
            raise BadInput("--interval must be above 0 seconds")
        planned = self.connects if self.connects is not None else math.inf
        if self.rate is not None and self.duration is not None:
            planned = min(planned, self.rate * self.duration)
        if planned > MAX_CONNECTS:
            raise BadInput(f"that is about {planned:.3g} connects; the limit is {MAX_CONNECTS:.0e} "
                           "(lower --rate/--duration or cap with --connects)")

    @property
    def pairs(self) -> int:
        return self.destinations * self.sources

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
        return 0.0 if self.algorithm == "udp" else self.time_wait

    @property
    def in_a_row(self) -> bool:
        return self.rate is None

    def settings(self) -> dict:
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


def workload(range: str = "32768-60999", reserved: str = "", listeners: str = "", **kw) -> Workload:
    """Convenience: build a Workload from strings, as the CLI and config files give them."""
    if "lifetime" in kw and not isinstance(kw["lifetime"], Lifetime):
        kw["lifetime"] = Lifetime.parse(kw["lifetime"])
    if "rate" in kw and kw["rate"] is not None and not isinstance(kw["rate"], float):
        kw["rate"] = parse_rate(kw["rate"])
    if kw.get("socket_range") is not None and not isinstance(kw["socket_range"], PortRange):
        kw["socket_range"] = PortRange.parse(kw["socket_range"])
    return Workload(space=make_space(range, reserved, listeners), **kw)
