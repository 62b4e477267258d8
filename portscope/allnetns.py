"""`--all-netns`: run one reader in every network namespace of the host.

The namespaces come from portscope.namespaces.discover() (every process's and every bind
mount's, not only `ip netns` names). Each is entered by its spec (its `ip netns` name,
else inode:N, resolved from the discovery without a second walk); our own is read
without setns. A namespace that disappears between the walk and its read, or that we
may not enter, is reported once in `skipped` and the others go on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import PortscopeError
from .namespaces import Discovery, NetNamespace, discover


@dataclass
class Visit:
    ns: NetNamespace
    spec: str | None               # what was passed to the reader (None: our own namespace)
    value: Any

    def labels(self) -> dict:
        """netns / inode / container / pod of this namespace (for rows and findings)."""
        return label_dict(self.ns)


@dataclass
class Walk:
    visits: list[Visit] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)   # {"netns", "netns_inode", "reason"}
    discovery: Discovery | None = None


def label_dict(ns: NetNamespace) -> dict:
    return {"netns": None if ns.current else ns.spec, "netns_inode": ns.inode,
            "container": ns.container.to_json() if ns.container else None,
            "pod": ns.pod.to_json() if ns.pod else None}


def each(reader: Callable[[str | None], Any], discovery: Discovery | None = None) -> Walk:
    """reader(spec) in every namespace, ours first. Errors of one namespace (it vanished,
    permission denied, unreadable socket table) skip it; anything else propagates."""
    d = discovery or discover()
    walk = Walk(discovery=d)
    order = sorted(d.namespaces, key=lambda n: (not n.current, n.inode))
    for ns in order:
        spec = None if ns.current else ns.spec
        try:
            walk.visits.append(Visit(ns, spec, reader(spec)))
        except (PortscopeError, OSError) as e:
            walk.skipped.append({"netns": spec, "netns_inode": ns.inode,
                                 "reason": " ".join(str(e).split()) or type(e).__name__})
    return walk
