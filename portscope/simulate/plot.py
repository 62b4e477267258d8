"""--plot: the time series and the search-step distribution, as one PNG."""
from __future__ import annotations

import os

from ..errors import BadInput
from ..fsutil import atomic_write, check_writable_dir
from .result import Result


def check_path(path: str) -> None:
    """A PNG file name in a directory that takes files (matplotlib would add .png to a name
    without it, so `--plot /tmp` wrote /tmp.png)."""

    if not str(path).lower().endswith(".png"):
        raise BadInput(f"--plot {path!r}: expected a file name ending in .png")
    if os.path.isdir(path):
        raise BadInput(f"--plot {path!r} is a directory")
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise BadInput(f"cannot write {path}: directory {d} does not exist")
    check_writable_dir(d, "write a plot in")


def plot(r: Result, path: str) -> None:
    """Write the run's time series and search-step histogram to the PNG at `path`."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = r.series
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(9, 10))
    title = (f"{r.settings['algorithm']}  range {r.settings['range']}  "
             f"{r.settings['destinations']} dst x {r.settings['sources']} src")
    fig.suptitle(title)
    if s is not None and s.t:
        ax1.plot(s.t, s.established, label="established")
        ax1.plot(s.t, s.time_wait, label="TIME_WAIT")
        ax1.plot(s.t, s.ports_in_use, label="(source, port) pairs in use", linestyle="--")
        per = {"pair": "ports per (source, destination)", "source": "ports per source IP",
               "host": "ports for the host"}[r.capacity.per]
        ax1.axhline(r.capacity.max, color="grey", linewidth=0.8, linestyle=":", label=per)
        ax1.set_ylabel("sockets / ports")
        ax1.legend(loc="upper left", fontsize=8)
        intervals = [0.0] + list(s.t)  # each sample closes the interval that ends at it
        ax2.stairs(s.failures, intervals, fill=True, color="tab:red")
        ax2.set_ylabel("refused connects (EADDRNOTAVAIL)\nper interval")
        ax2.set_xlabel("simulated time (s)")
    import numpy as np
    hist = np.asarray(r.steps_hist, dtype=np.int64)
    top = int(np.nonzero(hist)[0].max()) if hist.any() else 1
    # at most ~100 bins, log-spaced: most connects take 1 step, a few take thousands
    edges = np.unique(np.geomspace(1, top + 1, num=min(100, top + 1)).astype(np.int64))
    if edges[-1] <= top:
        edges = np.append(edges, top + 1)
    counts = np.add.reduceat(hist[: edges[-1]], edges[:-1] )if len(edges) > 1 else hist[1:2]
    if hist.any():
        ax3.stairs(counts, edges, fill=True, color="tab:purple")
        ax3.set_xscale("log")
        ax3.set_yscale("log")
    else:  # no connect in the run (a Poisson run can have none): nothing to log-scale
        ax3.text(0.5, 0.5, "no connects", ha="center", va="center", transform=ax3.transAxes)
    ss = r.search_steps
    ax3.set_xlabel(f"search steps per connect (mean {ss['mean']}, p99 {ss['p99']}, max {ss['max']})")
    ax3.set_ylabel("connects")
    fig.tight_layout()
    import io

    check_path(path)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, dpi=100, format="png")
    finally:
        plt.close(fig)
    atomic_write(path, buf.getvalue())    # names the file and the cause; never half a PNG
