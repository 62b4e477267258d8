"""The Python side of `conns` rows, in one process: render and classify one live table with
this checkout's code and with another checkout's, alternating (issue 16).

    sudo .venv/bin/python -m benchmarks.bench_rows [--sockets 100000] [--rounds 7] --baseline DIR
                                                   [--namespace NAME]

Whole-process ratios (benchmarks/bench_floor.py) carry start-up and two kernel walks, and
on a shared machine their noise is larger than the rendering's share. Here one snapshot
is taken once, inside a harness namespace (or NAME), and then each round times, by CPU
time of this process: json_document, text_rows and csv_rows of sockets/rowtext.py, and
filters.mark_ephemeral, once from this checkout and once from DIR. DIR's two modules are
loaded from their source inside this package, so their relative imports (table, cgroups)
resolve to this checkout's. Every output is compared byte for byte first. Prints the best
and median milliseconds of each.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
import types

from benchmarks.harness import socket_namespace


def _load(path: str, name: str) -> types.ModuleType:
    """DIR's module at `path`, executed as a sibling in portscope.sockets."""
    mod = types.ModuleType(f"portscope.sockets.{name}")
    mod.__package__ = "portscope.sockets"
    with open(path) as f:
        exec(compile(f.read(), path, "exec"), mod.__dict__)
    return mod


def measure(ns: str, rounds: int, baseline: str) -> dict:
    """{job: {"this": [s...], "baseline": [s...]}} for one snapshot taken in `ns`."""
    from portscope import sockets
    from portscope.host import host_facts
    from portscope.sockets import filters, rowtext

    old = {"rowtext": _load(os.path.join(baseline, "portscope/sockets/rowtext.py"), "rowtext_baseline"),
           "filters": _load(os.path.join(baseline, "portscope/sockets/filters.py"), "filters_baseline")}
    new = {"rowtext": rowtext, "filters": filters}
    table = sockets.snapshot(("tcp", "udp", "udplite"), netns=ns)
    facts = host_facts(ns)
    idx = range(len(table))
    head = {"backend": table.backend, "netns": ns, "warnings": []}
    jobs = {
        "json": lambda m: "".join(m["rowtext"].json_document(table, idx, head)),
        "text": lambda m: "".join(m["rowtext"].text_rows(table, idx, False)),
        "csv": lambda m: "".join(m["rowtext"].csv_rows(table, idx)),
        "classify": lambda m: m["filters"].mark_ephemeral(copy.copy(table), facts.ephemeral, facts.reserved),
    }
    for name in ("json", "text", "csv"):
        if jobs[name](old) != jobs[name](new):
            raise SystemExit(f"{name}: the two checkouts print different bytes")
    out: dict = {"rows": len(table), "jobs": {k: {"this": [], "baseline": []} for k in jobs}}
    for r in range(rounds):
        order = [("this", new), ("baseline", old)]
        for name, job in jobs.items():
            for tag, mods in (order if r % 2 else order[::-1]):
                for m in (rowtext, old["rowtext"]):      # tables made once per process count every time
                    for attr in ("_PORTS", "_PADDED"):
                        if isinstance(getattr(m, attr, None), dict):
                            getattr(m, attr).clear()
                        elif hasattr(m, attr):
                            setattr(m, attr, None)
                t = time.process_time()
                job(mods)
                out["jobs"][name][tag].append(time.process_time() - t)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sockets", type=int, default=100_000, help="sockets in the namespace the harness builds")
    ap.add_argument("--rounds", type=int, default=7, help="alternating rounds")
    ap.add_argument("--baseline", metavar="DIR", required=True, help="another checkout to compare with")
    ap.add_argument("--namespace", metavar="NAME", help="use this existing namespace instead of building one")
    a = ap.parse_args(argv)

    def go(ns: str) -> int:
        load = os.getloadavg()
        res = measure(ns, a.rounds, os.path.abspath(a.baseline))
        print(f"{res['rows']} rows, {a.rounds} rounds, load average {load[0]:.2f} before / "
              f"{os.getloadavg()[0]:.2f} after; CPU ms, best / median")
        for name, v in res["jobs"].items():
            cells = "   ".join(f"{tag} {min(s) * 1000:6.1f} / {statistics.median(s) * 1000:6.1f}"
                               for tag, s in v.items())
            print(f"{name:9} {cells}")
        return 0

    if a.namespace:
        return go(a.namespace)
    with socket_namespace(a.sockets) as ns:
        return go(ns.name)


if __name__ == "__main__":
    sys.exit(main())
