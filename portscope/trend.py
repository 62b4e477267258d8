"""Trends across refreshes: the last few `in_use` values of every destination, their change
and rate (what `top` and the web page's history show)."""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:
    from .pressure import Destination

SPARKS = "▁▂▃▄▅▆▇█"
HISTORY = 30                 # refreshes kept per destination

__all__ = ["Trend", "TrendPoint", "sparkline", "SPARKS", "HISTORY"]


@dataclass(frozen=True)
class TrendPoint:
    """One destination's history after a refresh, with its change and rate."""

    history: tuple[int, ...]     # in_use, oldest first, this refresh last
    delta: int | None            # in_use change since the previous refresh (None: new)
    rate_per_s: float | None     # (last - first) / seconds over the kept history


class Trend:
    """in_use history per destination key, across refreshes."""

    def __init__(self, keep: int = HISTORY) -> None:
        self.keep = keep
        self._hist: dict[tuple, deque] = {}
        self._times: deque = deque(maxlen=keep)

    def update(self, destinations: Iterable[Destination], now: float | None = None) -> dict[tuple, TrendPoint]:
        """Record one refresh; destinations that vanished are forgotten."""
        self._times.append(time.monotonic() if now is None else now)
        seen = {}
        for d in destinations:
            h = self._hist.get(d.key)
            if h is None:
                h = deque(maxlen=self.keep)
            h.append(d.in_use)
            seen[d.key] = h
        self._hist = seen
        out = {}
        for key, h in seen.items():
            delta = h[-1] - h[-2] if len(h) >= 2 else None
            rate = None
            if len(h) >= 2:
                span = self._times[-1] - self._times[-len(h)]
                rate = (h[-1] - h[0]) / span if span > 0 else None
            out[key] = TrendPoint(tuple(h), delta, rate)
        return out


def sparkline(values: Sequence[int], capacity: int) -> str:
    """One glyph per refresh, height = share of capacity (so ▁ is idle and █ is full)."""
    top = len(SPARKS) - 1
    if capacity <= 0:
        return SPARKS[top] * len(values)
    return "".join(SPARKS[min(top, max(0, round(v / capacity * top)))] for v in values)
