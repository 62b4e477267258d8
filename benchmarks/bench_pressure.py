"""`portscope pressure` vs `ss -tan` on the same namespace full of sockets, in one run.

    sudo .venv/bin/python -m benchmarks.bench_pressure [--sockets 100000] [--rounds 7] [--baseline DIR]

Both commands run inside the namespace through `ip netns exec` (same overhead for both), as
whole processes (interpreter start-up included: that is what a user or a monitoring agent
pays), interleaved round by round; we report medians and the ratio. Target: pressure
within 1.5x of ss -tan. `portscope pressure --json` also reads UDP and does the analysis,
so `ss -tuan` is shown as a second anchor.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from benchmarks.harness import socket_namespace

TARGET = 1.5


def portscope_cmd() -> list[str]:
    """The installed console script; a plain launcher if the script cannot start."""
    exe = os.path.join(os.path.dirname(sys.executable), "portscope")
    if os.path.exists(exe) and subprocess.run([exe, "pressure", "--help"], capture_output=True).returncode == 0:
        return [exe]
    return [sys.executable, "-c",
            "import importlib.util, sys; from portscope.cli import main; main(sys.argv[1:])"]


# children may write .pyc files, as an installed package does: otherwise a checkout whose
# modules changed since their last compile pays for compiling them in every timed run
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, float, bytes]:
    """Wall time, and CPU time (user + sys of the child and its children: what the command
    costs, far less disturbed than wall time when other work shares the cores)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120, env=env or ENV)
    dt = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.decode()[-400:]}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return dt, cpu, r.stdout


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sockets", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--baseline", metavar="CHECKOUT",
                    help="also time `pressure --json` from another checkout of portscope (its directory "
                         "first on PYTHONPATH), in the same rounds: before/after a change, side by side")
    a = ap.parse_args(argv)
    ps = portscope_cmd()
    t0 = time.monotonic()
    with socket_namespace(a.sockets) as ns:
        built = time.monotonic() - t0
        ns.top_up_time_wait()
        cmds = {
            "ss -tan": ns.cmd("ss", "-tan"),
            "ss -tuan": ns.cmd("ss", "-tuan"),
            "portscope pressure --json": ns.cmd(*ps, "pressure", "--json"),
            "portscope pressure": ns.cmd(*ps, "pressure"),
        }
        envs: dict[str, dict] = {}
        if a.baseline:
            key = "baseline pressure --json"
            cmds[key] = ns.cmd(*ps, "pressure", "--json")
            envs[key] = dict(ENV, PYTHONPATH=os.path.abspath(a.baseline))
        for k, c in cmds.items():        # warm caches once
            timed(c, envs.get(k))
        times: dict[str, list[float]] = {k: [] for k in cmds}
        cpus: dict[str, list[float]] = {k: [] for k in cmds}
        out = {}
        for _ in range(a.rounds):
            for k, c in cmds.items():
                dt, cpu, out[k] = timed(c, envs.get(k))
                times[k].append(dt)
                cpus[k].append(cpu)
        lines = out["ss -tan"].decode().count("\n") - 1
        res = json.loads(out["portscope pressure --json"])
    med = {k: statistics.median(v) for k, v in times.items()}
    cmed = {k: statistics.median(v) for k, v in cpus.items()}
    ratio = med["portscope pressure --json"] / med["ss -tan"]
    cratio = cmed["portscope pressure --json"] / cmed["ss -tan"]
    report = {
        "sockets": a.sockets, "rounds": a.rounds, "namespace_built_s": round(built, 1),
        "ss_tan_rows": lines, "pressure_sockets": res["global"]["sockets"],
        "pressure_destinations": res["destinations_total"],
        "median_s": {k: round(v, 4) for k, v in med.items()},
        "median_cpu_s": {k: round(v, 4) for k, v in cmed.items()},
        "cpu_ratio_pressure_json_vs_ss_tan": round(cratio, 2),
        "load_average": os.getloadavg(),
        "ratio_pressure_json_vs_ss_tan": round(ratio, 2),
        "ratio_pressure_text_vs_ss_tan": round(med["portscope pressure"] / med["ss -tan"], 2),
        "ratio_pressure_json_vs_ss_tuan": round(med["portscope pressure --json"] / med["ss -tuan"], 2),
        "target": TARGET, "ok": ratio <= TARGET,
    }
    if a.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{a.sockets} sockets ({lines} rows in ss -tan), {a.rounds} rounds, medians "
              f"(load average {os.getloadavg()[0]:.2f}):")
        print(f"  {'':<28} {'wall':>9}  {'ratio':>6}   {'cpu':>9}  {'ratio':>6}")
        for k in med:
            print(f"  {k:<28} {med[k] * 1000:6.1f} ms  {med[k] / med['ss -tan']:5.2f}x   "
                  f"{cmed[k] * 1000:6.1f} ms  {cmed[k] / cmed['ss -tan']:5.2f}x")
        print(f"pressure saw {res['global']['sockets']} client sockets to {res['destinations_total']} destinations")
        print(f"target <= {TARGET}x (wall): {'met' if report['ok'] else 'NOT met'} ({ratio:.2f}x; cpu {cratio:.2f}x)")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
