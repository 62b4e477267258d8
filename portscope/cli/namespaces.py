"""`portscope namespaces`: every network namespace on the host, with its container / pod."""
from __future__ import annotations

import click

from ..front.views import namespaces_show
from .common import json_option, want_json


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
    namespaces_show(want_json(json_out))
