"""`portscope namespaces`: every network namespace on the host, with its container / pod."""
from __future__ import annotations

import click

from .common import emit_json, json_option, want_json


@click.command("namespaces")
@json_option
def namespaces(json_out: bool) -> None:
    """Every network namespace on the host: inode, names, processes, container and pod.

    \b
    Found by walking /proc/*/ns/net and every nsfs bind mount (/run/netns,
    /var/run/docker/netns, CNI's cni-... names), deduplicated by inode as
    `lsns -t net` does. Container and pod identity come from /proc/PID/cgroup
    (Docker, containerd, CRI-O, Kubernetes pod UID and QoS class). Any of them
    can be given to other commands as --netns NAME, inode:N, container:ID or
    pod:UID. Reading other users' processes needs root.
    """
    import sys

    from ..errors import Unsupported
    if not sys.platform.startswith("linux"):
        raise Unsupported("network namespaces are a Linux feature")
    from ..namespaces import discover

    d = discover()
    if want_json(json_out):
        emit_json(d.to_json())
        return
    for w in d.warnings:
        click.echo(f"portscope: warning: {w}", err=True)
    rows = [("INODE", "NAMES", "PROCS", "PROCESSES", "CONTAINER", "POD")]
    for ns in d.namespaces:
        j = ns.to_json()
        procs = " ".join(f"{p}/{c}" for p, c in zip(j["pids"][:3], j["commands"][:3]))
        if ns.pids and len(ns.pids) > 3:
            procs += " ..."
        cont = f"{ns.container.runtime}:{ns.container.id[:12]}" if ns.container else "-"
        pod = f"{ns.pod.uid} ({ns.pod.qos})" if ns.pod else "-"
        names = ",".join(ns.names) or "-"
        rows.append((str(ns.inode) + ("*" if ns.current else ""), names, str(len(ns.pids)),
                     procs or "-", cont, pod))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    click.echo(f"({len(d.namespaces)} namespaces; * = ours"
               + (f"; {d.unreadable} process(es) unreadable" if d.unreadable else "") + ")")
