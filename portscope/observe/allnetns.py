"""`watch --all-netns`: one eBPF failure counter for the whole host, the TIME_WAIT
counters of every network namespace, and each namespace's findings.

The failure counter already counts every namespace's failures (each row carries the
namespace inode the failing task was in); here the rows are split by namespace and
labelled with its spec, container and pod (portscope.allnetns), and each namespace's
TcpExt/sockstat counters are read at both ends of the window (in the threads of
allnetns.each), so its findings are those `watch --netns SPEC` would give.
A namespace that vanishes during the window is skipped once; failures of a namespace
made during it are labelled after a second walk, or by inode alone when it is gone.
"""
from __future__ import annotations

import time
from typing import Callable

from ..allnetns import SEVERITY_ORDER, Walk, each, label_dict
from ..namespaces import discover
from . import counters as C
from .findings import evaluate
from .watch import Observation, Watcher, diff


def watch_all(w: Watcher, seconds: float, *, sleep: "Callable[[float], None] | None" = None) -> tuple[Walk, dict]:
    """Watch every namespace for `seconds` with watcher `w` (opened without a namespace;
    Ctrl-C ends the window early):
    (the walk, whose visits hold each namespace's Observation, and the JSON document)."""
    t0 = time.monotonic()
    f0 = w.failures()
    d = discover()
    first = each(C.read, discovery=d)
    try:
        (sleep or time.sleep)(seconds)
    except KeyboardInterrupt:         # Ctrl-C ends the window early: show what it saw
        pass
    f1 = w.failures()
    last = each(C.read, discovery=d)
    elapsed = time.monotonic() - t0
    begun = {v.ns.inode: v.value for v in first.visits}
    failed = diff(f0, f1)
    walk = Walk(discovery=d, skipped=list(first.skipped))
    gone = {s["netns_inode"] for s in first.skipped}
    for s in last.skipped:
        if s["netns_inode"] not in gone:
            walk.skipped.append(s)
    for v in last.visits:
        if v.ns.inode not in begun:
            continue
        obs = Observation(w.backend, elapsed, [f for f in failed if f.netns == v.ns.inode],
                          C.delta(begun[v.ns.inode], v.value), v.spec, w.bpf_note)
        obs.findings = evaluate(obs)
        v.value = obs
        walk.visits.append(v)
    labels = {v.ns.inode: v.labels() for v in walk.visits}
    labels.update((s["netns_inode"], {"netns": s["netns"], "netns_inode": s["netns_inode"],
                                      "container": None, "pod": None}) for s in walk.skipped)
    unknown = {f.netns for f in failed} - labels.keys()
    if unknown:                       # made during the window: name it if it still exists
        later = discover(identity=True)
        for ino in unknown:
            ns = later.by_inode(ino)
            labels[ino] = label_dict(ns) if ns else {"netns": f"inode:{ino}", "netns_inode": ino,
                                                      "container": None, "pod": None}
    rows = []
    for f in failed:
        row = Observation(w.backend, elapsed, [f], {}).to_json()["failures"][0]
        rows.append({**row, **labels[f.netns]})
    finds = [{**f.to_json(), **v.labels()} for v in walk.visits for f in v.value.findings]
    finds.sort(key=lambda f: SEVERITY_ORDER.get(f["severity"], 3))
    return walk, {
        "all_netns": True,
        "backend": w.backend,
        "seconds": round(elapsed, 3),
        "namespaces": [{**v.labels(), "watch": v.value.to_json()} for v in walk.visits],
        "failures": rows,
        "findings": finds,
        "skipped": walk.skipped,
        "warnings": d.warnings,
    }
