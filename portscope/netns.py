"""Enter another network namespace for the duration of a block.

`--netns NAME` names a namespace made by `ip netns add` (/run/netns/NAME);
`--netns pid:PID` is the namespace of a running process (a container).
setns() moves only the calling thread, so procfs readers must use
/proc/thread-self/net (see `proc_net_path`) and sysctls are opened inside the block.
"""
from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from typing import Iterator

from .errors import BadInput, NotPermitted, Unsupported

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIRS = ("/run/netns", "/var/run/netns")

_libc = None


def _setns(fd: int) -> None:
    global _libc
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(fd, CLONE_NEWNET)
        return
    import ctypes  # only on Python < 3.12; importing it costs start-up time
    import ctypes.util

    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def resolve(spec: str) -> str:
    """Path of the namespace file for NAME or pid:PID; BadInput if it does not exist."""
    spec = (spec or "").strip()
    if not spec:
        raise BadInput("--netns needs a name or pid:PID")
    if spec.partition(":")[0] in ("inode", "container", "pod"):
        from .namespaces import resolve_spec      # walks /proc: only for these forms
        return resolve_spec(spec)
    if spec.startswith("pid:"):
        pid = spec[4:]
        if not pid.isdigit():
            raise BadInput(f"bad --netns {spec!r}: expected pid:PID with a numeric PID")
        path = f"/proc/{pid}/ns/net"
        if not os.path.exists(f"/proc/{pid}"):
            raise BadInput(f"network namespace {spec!r} does not exist (no process {pid})")
        return path
    if "/" in spec or spec in (".", ".."):
        raise BadInput(f"bad --netns name {spec!r}")
    for d in NETNS_RUN_DIRS:
        path = os.path.join(d, spec)
        if os.path.exists(path):
            return path
    raise BadInput(f"network namespace {spec!r} does not exist (see `ip netns list`)")


@contextmanager
def entered(spec: str | None) -> Iterator[None]:
    """Run the block inside namespace `spec` (None: stay where we are), then come back."""
    if not spec:
        yield
        return
    if not hasattr(os, "setns") and not os.path.exists("/proc/self/ns/net"):
        raise Unsupported("network namespaces are a Linux feature")
    path = resolve(spec)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except PermissionError:
        hint = " (run as root)" if os.geteuid() else " (even as root: a security module or container forbids it)"
        raise NotPermitted(f"cannot open network namespace {spec!r}: permission denied{hint}")
    except FileNotFoundError:
        raise BadInput(f"network namespace {spec!r} does not exist")
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            _setns(target)
        except OSError as e:
            if e.errno == errno.EPERM:
                hint = "run as root" if os.geteuid() else "this process lacks it, e.g. inside a container"
                raise NotPermitted(f"cannot enter network namespace {spec!r}: needs CAP_SYS_ADMIN ({hint})")
            if e.errno == errno.EINVAL:
                raise BadInput(f"{spec!r} is not a network namespace")
            raise
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def proc_net_path(name: str) -> str:
    """/proc/thread-self/net/NAME: the calling thread's namespace, even after setns."""
    base = "/proc/thread-self/net" if os.path.exists("/proc/thread-self/net") else "/proc/self/net"
    return f"{base}/{name}"
