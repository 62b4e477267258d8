"""Enter another network namespace for the duration of a block.

`--netns NAME` names a namespace made by `ip netns add` (/run/netns/NAME);
`--netns pid:PID` is the namespace of a running process (a container).
setns() moves only the calling thread, so procfs readers must use
/proc/thread-self/net (see `proc_net_path`) and sysctls are opened inside the block.
"""
from __future__ import annotations

import errno
import os

from .errors import BadInput, NotPermitted, Unsupported
from .value import Frozen

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


class Namespace(Frozen):
    """One network namespace as the user named it: `NAME` (from `ip netns add`) or `pid:PID`.

    Everything that names the namespace again derives from this one value: the file to
    setns() into (`path`), the shell prefix a remedy runs through (`shell_prefix`), the
    `portscope --netns ...` arguments (`portscope_args`), and the name shown (`str()`).
    `parse` checks only the syntax; `path` checks that the namespace exists.
    """

    __slots__ = ("spec",)
    spec: str

    def __init__(self, spec: str) -> None:
        object.__setattr__(self, "spec", spec)

    @classmethod
    def parse(cls, spec: "str | Namespace") -> "Namespace":
        """Namespace from `NAME` or `pid:PID`; BadInput for an empty, blank or malformed spec."""
        if isinstance(spec, Namespace):
            return spec
        # an empty or blank spec is an error, never "this host": a script passing an empty
        # $NS must not change the host
        if not isinstance(spec, str) or not spec.strip():
            raise BadInput(f"--netns needs a name or pid:PID, got {spec!r} (leave --netns out for this host)")
        if spec != spec.strip():
            raise BadInput(f"bad --netns {spec!r}: leading or trailing blanks")
        if spec.startswith("pid:"):
            pid = spec[4:]
            if not _is_ascii_digits(pid) or int(pid) == 0:
                raise BadInput(f"bad --netns {spec!r}: expected pid:PID with a numeric PID")
        elif spec.partition(":")[0] in _FOUND_KINDS:
            from . import namespaces as found  # the /proc walk's module, only for these kinds
            found.check_spec(spec)
        elif "/" in spec or spec in (".", "..") or not spec.isprintable():
            raise BadInput(f"bad --netns name {spec!r}")
        return cls(spec)

    @property
    def pid(self) -> int | None:
        """The process whose namespace this is (`pid:PID`), else None."""
        return int(self.spec[4:]) if self.spec.startswith("pid:") else None

    @property
    def path(self) -> str:
        """The namespace file to open; BadInput if the namespace does not exist."""
        pid = self.pid
        if self.spec.partition(":")[0] in _FOUND_KINDS:
            from . import namespaces as found
            return found.resolve_spec(self.spec)
        if pid is not None:
            if not os.path.exists(f"/proc/{pid}"):
                raise BadInput(f"network namespace {self.spec!r} does not exist (no process {pid})")
            return f"/proc/{pid}/ns/net"
        for d in NETNS_RUN_DIRS:
            path = os.path.join(d, self.spec)
            if os.path.exists(path):
                return path
        raise BadInput(f"network namespace {self.spec!r} does not exist (see `ip netns list`)")

    def shell_prefix(self) -> tuple[str, ...]:
        """argv that runs a command inside this namespace (prepend it to the command)."""
        pid = self.pid
        if pid is not None:
            return ("nsenter", f"--net=/proc/{pid}/ns/net")
        if self.spec.partition(":")[0] in _FOUND_KINDS:      # unnamed: entered by its path
            return ("nsenter", f"--net={self.path}")
        return ("ip", "netns", "exec", self.spec)

    def portscope_args(self) -> tuple[str, ...]:
        """The global options that make `portscope` act on this namespace."""
        return ("--netns", self.spec)

    def __str__(self) -> str:
        return self.spec


# inode:N, container:ID, pod:UID: found by walking /proc (portscope.namespaces)
_FOUND_KINDS = ("inode", "container", "pod")


def _is_ascii_digits(s: str) -> bool:
    # str.isdigit() accepts other scripts' digits (e.g. Arabic-Indic), which int() would parse
    return bool(s) and s.isascii() and s.isdigit()


def parse(spec: "str | Namespace | None") -> Namespace | None:
    """Namespace for a --netns value; None means this process's own namespace."""
    return None if spec is None else Namespace.parse(spec)


def check_spec(spec: object) -> str:
    """NAME or pid:PID, well formed (existence is `Namespace.path`'s job); BadInput otherwise."""
    return Namespace.parse(spec).spec  # type: ignore[arg-type]  # parse refuses non-strings itself


def resolve(spec: "str | Namespace") -> str:
    """Path of the namespace file for NAME or pid:PID; BadInput if it does not exist."""
    return Namespace.parse(spec).path


class entered:      # lower case: it reads as the function it was, `with entered(spec):`
    """Run the block inside namespace `spec` (None: stay where we are), then come back.
    Only None means "here": an empty or blank spec is refused by Namespace.parse.

    A class, not a contextlib.contextmanager: contextlib (with collections and functools)
    would be the largest import of `portscope port N` and `range` from the console script."""

    def __init__(self, spec: "str | Namespace | None") -> None:
        self.spec = spec
        self._fds: tuple[int, int] | None = None

    def __enter__(self) -> None:
        if self.spec is None:
            return
        ns = Namespace.parse(self.spec)
        spec = ns.spec
        if not hasattr(os, "setns") and not os.path.exists("/proc/self/ns/net"):
            raise Unsupported("network namespaces are a Linux feature")
        path = ns.path
        try:
            target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except PermissionError:
            hint = " (run as root)" if os.geteuid() else " (even as root: a security module or container forbids it)"
            raise NotPermitted(f"cannot open network namespace {spec!r}: permission denied{hint}")
        except FileNotFoundError:
            raise BadInput(f"network namespace {spec!r} does not exist")
        try:
            home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except BaseException:
            os.close(target)
            raise
        try:
            _setns(target)
        except OSError as e:
            os.close(target)
            os.close(home)
            if e.errno == errno.EPERM:
                hint = "run as root" if os.geteuid() else "this process lacks it, e.g. inside a container"
                raise NotPermitted(f"cannot enter network namespace {spec!r}: needs CAP_SYS_ADMIN ({hint})")
            if e.errno == errno.EINVAL:
                raise BadInput(f"{spec!r} is not a network namespace")
            raise
        except BaseException:
            os.close(target)
            os.close(home)
            raise
        self._fds = (target, home)

    def __exit__(self, *exc: object) -> None:
        if self._fds is None:
            return
        target, home = self._fds
        self._fds = None
        try:
            _setns(home)
        finally:
            os.close(target)
            os.close(home)


def proc_net_path(name: str) -> str:
    """/proc/thread-self/net/NAME: the calling thread's namespace, even after setns."""
    base = "/proc/thread-self/net" if os.path.exists("/proc/thread-self/net") else "/proc/self/net"
    return f"{base}/{name}"
