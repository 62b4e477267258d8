"""Which cgroups hold a destination's ports: `pressure --cgroup`.

Pods with `hostNetwork: true` and services on the host share one network namespace, so a
destination's row there does not say who opened its connections; each socket's cgroup
does (sock_diag's INET_DIAG_CGROUP_ID, read by sockets/cgroups.py right after the socket
table). Per destination: its sockets counted by cgroup (path, container, pod), the most
numerous first; TIME_WAIT sockets have no cgroup (they are not full sockets any more) and
are counted apart, as are sockets without one for another reason (request sockets, a
socket closed between the two reads, a kernel without cgroup ids or the procfs backend).
"""
from __future__ import annotations

from collections import Counter
from itertools import compress

from .datapath import measure
from .errors import NotPermitted, SystemReadError
from .host import HostFacts, host_facts
from .pressure import PressureResult, row_masks
from .sockets import cgroups
from .sockets.table import PROTO_NAMES, TCP_TIME_WAIT, SocketTable, format_addr

TOP_CGROUPS = 3

__all__ = ["measure_cgroups", "attribute", "label", "TOP_CGROUPS"]


def attribute(facts: HostFacts, table: SocketTable, limit: int = TOP_CGROUPS) -> dict[tuple, dict]:
    """(proto, src, dst, dport) -> the `cgroups` object of that destination, from a table
    whose `cgroup` column is filled (cgroups.fill): {"top": [{"path", "container", "pod",
    "sockets"}] (the `limit` cgroups with most sockets), "more": sockets in other cgroups,
    "time_wait": TIME_WAIT sockets (no cgroup), "unknown": other sockets without one}."""
    m = row_masks(facts, table)
    cg = table.cgroup or [None] * len(table)
    by_dest: dict[tuple, Counter] = {}
    info: dict[int, dict] = {}
    tw: Counter = Counter()
    unknown: Counter = Counter()
    t = table
    for i in compress(range(len(t)), m.client):
        key = (PROTO_NAMES.get(t.proto[i], str(t.proto[i])), format_addr(t.local_addr[i]),
               format_addr(t.remote_addr[i]), t.remote_port[i])
        c = cg[i]
        if c is None:
            (tw if t.state[i] == TCP_TIME_WAIT else unknown)[key] += 1
            continue
        info.setdefault(c["id"], c)
        by_dest.setdefault(key, Counter())[c["id"]] += 1
    out = {}
    for key in by_dest.keys() | tw.keys() | unknown.keys():
        counts = by_dest.get(key, Counter())
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], info[kv[0]]["path"] or "", kv[0]))
        out[key] = {
            "top": [{"path": info[cid]["path"], "container": info[cid]["container"], "pod": info[cid]["pod"],
                     "sockets": n} for cid, n in ranked[:limit]],
            "more": sum(n for _, n in ranked[limit:]),
            "time_wait": tw.get(key, 0),
            "unknown": unknown.get(key, 0),
        }
    return out


def measure_cgroups(netns: str | None = None, *, top: int | None = None, process: bool = False,
                    interval: float | None = None, samples: int | None = None,
                    limit: int = TOP_CGROUPS) -> tuple[PressureResult, dict[tuple, dict]]:
    """datapath.measure() plus, per destination key, its `cgroups` object (attribute()) from
    the last socket table read. Raises as measure() does."""
    last: list[SocketTable] = []

    def grab(t: SocketTable) -> None:
        try:
            cgroups.fill(t, netns)
        except PermissionError as e:
            raise NotPermitted(f"cannot read the sockets' cgroups: {e}")
        except OSError as e:
            raise SystemReadError(f"cannot read the sockets' cgroups: {e}")
        last[:] = [t]

    res = measure(netns, top=top, process=process, interval=interval, samples=samples, on_table=grab)
    return res, attribute(host_facts(netns), last[0], limit) if last else {}


def label(entry: dict) -> str:
    """One cgroup of a destination in a few words: container (and pod), pod, or path."""
    if entry["container"]:
        c = entry["container"]
        return f"{c['runtime']}:{c['id'][:12]}" + (f" pod {entry['pod']['uid']}" if entry["pod"] else "")
    if entry["pod"]:
        return f"pod {entry['pod']['uid']}"
    return entry["path"] or "?"
