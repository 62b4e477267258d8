"""`nat --all-netns`: conntrack, NAT rules and SNAT use of every network namespace.

Each namespace is read by portscope.nat.analyze (entered by its spec, in the threads of
portscope.allnetns.each); its SNAT destinations and findings are flattened and labelled
with the namespace, container and pod, as `report --all-netns` labels its rows.
"""
from __future__ import annotations

from ..allnetns import SEVERITY_ORDER, Walk, each
from . import NatReport, analyze


def nat_all(dump: bool = True, top: int | None = None) -> tuple[Walk, dict]:
    """`nat --all-netns`: each namespace's `nat --netns SPEC --json` document, labelled, plus
    every SNAT destination and finding flattened with its labels (most used / worst first).
    `top` keeps the N most used destinations of each namespace and of the flattened list."""
    walk = each(lambda spec: analyze(spec, dump=dump))
    snat, finds = [], []
    for v in walk.visits:
        lab = v.labels()
        rep: NatReport = v.value
        snat += [{**d.to_json(), **lab} for d in rep.snat]
        finds += [{**f, **lab} for f in rep.findings]
    snat.sort(key=lambda d: (-d["utilization"], -d["in_use"]))
    finds.sort(key=lambda f: SEVERITY_ORDER.get(f["severity"], 3))
    return walk, {
        "all_netns": True,
        "namespaces": [{**v.labels(), "nat": v.value.to_json(top=top)} for v in walk.visits],
        "snat": snat if top is None else snat[:top],
        "snat_total": len(snat),
        "findings": finds,
        "skipped": walk.skipped,
        "warnings": walk.discovery.warnings if walk.discovery else [],
    }
