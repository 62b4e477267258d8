"""A one-line progress indicator on stderr for long work, shown only on a terminal.

Piped, redirected or under --json consumers nothing is written: stderr stays free of
carriage returns for logs and scripts. The line is rewritten at most ten times a second
and erased when the work ends, so the result prints on a clean line.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """`with Progress() as p: p.update("checking the plan", 0.42)`."""

    MIN_GAP = 0.1

    def __init__(self, stream: TextIO | None = None, force: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        try:
            tty = self.stream.isatty()
        except (AttributeError, ValueError):
            tty = False
        self.on = tty if force is None else force
        self._last = 0.0
        self._shown = False

    def update(self, label: str, share: float) -> None:
        """Show `label` and `share` (0..1) done; at most MIN_GAP apart, terminals only."""
        if not self.on:
            return
        now = time.monotonic()
        if now - self._last < self.MIN_GAP:
            return
        self._last = now
        self.stream.write(f"\r\033[Ksimulating: {label} {share:4.0%}")
        self.stream.flush()
        self._shown = True

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        if self._shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
