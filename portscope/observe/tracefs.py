"""Tracepoint ids and context layouts from tracefs, without changing the host's mounts.

perf_event_open(PERF_TYPE_TRACEPOINT) wants the tracepoint's id, and the program needs the
offsets of its arguments in the context: both live only in tracefs
(events/syscalls/<name>/id and .../format). tracefs is not always mounted; mounting it on
the host would be a host change, so when neither /sys/kernel/tracing nor
/sys/kernel/debug/tracing has the events, a forked child enters a private mount namespace
(mount propagation made private first, so nothing leaks back), mounts tracefs there, reads
the files and exits: the host's mount table is never touched.
"""
from __future__ import annotations

import ctypes
import json
import os
import re
from dataclasses import dataclass

from ..errors import NotPermitted, Unsupported

ROOTS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
CLONE_NEWNS = 0x00020000
MS_REC, MS_PRIVATE = 0x4000, 0x40000
_FIELD = re.compile(r"field:(?P<decl>[^;]*);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);")


@dataclass(frozen=True)
class Tracepoint:
    """A tracepoint's perf id and the layout of its context."""
    name: str                   # "syscalls:sys_enter_connect"
    id: int
    fields: dict[str, tuple[int, int]]   # field name -> (offset, size)

    def field(self, name: str) -> int:
        """Offset of a field of the context; Unsupported when this kernel lacks it."""
        if name not in self.fields:
            raise Unsupported(f"tracepoint {self.name} has no field {name!r} on this kernel")
        return self.fields[name][0]


def parse_format(text: str) -> dict[str, tuple[int, int]]:
    """Field name -> (offset, size) from a tracepoint's `format` file."""
    out = {}
    for m in _FIELD.finditer(text):
        decl = m.group("decl").strip()
        name = re.sub(r"\[.*\]$", "", decl).split()[-1].lstrip("*")
        out[name] = (int(m.group("off")), int(m.group("size")))
    return out


def _read_from(root: str, names: list[str]) -> dict[str, tuple[int, str]]:
    out = {}
    for n in names:
        system, event = n.split(":")
        d = os.path.join(root, "events", system, event)
        with open(os.path.join(d, "id")) as f:
            tid = int(f.read())
        with open(os.path.join(d, "format")) as f:
            out[n] = (tid, f.read())
    return out


def _private_mount_read(names: list[str]) -> dict[str, tuple[int, str]]:
    """Mount tracefs in a throwaway mount namespace of a forked child and read from it."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # child: never returns into the caller's code
        code = 1
        try:
            os.close(r)
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_NEWNS) != 0:
                raise OSError(ctypes.get_errno(), None, "unshare(CLONE_NEWNS)")
            if libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
                raise OSError(ctypes.get_errno(), None, "making mounts private")
            if libc.mount(b"nodev", ROOTS[0].encode(), b"tracefs", 0, None) != 0:
                raise OSError(ctypes.get_errno(), None, "mounting tracefs")
            res: dict = {"ok": _read_from(ROOTS[0], names)}
            code = 0
        except OSError as e:
            res = {"errno": e.errno or 0, "error": f"{e.strerror or os.strerror(e.errno or 0)} ({e.filename})"}
        except BaseException as e:  # noqa: BLE001 - reported to the parent, never raised here
            res = {"errno": 0, "error": f"{type(e).__name__}: {e}"}
        try:
            os.write(w, json.dumps(res).encode())
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    with os.fdopen(r, "rb") as f:
        while chunk := f.read(65536):
            chunks.append(chunk)
    os.waitpid(pid, 0)
    res = json.loads(b"".join(chunks) or b'{"errno": 0, "error": "no answer"}')
    if "ok" in res:
        return {k: (v[0], v[1]) for k, v in res["ok"].items()}
    if res.get("errno") in (1, 13):
        hint = "run as root" if os.geteuid() else "needs CAP_SYS_ADMIN"
        raise NotPermitted(f"tracefs is not mounted and mounting it privately was refused: {res['error']} ({hint})")
    raise Unsupported(f"tracefs is not mounted and could not be read: {res['error']}")


def tracepoints(names: list[str]) -> dict[str, Tracepoint]:
    """Tracepoint id and fields for each 'system:event' name."""
    raw = None
    for root in ROOTS:
        if os.path.isdir(os.path.join(root, "events", "syscalls")):
            try:
                raw = _read_from(root, names)
                break
            except FileNotFoundError as e:
                raise Unsupported(f"this kernel has no tracepoint {e.filename}") from None
            except PermissionError:
                continue
    if raw is None:
        if not os.path.isdir(os.path.join(ROOTS[0])):
            raise Unsupported("this kernel has no tracefs (CONFIG_FTRACE)")
        raw = _private_mount_read(names)
    return {n: Tracepoint(n, tid, parse_format(fmt)) for n, (tid, fmt) in raw.items()}
