"""Test helpers: processes in new unnamed network namespaces, placed in cgroups named as
Docker and the kubelet name them, some with bind-mount names. Everything is removed
by `World.close()` (processes killed, mounts undone, cgroups deleted).

The cgroups live under one private directory of the writable cgroup v2 mount; the
parser looks at every path component, so the private prefix does not hide anything.
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid

CGROUP_V2_MOUNTS = ("/sys/fs/cgroup/unified", "/sys/fs/cgroup")
LIFETIME_S = 900          # every helper exits by itself after this (close() kills it sooner); runs
                          # that read every tenant's namespaces can be slow on a shared machine

# listen on 0.0.0.0:PORT, open N connections to 127.0.0.1:PORT (lo is up), say "ready"
SERVE = r"""
import socket, sys, time
n, port = int(sys.argv[1]), int(sys.argv[2])
closed = int(sys.argv[4]) if len(sys.argv) > 4 else 0     # client-closed: TIME_WAIT on our side
client_only = len(sys.argv) > 5 and sys.argv[5] == "client"
dst = sys.argv[6] if len(sys.argv) > 6 else "127.0.0.1"
src = sys.argv[7] if len(sys.argv) > 7 and sys.argv[7] != "-" else None
keep = []
if not client_only:
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port)); srv.listen(128); keep.append(srv)
for i in range(n + closed):
    c = socket.create_connection((dst, port), source_address=(src, 0) if src else None)
    if not client_only:
        a = srv.accept()[0]
        if i >= n:
            c.close(); a.close(); continue
        keep.append(a)
    keep.append(c)
print("ready", flush=True)
churn = float(sys.argv[8]) if len(sys.argv) > 8 else 0.0       # new connections per second, closed at once
end = time.monotonic() + float(sys.argv[3])
while churn and time.monotonic() < end:
    c = socket.create_connection((dst, port), source_address=(src, 0) if src else None)
    if not client_only:
        a = srv.accept()[0]
    c.close()
    if not client_only:
        a.close()
    time.sleep(1.0 / churn)
time.sleep(max(0.0, end - time.monotonic()))
"""


def cgroup_v2_root() -> str | None:
    """A writable cgroup v2 mount, or None."""
    for m in CGROUP_V2_MOUNTS:
        if os.path.exists(os.path.join(m, "cgroup.procs")) and os.access(m, os.W_OK):
            try:
                with open("/proc/self/mountinfo") as f:
                    if any(f" {m} " in line and " - cgroup2 " in line for line in f):
                        return m
            except OSError:
                return None
    return None


def hex64() -> str:
    return secrets.token_hex(32)


def pod_uid() -> str:
    return str(uuid.uuid4())


class World:
    def __init__(self):
        self.root = cgroup_v2_root()
        self.top = os.path.join(self.root, f"psns-{uuid.uuid4().hex[:8]}") if self.root else None
        self.procs: list[subprocess.Popen] = []
        self.cgroups: list[str] = []
        self.ip_names: list[str] = []
        self.mounts: list[str] = []
        import tempfile
        fd, self.script = tempfile.mkstemp(prefix="pstest-serve-", suffix=".py")
        with os.fdopen(fd, "w") as f:
            f.write(SERVE)

    def cgroup(self, rel: str) -> str:
        path = os.path.join(self.top, rel.strip("/"))
        os.makedirs(path, exist_ok=True)
        # remember every level so close() removes them deepest first
        p = path
        while p != self.top and p not in self.cgroups:
            self.cgroups.append(p)
            p = os.path.dirname(p)
        if self.top not in self.cgroups:
            self.cgroups.append(self.top)
        return path

    def spawn(self, cgroup_rel: str | None = None, *, conns: int = 0, port: int = 0,
              lifetime: float = LIFETIME_S, closed: int = 0, dst: str = "127.0.0.1",
              src: str | None = None, addrs: tuple = (), churn: float = 0.0) -> int:
        """A process in a new network namespace (optionally in a cgroup): its pid. With a
        port it listens there and holds `conns` connections to dst:port (from src), after
        `closed` ones it closed first (TIME_WAIT); `addrs` are added to lo first."""
        setup = "".join(f"ip addr add {a} dev lo && " for a in addrs)
        inner = (f"ip link set lo up && {setup}exec {sys.executable} {self.script} {conns} {port} "
                 f"{lifetime} {closed} server {dst} {src or '-'} {churn}"
                 if port else f"exec sleep {int(lifetime)}")
        prefix = ""
        if cgroup_rel:
            cg = self.cgroup(cgroup_rel)
            prefix = f"echo $$ > {cg}/cgroup.procs && "
        cmd = f"{prefix}exec unshare --net sh -c \"{inner}\""
        p = subprocess.Popen(["sh", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        home = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if os.readlink(f"/proc/{p.pid}/ns/net") != home:
                    break
            except OSError:
                pass
            if p.poll() is not None:
                raise RuntimeError(f"helper exited: {p.stderr.read()}")
            time.sleep(0.01)
        else:
            raise RuntimeError("helper did not enter a new network namespace")
        if port:
            line = p.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"helper failed: {line!r} {p.stderr.read()}")
        return p.pid

    def join(self, pid: int, cgroup_rel: str | None, *, port: int, conns: int,
             lifetime: float = LIFETIME_S, dst: str = "127.0.0.1") -> int:
        """A second process in `pid`'s namespace (as a host-network pod shares the node's),
        in its own cgroup, holding `conns` connections to `port` there: its pid."""
        prefix = f"echo $$ > {self.cgroup(cgroup_rel)}/cgroup.procs && " if cgroup_rel else ""
        cmd = (f"{prefix}exec nsenter -t {pid} -n {sys.executable} {self.script} {conns} {port} "
               f"{lifetime} 0 client {dst}")
        p = subprocess.Popen(["sh", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        line = p.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"helper failed: {line!r} {p.stderr.read()}")
        return p.pid

    def attach(self, pid: int) -> str:
        """`ip netns attach NAME PID`: a /run/netns name for the process's namespace."""
        name = f"pstest-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "attach", name, str(pid)], check=True, capture_output=True)
        self.ip_names.append(name)
        return name

    def bind(self, pid: int, directory: str) -> str:
        """A bind mount of the namespace outside /run/netns (as Docker and CNI make them)."""
        path = os.path.join(directory, f"ns-{uuid.uuid4().hex[:8]}")
        open(path, "w").close()
        subprocess.run(["mount", "--bind", f"/proc/{pid}/ns/net", path], check=True, capture_output=True)
        self.mounts.append(path)
        return path

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
            for s in (p.stdout, p.stderr):
                s.close()
        for m in self.mounts:
            subprocess.run(["umount", m], capture_output=True)
            try:
                os.unlink(m)
            except OSError:
                pass
        for n in self.ip_names:
            subprocess.run(["ip", "netns", "delete", n], capture_output=True)
        try:
            os.unlink(self.script)
        except OSError:
            pass
        for cg in sorted(self.cgroups, key=len, reverse=True):
            for _ in range(50):               # a killed process leaves its cgroup shortly after
                try:
                    os.rmdir(cg)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def inode_of(pid: int) -> int:
    return int(os.readlink(f"/proc/{pid}/ns/net")[5:-1])


def lsns_net() -> set[int]:
    import json
    out = subprocess.run(["lsns", "-t", "net", "-J"], capture_output=True, text=True, check=True).stdout
    return {int(n["ns"]) for n in json.loads(out)["namespaces"]}


HAVE_TOOLS = all(shutil.which(t) for t in ("unshare", "ip", "lsns", "mount"))
