"""A private network namespace full of sockets, for benchmarks and load tests.

    from benchmarks.harness import socket_namespace
    with socket_namespace(100_000) as ns:        # root only
        ns.run("ss", "-tan")                       # runs inside the namespace
        ns.top_up_time_wait()                      # TIME_WAIT lasts 60 s; refill between rounds

What it holds (counts are sockets as `ss -tuan` lists them):
  established  loopback pairs (client + accepted server socket), plus one listener
               per helper process
  time_wait    client-closed connections (the client side stays in TIME_WAIT for 60 s)
  udp          half connected, half unconnected (bound to an automatic port)

Every helper binds its listener and says BOUND; only when all have, they are told GO and
connect. The listener ports (19999 and down, 20000+k) lie inside the namespace's port range, so a
connect() from one helper could otherwise take a port another was about to bind
(EADDRINUSE, seen once).

One process may hold at most 20,000 open files here, so the sockets are spread
over several helper processes (`per_process` descriptors each). Everything is
bounded: helpers exit by themselves after `lifetime` seconds (SIGALRM), setup
gives up after `setup_timeout`, and the context manager always kills the helpers
it started and deletes the namespace, even when the block raises.
Only loopback traffic, only inside the namespace; the host's settings are untouched.
"""
from __future__ import annotations

import os
import select
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field

PY = sys.executable
TW_PER_DEST = 30_000      # TIME_WAIT sockets per destination: well inside the 64,512-port range

# One helper process: makes its sockets, prints "READY <n>", then holds them until
# stdin closes or its alarm fires. Kinds: est (pairs), tw (TIME_WAIT), udp.
_HELPER = r"""
import os, resource, signal, socket, sys
kind, count, port, lifetime = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
signal.alarm(lifetime)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
keep = []
def wait_go():
    # every helper's listener is bound before any helper connects: an outgoing
    # connection may otherwise take a port another helper is about to listen on
    print("BOUND", flush=True)
    if sys.stdin.readline().strip() != "GO":
        sys.exit("no GO")
def tcp_pairs(n, close_client):
    l = socket.socket()
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("127.0.0.1", port)); l.listen(4096)
    keep.append(l)
    wait_go()
    done = 0
    while done < n:
        batch = min(256, n - done)
        cs = [socket.create_connection(("127.0.0.1", port)) for _ in range(batch)]
        for c in cs:
            a, _ = l.accept()
            if close_client:
                c.close(); a.close()
            else:
                keep.append(c); keep.append(a)
        done += batch
    return l
def loop_tw(n):
    # refill on request: each line on stdin "N" makes N more TIME_WAIT sockets
    l = tcp_pairs(n, True)
    print("READY", n, flush=True)
    for line in sys.stdin:
        k = int(line.strip() or 0)
        done = 0
        while done < k:
            batch = min(256, k - done)
            cs = [socket.create_connection(("127.0.0.1", port)) for _ in range(batch)]
            for c in cs:
                a, _ = l.accept(); c.close(); a.close()
            done += batch
        print("DONE", k, flush=True)
if kind == "est":
    tcp_pairs(count // 2, False)
elif kind == "tw":
    loop_tw(count)
    sys.exit(0)
elif kind == "udp":
    wait_go()
    for i in range(count):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if i % 2:
            u.connect(("127.0.0.1", port + i % 1000))
        else:
            u.bind(("127.0.0.1", 0))
        keep.append(u)
print("READY", len(keep), flush=True)
sys.stdin.read()
"""


@dataclass(frozen=True)
class Mix:
    established: int     # sockets (pairs count twice)
    time_wait: int
    udp: int

    @property
    def total(self) -> int:
        return self.established + self.time_wait + self.udp

    @classmethod
    def of(cls, total: int) -> "Mix":
        """80 % established, 15 % TIME_WAIT, 5 % UDP (a busy proxy's shape)."""
        est = int(total * 0.80) // 2 * 2
        tw = int(total * 0.15)
        return cls(est, tw, max(0, total - est - tw))


@dataclass
class SocketNamespace:
    name: str
    mix: Mix
    helpers: list = field(default_factory=list)     # Popen objects we started
    tw_helpers: list = field(default_factory=list)  # the TIME_WAIT makers, one destination each
    listeners: int = 0

    @property
    def tw_helper(self) -> subprocess.Popen | None:
        """The first TIME_WAIT maker (None without TIME_WAIT)."""
        return self.tw_helpers[0] if self.tw_helpers else None

    def cmd(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self.cmd(*argv), timeout=timeout, **kw)

    def popen(self, *argv: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(self.cmd(*argv), **kw)

    def count_time_wait(self) -> int:
        from portscope.sockets import snapshot
        return len(snapshot(("tcp",), families=(4,), states=["TIME_WAIT"], netns=self.name,
                            classify=False))

    def top_up_time_wait(self, timeout: float = 60) -> int:
        """Recreate the TIME_WAIT sockets that expired (they live 60 s); returns how many."""
        if not self.tw_helpers:
            return 0
        missing = self.mix.time_wait - self.count_time_wait()
        if missing <= 0:
            return 0
        k = len(self.tw_helpers)
        shares = [missing // k + (i < missing % k) for i in range(k)]
        for h, n in zip(self.tw_helpers, shares):
            h.stdin.write(f"{n}\n")
            h.stdin.flush()
        for h in self.tw_helpers:
            _expect(h, "DONE", timeout)
        return missing


def _expect(p: subprocess.Popen, word: str, timeout: float) -> str:
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"helper {p.pid} did not say {word} within {timeout:.0f} s")
        r, _, _ = select.select([p.stdout], [], [], left)
        if r:
            line = p.stdout.readline()
            if not line:
                err = p.stderr.read() if p.stderr else ""
                raise RuntimeError(f"helper {p.pid} exited early: {err.strip()[-500:]}")
            if line.startswith(word):
                return line


def _kill(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.kill()
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    for s in (p.stdin, p.stdout, p.stderr):
        if s:
            try:
                s.close()
            except OSError:
                pass


def _delete_namespace(name: str) -> None:
    # anything still inside (our helpers' children, if any) dies first
    out = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout
    for pid in out.split():
        try:
            os.kill(int(pid), 9)
        except (ProcessLookupError, ValueError):
            pass
    subprocess.run(["ip", "netns", "delete", name], capture_output=True)


@contextmanager
def socket_namespace(total: int = 100_000, *, mix: Mix | None = None, per_process: int = 18_000,
                     prefix: str = "psbench", lifetime: int = 900, setup_timeout: float = 300,
                     parent: str | None = None):
    """A fresh namespace holding about `total` sockets; always removed afterwards.

    `parent`: an `ip netns` name to create the namespace from, so it takes that namespace's
    net.ipv4.tcp_child_ehash_entries (its own established hash when not 0)."""
    if os.geteuid() != 0:
        raise PermissionError("the socket harness needs root (ip netns add)")
    mix = mix or Mix.of(total)
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    add = ["ip", "netns", "add", name]
    if parent:
        # the kernel sizes a new namespace's hash from the creator's network namespace; only
        # that one is entered (not `ip netns exec`, whose private mount namespace would keep
        # the /run/netns bind mount from us)
        add = ["nsenter", f"--net=/run/netns/{parent}", *add]
    subprocess.run(add, check=True, capture_output=True)
    ns = SocketNamespace(name, mix)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True)
        if parent:
            # a private hash of N buckets also sets TIME_WAIT's cap to N/2 and the SYN backlog
            # to max(128, N/128) (ip-sysctl.rst): keep ours, or the namespace would not hold the mix
            for key in ("tcp_max_tw_buckets", "tcp_max_syn_backlog"):
                with open(f"/proc/sys/net/ipv4/{key}") as f:
                    ns.run("sysctl", "-qw", f"net.ipv4.{key}={f.read().strip()}", check=True)
        # a wide range so one (src, dst, dport) can hold many connections; this
        # namespace's own sysctl, not the host's
        ns.run("sh", "-c", "echo '1024 65535' > /proc/sys/net/ipv4/ip_local_port_range", check=True)
        port = 20000
        starts = []
        left = mix.established
        while left > 0:
            n = min(per_process - 16, left) // 2 * 2 or 2
            starts.append(("est", n, port))
            port += 1
            left -= n
        if mix.udp:
            left = mix.udp
            while left > 0:
                n = min(per_process - 16, left)
                starts.append(("udp", n, 30000 + len(starts)))
                left -= n
        for kind, n, p in starts:
            h = ns.popen(PY, "-c", _HELPER, kind, str(n), str(p), str(lifetime),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            ns.helpers.append(h)
            if kind == "est":
                ns.listeners += 1
        if mix.time_wait:
            # TIME_WAIT holds no descriptor, but each one holds its port toward its
            # destination for 60 s, and one destination has only the range's ports: so one
            # helper (and listener: 19999, 19998, ...) per TW_PER_DEST of them
            k = -(-mix.time_wait // TW_PER_DEST)
            for i in range(k):
                n = mix.time_wait // k + (i < mix.time_wait % k)
                h = ns.popen(PY, "-c", _HELPER, "tw", str(n), str(19999 - i), str(lifetime),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                ns.helpers.append(h)
                ns.tw_helpers.append(h)
                ns.listeners += 1
        for h in ns.helpers:
            _expect(h, "BOUND", setup_timeout)
        for h in ns.helpers:
            h.stdin.write("GO\n")
            h.stdin.flush()
        for h in ns.helpers:
            _expect(h, "READY", setup_timeout)
        yield ns
    finally:
        for h in ns.helpers:
            _kill(h)
        _delete_namespace(name)


def main(argv=None) -> int:
    """`python -m benchmarks.harness N`: build, print ss -s inside, remove."""
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("total", type=int, nargs="?", default=10_000)
    a = ap.parse_args(argv)
    t = time.monotonic()
    with socket_namespace(a.total) as ns:
        print(f"namespace {ns.name}: {ns.mix} built in {time.monotonic() - t:.1f} s")
        print(ns.run("ss", "-s").stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
