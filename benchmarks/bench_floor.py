"""The paths users run most against their anchors, side by side in one run (issue 16).

    sudo .venv/bin/python -m benchmarks.bench_floor [--sockets 100000] [--rounds 7] [--baseline DIR]
                                                    [--namespace NAME] [--only WORD] [--json]

In one namespace full of sockets (benchmarks/harness.py, or an existing one with
--namespace), round after round and in a rotating order so drift hits every command
alike, runs as whole processes under `ip netns exec`, stdout to /dev/null:

  ss -tan, ss -tanH                 the anchors (iproute2)
  pressure --json                   vs ss -tan
  conns --json, conns, conns --csv  vs ss -tanH (one line per socket, as ss -H prints)
  conns --count                     vs ss -tan

portscope runs as `python -m portscope` with the checkout first on PYTHONPATH, so
--baseline DIR (another checkout, e.g. `git archive merge-wip | tar -x -C DIR`) runs
the same way in the same rounds. Each command's CPU time (user + sys, from wait4) and
wall time are kept per round; the ratios are medians of the per-round ratios to the
anchor of that round (CPU to the microsecond, from RUSAGE_CHILDREN). Peak RSS is the child's ru_maxrss. CPU ratios are the figure to
trust on a shared machine: wall time includes waiting for a core.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.harness import socket_namespace

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIME = "/usr/bin/time"

# (label, argv after `portscope`, anchor label)
COMMANDS = [
    ("pressure --json", ["pressure", "--json"], "ss -tan"),
    ("conns --json", ["conns", "--json"], "ss -tanH"),
    ("conns (text rows)", ["conns"], "ss -tanH"),
    ("conns --csv", ["conns", "--csv"], "ss -tanH"),
    ("conns --count", ["conns", "--count"], "ss -tan"),
]
ANCHORS = {"ss -tan": ["ss", "-tan"], "ss -tanH": ["ss", "-tanH"]}


def run(ns: str, argv: list[str], env: dict | None = None, cwd: str | None = None) -> tuple[float, float, int]:
    """(wall s, cpu s, peak RSS KiB) of one command inside the namespace. Peak RSS comes
    from /usr/bin/time (package `time`): a child forked from this process would start with
    this process's resident pages in its ru_maxrss. CPU is this process's RUSAGE_CHILDREN
    before and after (the command, `ip` and `time` itself, to the microsecond):
    /usr/bin/time prints it in hundredths, 3% of a 0.3 s run."""
    t = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.NamedTemporaryFile("r") as f:
        r = subprocess.run([TIME, "-f", "%U %S %M", "-o", f.name, "ip", "netns", "exec", ns, *argv],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd)
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {r.returncode}: {r.stderr.decode()[-400:]}")
        rss = f.read().split()[-1]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, int(rss)


def checkout_env(path: str) -> dict:
    """The environment that runs `python -m portscope` from the checkout at `path` (run with
    the checkout as working directory too: -m puts it first on sys.path)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = path
    # the warm-up round must leave .pyc files behind, or every timed run of a checkout
    # whose modules changed since its last compile pays for compiling them again
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def measure(ns: str, rounds: int, checkouts: dict[str, str], top_up=None, commands=None) -> dict:
    """{label: [(wall, cpu, rss), ...]} for the anchors and every (checkout, command)."""
    commands = COMMANDS if commands is None else commands
    anchors = {c[2] for c in commands}
    jobs: list[tuple[str, list[str], dict | None, str | None]] = [
        (k, v, None, None) for k, v in ANCHORS.items() if k in anchors]
    for tag, path in checkouts.items():
        env = checkout_env(path)
        for label, argv, _ in commands:
            jobs.append((f"{tag}: {label}", [sys.executable, "-m", "portscope", *argv], env, path))
    for _label, argv, env, cwd in jobs:             # warm-up: page cache, .pyc files
        run(ns, argv, env, cwd)
    out: dict[str, list] = {job[0]: [] for job in jobs}
    for r in range(rounds):
        if top_up is not None:
            top_up()
        k = r % len(jobs)
        for label, argv, env, cwd in jobs[k:] + jobs[:k]:
            out[label].append(run(ns, argv, env, cwd))
    return out


def summarize(res: dict, checkouts: dict[str, str], commands=None) -> list[dict]:
    """One row per (checkout, command): medians and the per-round ratio to its anchor."""
    rows = []
    for tag in checkouts:
        for label, _, anchor in COMMANDS if commands is None else commands:
            mine, base = res[f"{tag}: {label}"], res[anchor]
            rows.append({
                "checkout": tag, "command": label, "anchor": anchor,
                "cpu_s": statistics.median(c for _, c, _ in mine),
                "anchor_cpu_s": statistics.median(c for _, c, _ in base),
                "cpu_ratio": statistics.median(a[1] / b[1] for a, b in zip(mine, base)),
                "wall_s": statistics.median(w for w, _, _ in mine),
                "anchor_wall_s": statistics.median(w for w, _, _ in base),
                "wall_ratio": statistics.median(a[0] / b[0] for a, b in zip(mine, base)),
                "peak_rss_mib": max(m for _, _, m in mine) / 1024,
            })
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sockets", type=int, default=100_000, help="sockets in the namespace the harness builds")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds (medians are over these)")
    ap.add_argument("--baseline", metavar="DIR", help="another checkout, timed in the same rounds")
    ap.add_argument("--namespace", metavar="NAME", help="use this existing namespace instead of building one")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--only", metavar="WORD", action="append",
                    help="time only the commands whose label contains WORD (repeatable), e.g. --only pressure")
    a = ap.parse_args(argv)
    commands = [c for c in COMMANDS if not a.only or any(w in c[0] for w in a.only)]
    if not commands:
        ap.error(f"no command matches {a.only}")
    checkouts = {"this": HERE}
    if a.baseline:
        checkouts["baseline"] = os.path.abspath(a.baseline)

    def go(ns: str, top_up=None) -> int:
        t0 = time.monotonic()
        n = subprocess.run(["ip", "netns", "exec", ns, "ss", "-tanH"], capture_output=True,
                           text=True).stdout.count("\n")
        load0 = os.getloadavg()
        res = measure(ns, a.rounds, checkouts, top_up, commands)
        rows = summarize(res, checkouts, commands)
        doc = {"tcp_sockets": n, "rounds": a.rounds, "load_before": load0, "load_after": os.getloadavg(),
               "seconds": round(time.monotonic() - t0, 1), "anchors_peak_rss_mib":
               {k: max(m for _, _, m in res[k]) / 1024 for k in ANCHORS if k in res}, "rows": rows}
        if a.json:
            print(json.dumps(doc, indent=2))
            return 0
        print(f"{n} TCP sockets (ss -tanH lines), {a.rounds} rounds, load average "
              f"{load0[0]:.2f} before / {doc['load_after'][0]:.2f} after")
        print(f"{'checkout':9} {'command':18} {'anchor':9} {'cpu':>7} {'anchor':>7} {'cpu x':>6} "
              f"{'wall x':>6} {'peak MiB':>8}")
        for r in rows:
            print(f"{r['checkout']:9} {r['command']:18} {r['anchor']:9} {r['cpu_s']:7.3f} {r['anchor_cpu_s']:7.3f} "
                  f"{r['cpu_ratio']:6.2f} {r['wall_ratio']:6.2f} {r['peak_rss_mib']:8.1f}")
        for k, v in doc["anchors_peak_rss_mib"].items():
            print(f"{k} peak {v:.1f} MiB")
        return 0

    if a.namespace:
        return go(a.namespace)
    with socket_namespace(a.sockets) as ns:
        return go(ns.name, ns.top_up_time_wait)


if __name__ == "__main__":
    sys.exit(main())
