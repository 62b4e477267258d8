"""Every network namespace on the host, with its names, processes and container / pod.

A namespace lives as long as something holds it: a process (`/proc/PID/ns/net`), a
bind mount (`ip netns add` in /run/netns, Docker's /var/run/docker/netns, CNI's
`cni-...` names) or an open file descriptor. We walk /proc/*/ns/net and every nsfs
mount of our mount namespace (/proc/self/mountinfo, plus the usual directories in
case mountinfo is unreadable) and deduplicate by inode, as `lsns -t net` does.
Namespaces held only by a file descriptor or a socket are invisible to both.

Processes that exit mid-walk are skipped; those we may not read (another user's
process without root, `hidepid=1`) are counted; `hidepid=2`/`invisible` hides them
from the listing itself, which we detect and say.

`resolve_spec` turns `inode:N`, `container:PREFIX` and `pod:UID` into a path that
setns() can open (see portscope.netns.resolve).
"""
from __future__ import annotations

import errno
import os

from . import containers
from .errors import BadInput, Unsupported

# where runtimes keep bind-mounted namespaces (read when mountinfo is not)
BIND_DIRS = ("/run/netns", "/var/run/netns", "/run/docker/netns", "/var/run/docker/netns")
IP_NETNS_DIR = "/run/netns"          # `ip netns` names are the file names here
PIDS_SHOWN = 10                      # pids (and their commands) listed per namespace
IDENTITY_PIDS = 4                    # lowest pids whose cgroup names the namespace's container
_GONE = (errno.ENOENT, errno.ESRCH)

_paths: dict[int, str] = {}          # inode -> a path that held it at the last discovery


class _Record:
    """Fields in __slots__, equal by them, shown by them (a plain class, not a dataclass:
    `portscope namespaces` starts in less time than importing dataclasses takes)."""

    __slots__: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    __hash__ = None          # type: ignore[assignment]  # mutable, as a dataclass with eq

    def __repr__(self) -> str:
        return f"{type(self).__qualname__}({', '.join(f'{k}={getattr(self, k)!r}' for k in self.__slots__)})"


class NetNamespace(_Record):
    """One network namespace."""

    __slots__ = ("inode", "ip_names", "mounts", "pids", "commands", "container", "pod", "current")

    def __init__(self, inode: int, ip_names: list[str] | None = None, mounts: list[str] | None = None,
                 pids: list[int] | None = None, commands: dict[int, str] | None = None,
                 container: containers.Container | None = None, pod: containers.Pod | None = None,
                 current: bool = False) -> None:
        self.inode = inode
        self.ip_names: list[str] = [] if ip_names is None else ip_names     # `ip netns` names
        self.mounts: list[str] = [] if mounts is None else mounts           # every bind-mount path
        self.pids: list[int] = [] if pids is None else pids                 # every process in it, ascending
        self.commands: dict[int, str] = {} if commands is None else commands  # of the first PIDS_SHOWN pids
        self.container = container
        self.pod = pod
        self.current = current

    @property
    def names(self) -> list[str]:
        """`ip netns` names first, then bind mounts that have no such name."""
        named = {os.path.join(IP_NETNS_DIR, n) for n in self.ip_names}
        return self.ip_names + [m for m in self.mounts if _canon(m) not in named]

    @property
    def spec(self) -> str:
        """What --netns accepts for it: its `ip netns` name, else inode:N."""
        return self.ip_names[0] if self.ip_names else f"inode:{self.inode}"

    @property
    def path(self) -> str | None:
        """A path setns() can open: a bind mount, else the first process's ns link."""
        if self.mounts:
            return self.mounts[0]
        return f"/proc/{self.pids[0]}/ns/net" if self.pids else None

    def labels(self) -> dict:
        """netns / container / pod labels for rows, series and findings ("" = unknown)."""
        return {"netns": self.spec,
                "container": self.container.id[:12] if self.container else "",
                "pod": self.pod.uid if self.pod else ""}

    def to_json(self) -> dict:
        """One `namespaces --json` row."""
        shown = [p for p in self.pids[:PIDS_SHOWN] if p in self.commands]
        return {
            "inode": self.inode,
            "names": self.names,
            "mounts": list(self.mounts),
            "pids": shown,
            "process_count": len(self.pids),
            "commands": [self.commands[p] for p in shown],
            "container": self.container.to_json() if self.container else None,
            "pod": self.pod.to_json() if self.pod else None,
            "current": self.current,
        }


class Discovery(_Record):
    """One walk of the host: every namespace, and what could not be read."""

    __slots__ = ("namespaces", "unreadable", "vanished", "hidepid", "warnings")

    def __init__(self, namespaces: list[NetNamespace], unreadable: int = 0, vanished: int = 0,
                 hidepid: str | None = None, warnings: list[str] | None = None) -> None:
        self.namespaces = namespaces
        self.unreadable = unreadable      # processes whose namespace we may not read
        self.vanished = vanished          # processes that exited during the walk
        self.hidepid = hidepid            # /proc's hidepid option when it hides processes
        self.warnings: list[str] = [] if warnings is None else warnings

    def by_inode(self, inode: int) -> NetNamespace | None:
        """The namespace with this inode, or None."""
        for ns in self.namespaces:
            if ns.inode == inode:
                return ns
        return None

    def to_json(self) -> dict:
        """The `namespaces --json` document."""
        return {"namespaces": [n.to_json() for n in self.namespaces],
                "unreadable_processes": self.unreadable, "vanished_processes": self.vanished,
                "hidepid": self.hidepid, "warnings": list(self.warnings)}


def _canon(path: str) -> str:
    d, b = os.path.split(path)
    return os.path.join(os.path.realpath(d), b)


def _ino_of_link(link: str) -> int | None:
    # "net:[4026531840]"
    if link.startswith("net:[") and link.endswith("]"):
        try:
            return int(link[5:-1])
        except ValueError:
            return None
    return None


def _unescape(s: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    if "\\" not in s:
        return s
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 3 < len(s) and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def nsfs_mounts(mountinfo: str = "/proc/self/mountinfo") -> list[tuple[int, str]]:
    """(inode, mount point) of every network-namespace bind mount we can see."""
    out: list[tuple[int, str]] = []
    try:
        with open(mountinfo) as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        fields = line.split(" ")
        if len(fields) < 5 or " - nsfs " not in line:
            continue
        ino = _ino_of_link(fields[3])
        if ino is not None:
            out.append((ino, _unescape(fields[4])))
    return out


def _dir_mounts(dirs=BIND_DIRS) -> list[tuple[int, str]]:
    """Bind mounts found by listing the usual directories (st_dev tells an nsfs mount
    from the empty placeholder file a failed `ip netns add` leaves)."""
    try:
        nsfs_dev = os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return []
    out, seen = [], set()
    for d in dirs:
        real = os.path.realpath(d)
        if real in seen:
            continue
        seen.add(real)
        try:
            names = os.listdir(real)
        except OSError:
            continue
        for n in names:
            p = os.path.join(d, n)
            try:
                st = os.stat(p)
            except OSError:
                continue
            if st.st_dev == nsfs_dev:
                out.append((st.st_ino, p))
    return out


def _hidepid(mountinfo: str = "/proc/self/mountinfo") -> str | None:
    try:
        with open(mountinfo) as f:
            for line in f:
                fields = line.split(" ")
                if len(fields) > 4 and fields[4] == "/proc" and " - proc " in line:
                    opts = line.rsplit(" ", 1)[-1].strip().split(",")
                    for o in opts:
                        if o.startswith("hidepid=") and o.split("=", 1)[1] not in ("0", "off"):
                            return o.split("=", 1)[1]
    except OSError:
        pass
    return None


def _read(path: str) -> str | None:
    # os.open/os.read: a text-mode open() costs twice as much, and we read thousands
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, 65536).decode("utf-8", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def current_inode() -> int | None:
    """Inode of the calling thread's network namespace."""
    for p in ("/proc/thread-self/ns/net", "/proc/self/ns/net"):
        try:
            return _ino_of_link(os.readlink(p))
        except OSError:
            continue
    return None


def discover(proc: str = "/proc", *, identity: bool = True) -> Discovery:
    """Walk /proc and the nsfs mounts once; one NetNamespace per inode, sorted by inode."""
    by_ino: dict[int, NetNamespace] = {}
    unreadable = vanished = 0
    try:
        entries = os.listdir(proc)
    except OSError as e:
        raise Unsupported(f"cannot list {proc}: {e.strerror}")
    for name in entries:
        if not name.isdigit():
            continue
        try:
            link = os.readlink(f"{proc}/{name}/ns/net")
        except OSError as e:
            if e.errno in _GONE:
                vanished += 1
            else:
                unreadable += 1          # EACCES / EPERM: hidepid=1, another user without root
            continue
        ino = _ino_of_link(link)
        if ino is None:
            continue
        ns = by_ino.get(ino)
        if ns is None:
            ns = by_ino[ino] = NetNamespace(ino)
        ns.pids.append(int(name))
    mounts = nsfs_mounts() or _dir_mounts()
    ipdir = os.path.realpath(IP_NETNS_DIR)
    for ino, path in mounts:
        ns = by_ino.get(ino)
        if ns is None:
            ns = by_ino[ino] = NetNamespace(ino)
        if path in ns.mounts:
            continue
        ns.mounts.append(path)
        d, b = os.path.split(path)
        if os.path.realpath(d) == ipdir and b not in ns.ip_names:
            ns.ip_names.append(b)
    cur = current_inode()
    out = sorted(by_ino.values(), key=lambda n: n.inode)
    for ns in out:
        ns.pids.sort()
        ns.current = ns.inode == cur
        for pid in ns.pids[:PIDS_SHOWN]:
            comm = _read(f"{proc}/{pid}/comm")
            if comm is not None:
                ns.commands[pid] = comm.rstrip("\n")
        if identity:
            _identify(ns, proc)
        if ns.path:
            _paths[ns.inode] = ns.path
    hp = _hidepid()
    warnings = []
    if hp and os.geteuid() != 0:
        warnings.append(f"/proc is mounted with hidepid={hp}: other users' processes and their "
                        f"namespaces are hidden (run as root or in the proc mount's gid= group)")
    if unreadable:
        warnings.append(f"{unreadable} process(es) could not be read (permission denied): "
                        f"namespaces held only by them are missing")
    return Discovery(out, unreadable, vanished, hp, warnings)


def _identify(ns: NetNamespace, proc: str) -> None:
    """Container and pod from the cgroups of the lowest pids (a pod's sandbox first)."""
    for pid in ns.pids[:IDENTITY_PIDS]:
        text = _read(f"{proc}/{pid}/cgroup")
        if text is None:
            continue                       # exited meanwhile
        ident = containers.parse(text)
        ns.container = ns.container or ident.container
        ns.pod = ns.pod or ident.pod
        if ns.container and ns.pod:
            return


# ---- --netns inode:N | container:PREFIX | pod:UID ----

SPEC_KINDS = ("inode", "container", "pod")


def _short(ids, n: int = 8) -> str:
    ids = sorted(ids)
    more = f" and {len(ids) - n} more" if len(ids) > n else ""
    return ", ".join(ids[:n]) + more if ids else "none"


def _check_inode_path(path: str, inode: int) -> bool:
    try:
        return os.stat(path).st_ino == inode
    except OSError:
        return False


def check_spec(spec: str) -> None:
    """Syntax of inode:N, container:ID, pod:UID (BadInput, exit 2); nothing is read."""
    kind, _, value = spec.partition(":")
    value = value.strip()
    if kind == "inode" and not (value.isascii() and value.isdigit()):
        raise BadInput(f"bad --netns {spec!r}: expected inode:N with a numeric inode (see `portscope namespaces`)")
    if kind in ("container", "pod") and not value:
        raise BadInput(f"bad --netns {spec!r}: {kind}: needs a{'n id prefix' if kind == 'container' else ' UID'}")


def resolve_spec(spec: str, proc: str = "/proc") -> str:
    """Path of the namespace named by inode:N, container:PREFIX or pod:UID. BadInput
    (exit 2) naming what matched when nothing or more than one namespace does."""
    kind, _, value = spec.partition(":")
    value = value.strip()
    if kind == "inode":
        if not value.isdigit():
            raise BadInput(f"bad --netns {spec!r}: expected inode:N with a numeric inode (see `portscope namespaces`)")
        ino = int(value)
        cached = _paths.get(ino)
        if cached and _check_inode_path(cached, ino):
            return cached
        ns = discover(proc, identity=False).by_inode(ino)
        if ns is None or ns.path is None:
            raise BadInput(f"no network namespace has inode {ino} (see `portscope namespaces`)")
        return ns.path
    if kind not in ("container", "pod"):
        raise BadInput(f"bad --netns {spec!r}: expected NAME, pid:PID, inode:N, container:ID or pod:UID")
    if not value:
        raise BadInput(f"bad --netns {spec!r}: {kind}: needs a{'n id prefix' if kind == 'container' else ' UID'}")
    want = value.lower()
    if kind == "pod":
        want = want.replace("_", "-")
    matches: dict[str, dict[int, int]] = {}     # id -> {inode: a pid}
    known: set[str] = set()
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        text = _read(f"{proc}/{name}/cgroup")
        if text is None:
            continue
        ident = containers.parse(text)
        if kind == "container":
            if ident.container is None:
                continue
            key = ident.container.id
        else:
            if ident.pod is None:
                continue
            key = ident.pod.uid
        known.add(key[:12] if kind == "container" else key)
        if (key.startswith(want) if kind == "container" else key == want):
            try:
                found = _ino_of_link(os.readlink(f"{proc}/{name}/ns/net"))
            except OSError:
                continue
            if found is not None:
                matches.setdefault(key, {}).setdefault(found, int(name))
    what = "container id prefix" if kind == "container" else "pod UID"
    if not matches:
        raise BadInput(f"no running {kind} matches {what} {value!r} (known: {_short(known)})")
    if len(matches) > 1:
        raise BadInput(f"{what} {value!r} is ambiguous: matches {_short(k[:12] for k in matches)}")
    (key, inodes), = matches.items()
    if len(inodes) > 1:
        raise BadInput(f"{kind} {key[:12]} has processes in {len(inodes)} network namespaces: "
                       f"{_short(f'inode:{i}' for i in inodes)}; pick one with inode:N")
    (ino, pid), = inodes.items()
    return f"{proc}/{pid}/ns/net"


discover_namespaces = discover      # the flat API's name (portscope.discover_namespaces)
