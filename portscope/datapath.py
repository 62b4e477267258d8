"""The main data path as one call: host facts + socket snapshot(s) -> PressureResult.

`measure()` is what `pressure`, `report`, `top`, the web page and library users share: it
checks its limits, reads the facts and the sockets of one namespace (sampling over an
interval when a forecast is asked for), analyses them, and turns the operating system's
refusals into portscope's errors (NotPermitted, SystemReadError) with one-line messages.
"""
from __future__ import annotations

from . import host, pressure
from .errors import BadInput, NotPermitted, SystemReadError
from .forecast import forecast, sample
from .netns import Namespace
from .numparse import INTERVAL_S, parse_real
from .pressure import PressureResult
from .sockets.table import SocketTable

TYPE_CHECKING = False     # not typing's: `pressure` starts without importing typing
if TYPE_CHECKING:
    from typing import Callable

MIN_INTERVAL, MAX_INTERVAL = INTERVAL_S
MAX_SAMPLES = 1000

__all__ = ["measure", "MIN_INTERVAL", "MAX_INTERVAL", "MAX_SAMPLES"]


def measure(netns: "str | Namespace | None" = None, *, top: int | None = None, process: bool = False,
            interval: float | None = None, samples: int | None = None,
            on_table: Callable[[SocketTable], None] | None = None, census: bool = False) -> PressureResult:
    """Ephemeral-port pressure of `netns` (None: this process's namespace).

    top: keep the N worst destinations (the rest summed in `others`); process: attribute use
    to processes (reads /proc/*/fd); interval/samples: sample `samples` (default 2) times,
    `interval` seconds apart, and forecast rates and time to exhaustion. on_table(table) is
    called with each socket table as soon as it is read (destcgroups reads the sockets'
    cgroups then, so both reads see nearly the same sockets); only those tables carry inodes. census: see
    pressure.snapshot_in_range (one socket-hash walk fewer where it can be proven empty).
    Raises BadInput for limits out of range, NotPermitted / SystemReadError when the socket
    table cannot be read.
    """
    if top is not None and top < 0:
        raise BadInput(f"--top must be >= 0, got {top}")
    if samples is not None and interval is None:
        raise BadInput("--samples needs --interval")
    if interval is not None:
        parse_real(interval, "--interval", MIN_INTERVAL, MAX_INTERVAL, unit="seconds")
    if samples is not None and not (2 <= samples <= MAX_SAMPLES):
        raise BadInput(f"--samples must be in 2..{MAX_SAMPLES}, got {samples}")
    name = str(netns) if netns else None
    facts = host.host_facts(name)

    def take():
        # only sockets whose local port is in the range: the kernel filters (as `ss` does)
        # inodes only for on_table (destcgroups matches rows to cgroups by them): analyze()
        # never reads them, and the BPF iterator reads each socket's faster without
        t = pressure.snapshot_in_range(facts, name, owners=process, census=census,
                                       inodes=on_table is not None)
        if on_table is not None:
            on_table(t)
        return t

    try:
        if interval is None:
            return pressure.analyze(facts, take(), top=top, process=process)
        tables = sample(take, interval, samples or 2)
        return forecast(facts, tables, top=top, process=process, interval=interval)
    except PermissionError as e:
        raise NotPermitted(f"cannot read the socket table: {e}")
    except OSError as e:
        raise SystemReadError(f"cannot read the socket table: {e}")
