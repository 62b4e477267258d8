"""Start-up: `portscope --help`, `range`, `port 80` (and `namespaces`) against `python -c pass`, in one run.

    .venv/bin/python -m benchmarks.bench_startup [--rounds 21] [--baseline DIR] [--json]

Every command runs as `python -m portscope ...` with the checkout as working directory
and first on PYTHONPATH (so --baseline DIR, another checkout, runs the same way in the
same rounds), three ways: the fast front end (front.fast, the default), the click CLI
(`PORTSCOPE_NO_FAST=1`, what every command line ran before the front end), and the venv's
console script `portscope` (pip's wrapper, which imports re before our code runs). Beside
them the floors: `python -c pass` (the interpreter) and `python -c "import click"`.
Rounds are interleaved in a rotating order; CPU time (user + sys of the child and the
children it waited for, from wait4) is the figure, medians over rounds, as ratios to
`python -c pass` of the same round. Children run without PYTHONDONTWRITEBYTECODE (after a
compileall), as an installed package does: with it, changed modules compile on every start.
Then `-X importtime` of each command (the smallest of 5 runs per module) names the modules
that cost the most, by their own import time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
COMMANDS = [("--help", ["--help"]), ("range", ["range"]), ("port 80", ["port", "80"]),
            ("namespaces", ["namespaces"])]
SCRIPT = os.path.join(os.path.dirname(PY), "portscope")      # the venv's console script (this checkout)


def child_env(**extra: str) -> dict:
    """The children's environment: .pyc files written and used, the default terminal width."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PORTSCOPE_NO_FAST")}
    env.setdefault("COLUMNS", "80")
    env.update(extra)
    return env


def cpu_of(argv: list[str], env: dict | None = None, cwd: str | None = None) -> float:
    """CPU seconds (user + sys) of one run of argv."""
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {p.returncode}")
    return ru.ru_utime + ru.ru_stime


def importtime(argv: list[str], env: dict, cwd: str, runs: int = 5) -> list[tuple[str, int, int]]:
    """(module, self us, cumulative us), smallest over `runs`, most expensive first."""
    best: dict[str, tuple[int, int]] = {}
    for _ in range(runs):
        err = subprocess.run([PY, "-X", "importtime", *argv], capture_output=True, text=True, env=env,
                             cwd=cwd).stderr
        for line in err.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            own, cum, name = line[len("import time:"):].split("|")
            key = name.strip()
            old = best.get(key, (10**12, 10**12))
            best[key] = (min(old[0], int(own)), min(old[1], int(cum)))
    return sorted(((k, s, c) for k, (s, c) in best.items()), key=lambda x: -x[1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=21, help="interleaved rounds (medians are over these)")
    ap.add_argument("--baseline", metavar="DIR", help="another checkout, timed in the same rounds")
    ap.add_argument("--top", type=int, default=12, help="modules to list from -X importtime")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    a = ap.parse_args(argv)
    checkouts = {"this": HERE}
    if a.baseline:
        checkouts["baseline"] = os.path.abspath(a.baseline)
    base_env = child_env()
    jobs: list[tuple[str, list[str], dict | None, str | None]] = [
        ("python -c pass", [PY, "-c", "pass"], base_env, None),
        ("python -c 'import click'", [PY, "-c", "import click"], base_env, None),
    ]
    for tag, path in checkouts.items():
        subprocess.run([PY, "-m", "compileall", "-q", os.path.join(path, "portscope")], env=base_env)
        fast = child_env(PYTHONPATH=path)
        slow = child_env(PYTHONPATH=path, PORTSCOPE_NO_FAST="1")
        for label, args in COMMANDS:
            jobs.append((f"{tag}: -m portscope {label}", [PY, "-m", "portscope", *args], fast, path))
            jobs.append((f"{tag}: -m portscope {label} (click)", [PY, "-m", "portscope", *args], slow, path))
    if os.path.exists(SCRIPT):
        for label, args in COMMANDS:
            jobs.append((f"this: portscope {label} (console script)", [SCRIPT, *args], child_env(), HERE))
    for _, cmd, env, cwd in jobs:
        cpu_of(cmd, env, cwd)                      # warm-up (.pyc files, page cache)
    load0 = os.getloadavg()
    res: dict[str, list[float]] = {j[0]: [] for j in jobs}
    for r in range(a.rounds):
        k = r % len(jobs)
        for label, cmd, env, cwd in jobs[k:] + jobs[:k]:
            res[label].append(cpu_of(cmd, env, cwd))
    base = res["python -c pass"]
    rows = [{"command": label, "cpu_ms": 1000 * statistics.median(v),
             "ratio_to_pass": statistics.median(x / b for x, b in zip(v, base))} for label, v in res.items()]
    env = child_env(PYTHONPATH=HERE)
    offenders = {label: [{"module": m, "self_us": s, "cumulative_us": c}
                         for m, s, c in importtime(["-m", "portscope", *args], env, HERE)[:a.top]]
                 for label, args in COMMANDS}
    doc = {"rounds": a.rounds, "load_before": load0, "load_after": os.getloadavg(), "rows": rows,
           "importtime_this_checkout": offenders, "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    if a.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{a.rounds} rounds, load average {load0[0]:.2f} before / {doc['load_after'][0]:.2f} after; CPU medians")
    for r in rows:
        print(f"  {r['command']:52} {r['cpu_ms']:7.1f} ms  {r['ratio_to_pass']:5.2f}x python -c pass")
    for label, mods in offenders.items():
        print(f"-X importtime, portscope {label} (self us, cumulative us):")
        for m in mods:
            print(f"  {m['self_us']:7d} {m['cumulative_us']:8d}  {m['module']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
