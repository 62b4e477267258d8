"""Container and Kubernetes pod identity from a process's cgroup path.

Runtimes name the cgroup of a container after its id, and the kubelet names a pod's
cgroup after the pod's UID and QoS class, so `/proc/PID/cgroup` says which container
and pod a process belongs to without asking any runtime's API:

* Docker: `docker-<64 hex>.scope` (systemd driver) or `/docker/<64 hex>` (cgroupfs);
* containerd (CRI): `cri-containerd-<id>.scope`, or containerd 1.4's
  `kubepods-...-pod<uid>.slice:cri-containerd:<id>`; CRI-O: `crio-<id>.scope`
  (`crio-conmon-<id>.scope` is CRI-O's monitor process, not the container);
  podman: `libpod-<id>.scope`;
* Kubernetes pods: `kubepods[-burstable|-besteffort]-pod<uid>.slice` (systemd driver,
  dashes of the UID written as `_`) or `/kubepods[/burstable|/besteffort]/pod<uid>/<id>`
  (cgroupfs driver: the runtime is not in the path, reported as "cri"). No QoS level
  in the path means Guaranteed.

cgroup v1 lines are `N:controllers:/path`, the v2 line is `0::/path`; on hybrid hosts
the v2 line may say `/` while v1 hierarchies carry the container, so every line is read.
Parsing is held to recorded real files in tests/samples/cgroup/.

`portscope namespaces` reads this on start-up, so neither dataclasses nor re load with it
(together about as much CPU as the interpreter's own start): the value types below are
plain frozen classes, and the patterns are compiled on the first cgroup that names a runtime.
"""
from __future__ import annotations

from .value import Frozen

_HEX64 = r"[0-9a-f]{64}"
QOS_CLASSES = ("guaranteed", "burstable", "besteffort")
# every form the patterns know names one of these: a host process's file is skipped with a
# substring test
_MARKERS = ("docker", "containerd", "crio", "libpod", "nerdctl", "kubepods")
_RX: dict = {}        # the compiled patterns, made on first use (_patterns)


def _patterns() -> dict:
    if not _RX:
        import re
        _RX.update(
            # (pattern on one path component, runtime); the id is group 1
            scopes=(
                (re.compile(rf"^docker-({_HEX64})\.scope$"), "docker"),
                (re.compile(rf"^cri-containerd-({_HEX64})\.scope$"), "containerd"),
                (re.compile(rf"^crio-({_HEX64})(?:\.scope)?$"), "cri-o"),
                (re.compile(rf"^libpod-({_HEX64})(?:\.scope)?$"), "podman"),
                (re.compile(rf"^nerdctl-({_HEX64})\.scope$"), "containerd"),
                (re.compile(rf":cri-containerd:({_HEX64})$"), "containerd"),
                (re.compile(rf":crio:({_HEX64})$"), "cri-o"),
                (re.compile(rf":docker:({_HEX64})$"), "docker"),
            ),
            bare_id=re.compile(rf"^({_HEX64})$"),
            pod_systemd=re.compile(r"kubepods(?:-(burstable|besteffort|guaranteed))?-pod([0-9a-fA-F_]+)\.slice"),
            pod_cgroupfs=re.compile(r"^pod([0-9a-fA-F-]+)$"),
        )
    return _RX


class Container(Frozen):
    """A container as its cgroup names it."""

    __slots__ = ("runtime", "id")
    runtime: str          # docker | containerd | cri-o | podman | cri (cgroupfs driver: not said)
    id: str

    def __init__(self, runtime: str, id: str) -> None:
        self._init(runtime=runtime, id=id)

    def to_json(self) -> dict:
        """{"runtime", "id"} as `namespaces --json` prints it."""
        return {"runtime": self.runtime, "id": self.id}


class Pod(Frozen):
    """A Kubernetes pod as the kubelet's cgroup names it."""

    __slots__ = ("uid", "qos")
    uid: str
    qos: str              # guaranteed | burstable | besteffort

    def __init__(self, uid: str, qos: str) -> None:
        self._init(uid=uid, qos=qos)

    def to_json(self) -> dict:
        """{"uid", "qos"} as `namespaces --json` prints it."""
        return {"uid": self.uid, "qos": self.qos}


class Identity(Frozen):
    """What one cgroup path (or /proc/PID/cgroup file) says: container and pod, each or None."""

    __slots__ = ("container", "pod")
    container: Container | None
    pod: Pod | None

    def __init__(self, container: Container | None = None, pod: Pod | None = None) -> None:
        self._init(container=container, pod=pod)

    def __bool__(self) -> bool:
        return bool(self.container or self.pod)


NONE = Identity()


def _uid(raw: str) -> str:
    """The pod UID as the API shows it: the systemd driver wrote its dashes as `_`."""
    return raw.replace("_", "-").lower()


def from_path(path: str) -> Identity:
    """Container and pod named by one cgroup path ("/" and host slices: neither)."""
    rx = _patterns()
    parts = [p for p in path.split("/") if p]
    container = pod = None
    in_kubepods = False
    qos = "guaranteed"
    for i, part in enumerate(parts):
        m = rx["pod_systemd"].search(part)
        if m:
            pod = Pod(_uid(m.group(2)), m.group(1) or "guaranteed")
        if part == "kubepods" or part.startswith("kubepods."):
            in_kubepods = True
            continue
        if in_kubepods and part in ("burstable", "besteffort"):
            qos = part
            continue
        if in_kubepods and pod is None:
            m = rx["pod_cgroupfs"].match(part)
            if m:
                pod = Pod(_uid(m.group(1)), qos)
                continue
        for pattern, runtime in rx["scopes"]:
            m = pattern.search(part)
            if m:
                container = Container(runtime, m.group(1))
                break
        else:
            m = rx["bare_id"].match(part)
            if m:
                # cgroupfs driver: /docker/<id>, /kubepods/<qos>/pod<uid>/<id>; nested
                # (docker-in-docker) paths name the innermost container last
                prev = parts[i - 1] if i else ""
                runtime = "docker" if prev == "docker" else "cri" if pod is not None else "docker"
                container = Container(runtime, m.group(1))
    return Identity(container, pod)


def parse(text: str) -> Identity:
    """Identity from the contents of /proc/PID/cgroup (v1, v2 or hybrid). The v2 line
    is preferred; any v1 hierarchy fills what it lacks."""
    if not any(m in text for m in _MARKERS):
        return NONE
    v2: list[str] = []
    v1: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        hier, sep, rest = line.partition(":")
        ctrl, sep2, path = rest.partition(":")
        if not (sep and sep2):
            continue
        (v2 if hier == "0" and not ctrl else v1).append(path)
    container = pod = None
    for path in dict.fromkeys(v2 + v1):       # v1 repeats one path per hierarchy
        ident = from_path(path)
        container = container or ident.container
        pod = pod or ident.pod
        if container and pod:
            break
    return Identity(container, pod)


def of_pid(pid: int, proc: str = "/proc") -> Identity:
    """Identity of a running process; OSError if it vanished or is unreadable."""
    with open(f"{proc}/{pid}/cgroup") as f:
        return parse(f.read())
