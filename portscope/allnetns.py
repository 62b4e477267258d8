"""`--all-netns`: run one reader in every network namespace of the host.

The namespaces come from portscope.namespaces.discover() (every process's and every bind
mount's, not only `ip netns` names). Each is entered by its spec (its `ip netns` name,
else inode:N, resolved from the discovery without a second walk); our own is read
without setns. A namespace that disappears between the walk and its read, or that we
may not enter, is reported once in `skipped` and the others go on.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from .check import status
from .datapath import measure
from .errors import PortscopeError
from .namespaces import Discovery, NetNamespace, discover
from .report import report_json

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
MAX_WORKERS = 4


@dataclass
class Visit:
    """One namespace read: the namespace, the spec passed to the reader, what it returned."""
    ns: NetNamespace
    spec: str | None               # what was passed to the reader (None: our own namespace)
    value: Any

    def labels(self) -> dict:
        """netns / inode / container / pod of this namespace (for rows and findings)."""
        return label_dict(self.ns)


@dataclass
class Walk:
    """Every namespace's reading, the ones skipped (with the reason) and the discovery."""
    visits: list[Visit] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)   # {"netns", "netns_inode", "reason"}
    discovery: Discovery | None = None


def label_dict(ns: NetNamespace) -> dict:
    """The labels of rows and findings from namespace `ns`: netns, netns_inode, container, pod."""
    return {"netns": None if ns.current else ns.spec, "netns_inode": ns.inode,
            "container": ns.container.to_json() if ns.container else None,
            "pod": ns.pod.to_json() if ns.pod else None}


def workers() -> int:
    """Threads that read namespaces at once: one per core we may run on, at most MAX_WORKERS.
    Each read is mostly the kernel walking its socket hash (shared by every namespace, so it
    costs about as much in a small namespace as in a big one); recv() releases the GIL, so
    the walks of several namespaces overlap on several cores."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cores))


def each(reader: Callable[[str | None], Any], discovery: Discovery | None = None,
         threads: int | None = None) -> Walk:
    """reader(spec) in every namespace, ours first. Errors of one namespace (it vanished,
    permission denied, unreadable socket table) skip it; anything else propagates.

    The namespaces are read by `threads` threads (default: workers()). setns() moves only
    the calling thread and a netlink socket stays in the namespace it was opened in, so
    `reader` must enter the namespace itself (datapath.measure does, through netns.entered)
    and open its sockets inside it. Visits and skips keep the discovery's order.
    """
    d = discovery or discover()
    walk = Walk(discovery=d)
    order = sorted(d.namespaces, key=lambda n: (not n.current, n.inode))

    def visit(ns: NetNamespace) -> tuple[Visit | None, dict | None]:
        spec = None if ns.current else ns.spec
        try:
            return Visit(ns, spec, reader(spec)), None
        except (PortscopeError, OSError) as e:
            return None, {"netns": spec, "netns_inode": ns.inode,
                          "reason": " ".join(str(e).split()) or type(e).__name__}

    n = min(threads or workers(), len(order))
    if n <= 1:
        results = [visit(ns) for ns in order]
    else:
        pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="portscope-netns")
        try:
            results = list(pool.map(visit, order))
        finally:        # Ctrl-C: the reads under way end, the queued ones never start
            pool.shutdown(wait=True, cancel_futures=True)
    for v, skip in results:
        if v is not None:
            walk.visits.append(v)
        if skip is not None:
            walk.skipped.append(skip)
    return walk


def _flat(walk: Walk) -> tuple[list, list]:
    """Every namespace's destinations and findings, each labelled (worst / critical first)."""
    dests, finds = [], []
    for v in walk.visits:
        lab = v.labels()
        dests += [{**d.to_json(forecast=v.value.forecast is not None), **lab} for d in v.value.destinations]
        finds += [{**f.to_json(), **lab} for f in v.value.findings]
    dests.sort(key=lambda d: -d["utilization"])
    finds.sort(key=lambda f: SEVERITY_ORDER.get(f["severity"], 3))
    return dests, finds


def report_all(top: int | None) -> tuple[Walk, dict]:
    """`report --all-netns`: each namespace's `report --netns SPEC` document, labelled, plus
    every destination and finding flattened with its labels."""
    walk = each(lambda spec: measure(spec, top=top, census=True))
    dests, finds = _flat(walk)
    worst = [status(v.value) for v in walk.visits]
    overall = "critical" if "critical" in worst else "warning" if "warning" in worst else "ok"
    return walk, {
        "all_netns": True,
        "status": overall,
        "namespaces": [{**v.labels(), "report": report_json(v.value)} for v in walk.visits],
        "destinations": dests,
        "findings": finds,
        "skipped": walk.skipped,
        "warnings": walk.discovery.warnings if walk.discovery else [],
    }


def pressure_all(top: int | None, process: bool = False) -> tuple[Walk, dict]:
    """`pressure --all-netns`: as report_all, with each namespace's `pressure --json`."""
    walk = each(lambda spec: measure(spec, top=top, process=process, census=True))
    dests, finds = _flat(walk)

    def doc(res) -> dict:
        d = res.to_json()
        if process:
            d.setdefault("processes", [])     # docs/json.md: present with --process, even if empty
        return d
    return walk, {
        "all_netns": True,
        "namespaces": [{**v.labels(), "pressure": doc(v.value)} for v in walk.visits],
        "destinations": dests,
        "findings": finds,
        "skipped": walk.skipped,
        "warnings": walk.discovery.warnings if walk.discovery else [],
    }


def who(labels: dict) -> str:
    """A namespace in one phrase: its spec (or "(ours)"), container and pod."""
    parts = [labels["netns"] or "(ours)"]
    if labels.get("container"):
        parts.append(f"{labels['container']['runtime']}:{labels['container']['id'][:12]}")
    if labels.get("pod"):
        parts.append(f"pod {labels['pod']['uid']}")
    return " ".join(parts)
