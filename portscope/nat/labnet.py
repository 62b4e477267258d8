"""A private SNAT topology: client namespace -> router namespace (MASQUERADE to a
small --to-ports range) -> server namespace, on veth pairs, with documentation
addresses only (198.51.100.0/24 client side, 203.0.113.0/24 server side).

Used by the NAT tests and the benchmark; everything is made in namespaces this
module creates, and `remove()` deletes them (their veths go with them). Every
traffic loop is bounded in count and time.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from typing import Callable

from ..errors import SystemReadError
from ..simulate.alloc_nat import NatSnat
from ..simulate.workload import make_space
from . import analyze

CLIENT_IP, ROUTER_IN = "198.51.100.2", "198.51.100.1"
ROUTER_OUT, SERVER_IP = "203.0.113.1", "203.0.113.2"
SERVER_PORT = 5001


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


@dataclass
class SnatLab:
    """Three namespaces (client `c`, router `r`, server `s`) and how to run things in them.

    With `names` given, the namespaces already exist (made and removed by the caller,
    e.g. portscope.lab.lab_namespace, which `lab clean` knows about)."""
    prefix: str = "psnat"
    names: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.owned = not self.names
        if self.owned:
            tag = uuid.uuid4().hex[:6]
            self.names = {k: f"{self.prefix}-{tag}-{k}" for k in ("c", "r", "s")}

    @property
    def client(self) -> str:
        """The client namespace (198.51.100.2)."""
        return self.names["c"]

    @property
    def router(self) -> str:
        """The router namespace, where the MASQUERADE rule and the conntrack entries live."""
        return self.names["r"]

    @property
    def server(self) -> str:
        """The server namespace (203.0.113.2)."""
        return self.names["s"]

    def run(self, ns: str, *cmd: str, check: bool = True, timeout: float = 60,
            **kw: object) -> subprocess.CompletedProcess:
        """Run a command inside namespace `ns` (ip netns exec), output captured as text."""
        return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True,
                              check=check, timeout=timeout, **kw)  # type: ignore[call-overload]

    def build(self, to_ports: tuple[int, int] | None, protos: tuple[str, ...] = ("tcp", "udp"),
              random_fully: bool = False) -> None:
        """Namespaces, veths, addresses, routes and the router's MASQUERADE rule(s)."""
        c, r, s = self.client, self.router, self.server
        for ns in (c, r, s) if self.owned else ():
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", c, "link", "add", "eth0", "type", "veth", "peer", "name", "in0", "netns", r)
        _ip("-n", r, "link", "add", "out0", "type", "veth", "peer", "name", "eth0", "netns", s)
        _ip("-n", c, "addr", "add", f"{CLIENT_IP}/24", "dev", "eth0")
        _ip("-n", r, "addr", "add", f"{ROUTER_IN}/24", "dev", "in0")
        _ip("-n", r, "addr", "add", f"{ROUTER_OUT}/24", "dev", "out0")
        _ip("-n", s, "addr", "add", f"{SERVER_IP}/24", "dev", "eth0")
        for ns, dev in ((c, "eth0"), (r, "in0"), (r, "out0"), (s, "eth0")):
            _ip("-n", ns, "link", "set", dev, "up")
        _ip("-n", c, "route", "add", "default", "via", ROUTER_IN)
        self.run(r, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
        for proto in protos:
            rule = ["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "out0", "-p", proto, "-j", "MASQUERADE"]
            if to_ports:
                rule += ["--to-ports", f"{to_ports[0]}-{to_ports[1]}"]
            if random_fully:
                rule.append("--random-fully")
            self.run(r, *rule)

    def remove(self) -> None:
        """Kill what runs in the namespaces this lab made and delete them."""
        if not self.owned:
            return
        for ns in self.names.values():
            pids = _ip("netns", "pids", ns, check=False).stdout.split()
            for p in pids:
                try:
                    os.kill(int(p), 9)
                except (ProcessLookupError, ValueError):
                    pass
            _ip("netns", "delete", ns, check=False)

    def __enter__(self) -> "SnatLab":
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def popen(self, ns: str, code: str, *args: str) -> subprocess.Popen:
        """Python `code` running inside `ns`, with pipes for stdin/stdout/stderr."""
        return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", code, *args],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# The server: accepts TCP and counts UDP sources on SERVER_PORT; prints counts on request.
SERVER = r"""
import select, socket, sys
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", int(sys.argv[1]))); t.listen(4096); t.setblocking(False)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", int(sys.argv[1])))
# a burst of hundreds of datagrams overflows the default receive buffer (~270 small ones)
# when this loop is slow: a drop here would look like a NAT failure
try:
    u.setsockopt(socket.SOL_SOCKET, 33, 1 << 22)          # SO_RCVBUFFORCE (not in the socket module)
except OSError:
    u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
kept, udp_src = [], set()
print("ready", flush=True)
while True:
    r, _, _ = select.select([t, u, sys.stdin], [], [], 5)
    for x in r:
        if x is t:
            try:
                kept.append(t.accept()[0])
            except BlockingIOError:
                pass
        elif x is u:
            addr = u.recvfrom(64)[1]
            udp_src.add(addr)
            u.sendto(b"y", addr)          # the reply tells the client which datagrams got through
        else:
            line = sys.stdin.readline()
            if not line:
                sys.exit(0)
            print(len(kept), len(udp_src), flush=True)
"""

# The client: opens `count` connections (tcp) or sends one datagram from `count`
# sockets (udp) to the server, waits at most `wait` seconds (udp: until no answer came
# for `wait` seconds), closes the TCP attempts
# still pending (so no SYN retransmit changes the counters afterwards), prints how
# many connected (udp: how many were answered, and the 1-based index of the first
# unanswered one, 0 for none), and keeps the rest open until stdin closes.
CLIENT = r"""
import errno, select, socket, sys, time
proto, dst, port, count, wait = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
socks = []
if proto == "tcp":
    for _ in range(count):
        s = socket.socket(); s.setblocking(False)
        s.connect_ex((dst, port)); socks.append(s)
    pending = set(socks); ok = []
    end = time.monotonic() + wait
    while pending and time.monotonic() < end:
        _, w, _ = select.select([], list(pending), [], max(0.0, end - time.monotonic()))
        for s in w:
            pending.discard(s)
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                ok.append(s)
    for s in pending:
        s.close()
    print(len(ok), flush=True)
else:
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b"x", (dst, port)); socks.append(s)
    # wait until answers stop coming for `wait` seconds (a loaded server answers late, not
    # never), at most ten times that in all
    answered = [False] * count
    index = {s.fileno(): i for i, s in enumerate(socks)}
    poll = select.poll()
    for s in socks:
        poll.register(s, select.POLLIN)
    start = last = time.monotonic()
    while not all(answered):
        now = time.monotonic()
        left = min(last + wait, start + 10 * wait) - now
        if left <= 0:
            break
        for fd, _ in poll.poll(left * 1000):
            socks[index[fd]].recv(8)
            answered[index[fd]] = True
            poll.unregister(fd)
            last = time.monotonic()
    first = answered.index(False) + 1 if False in answered else 0
    print(sum(answered), first, flush=True)
sys.stdin.read()
"""


def _line(p: subprocess.Popen) -> str:
    """One line of a lab process's stdout ('' once it has ended)."""
    assert p.stdout is not None
    return p.stdout.readline()


def syn_tries(wait: float) -> int:
    """SYNs a connect() sends within `wait` seconds: the first, then retransmissions at
    1, 3, 7, 15 ... s (initial RTO 1 s, doubling). Each one is a new NAT attempt."""
    n, t, rto = 1, 0.0, 1.0
    while t + rto <= wait:
        t += rto
        rto *= 2
        n += 1
    return n


def predict(to_ports: tuple[int, int], attempts: int, tries: int = 1, seeds: int = 200) -> dict:
    """What the NAT model (simulate --algorithm nat) says the kernel lets through: flows
    that stay open, `tries` NAT attempts each (TCP SYN retransmissions), one destination.
    Exact for ranges up to 128 ports (every port is tried); a 1%..99% band above that."""
    space = make_space(f"{to_ports[0]}-{to_ports[1]}", "", "")
    through = []
    for seed in range(seeds):
        a, ok = NatSnat(space, random.Random(seed)), 0
        used: dict[int, float] = {}
        pending = attempts
        for _ in range(tries):
            failed = 0
            for _ in range(pending):
                p, _ = a.choose(0, used, 0.0, None)
                if p >= 0:
                    used[p] = -1.0
                    ok += 1
                else:
                    failed += 1
            pending = failed
        through.append(ok)
    through.sort()
    k = max(1, len(through) // 100)
    return {"through": through[len(through) // 2], "low": through[k - 1], "high": through[-k]}


def run_snat(to_ports: tuple[int, int], attempts: int, proto: str = "tcp", wait: float = 2.5,
             namespaces: Callable[[], contextlib.AbstractContextManager[str]] | None = None) -> dict:
    """Build the topology, send `attempts` flows to one server port, and compare what the
    kernel let through with the model and with `portscope nat` read in the router.
    `namespaces`: a factory of namespace context managers (portscope.lab.lab_namespace, so
    `lab clean` sees them); without it the lab names and removes its own."""
    n = to_ports[1] - to_ports[0] + 1
    tries = syn_tries(wait) if proto == "tcp" else 1
    pred = predict(to_ports, attempts, tries)
    with contextlib.ExitStack() as stack:
        if namespaces is not None:
            lab = SnatLab(names={k: stack.enter_context(namespaces()) for k in ("c", "r", "s")})
        else:
            lab = stack.enter_context(SnatLab())
        return _run(lab, to_ports, attempts, proto, wait, n, tries, pred)


def _run(lab: SnatLab, to_ports: tuple[int, int], attempts: int, proto: str, wait: float, n: int,
         tries: int, pred: dict) -> dict:
    srv = cl = None
    try:
        lab.build(to_ports, protos=(proto,))
        srv = lab.popen(lab.server, SERVER, str(SERVER_PORT))
        if _line(srv).strip() != "ready":
            raise SystemReadError("the lab's server did not start in its namespace")
        cl = lab.popen(lab.client, CLIENT, proto, SERVER_IP, str(SERVER_PORT), str(attempts), str(wait))
        words = _line(cl).split()
        if not words or not words[0].isdigit():
            raise SystemReadError("the lab's client printed no count")
        through = int(words[0])
        rep = analyze(lab.router)
        ct_s = None
        if shutil.which("conntrack"):
            text = lab.run(lab.router, "conntrack", "-S", check=False).stdout
            ct_s = sum(int(v) for v in re.findall(r"insert_failed=(\d+)", text))
        dest = rep.snat[0] if rep.snat else None
        out = {
            "mode": "snat" if proto == "tcp" else "snat-udp",
            "proto": proto,
            "namespaces": dict(lab.names),
            "nat_range": f"{to_ports[0]}-{to_ports[1]}",
            "capacity": n,
            "attempts": attempts,
            "nat_tries_per_flow": tries,
            "predicted": pred,
            "kernel": {"through": through, "insert_failed": ct_s},
            "portscope": {"in_use": dest.in_use if dest else 0, "capacity": dest.capacity if dest else None,
                          "insert_failed": rep.conntrack.stats.get("insert_failed"),
                          "findings": [f["id"] for f in rep.findings]},
        }
        out["match"] = (pred["low"] <= through <= pred["high"]
                        and (dest.in_use if dest else 0) == through
                        and (ct_s is None or ct_s == rep.conntrack.stats.get("insert_failed")))
        json.dumps(out)
        return out
    finally:
        for x in (cl, srv):
            if x is not None:
                x.kill()
                x.wait(10)
