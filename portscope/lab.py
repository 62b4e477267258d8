"""`portscope lab exhaust`: run a machine out of ephemeral ports, safely, and check the model.

A private network namespace gets a small range (100 ports by default) and k loopback
destinations (listeners on 127.0.0.2, 127.0.0.3, ...). The lab then opens connections in
one of four ways until the kernel refuses:

  connect       plain connect(): a port is shared across destinations -> about N per destination
  bind-connect  bind(127.0.0.1, 0) then connect(): bind holds the port for everyone -> N in total
  bind-no-port  the same with IP_BIND_ADDRESS_NO_PORT: the choice is deferred -> N per destination
  udp           connected UDP sockets: autobind holds the port globally -> N in total (EAGAIN)
  connect-close connect(), then the client closes first: each port sits in TIME_WAIT for 60 s
                and still counts -> N per destination within tcp_tw_reuse's reach (--tw-reuse)

Before each destination, and at a few points while filling it, it asks portscope what it
predicts (pressure.analyze on the namespace's live socket table and its host facts) and puts
that next to what the kernel actually did.

Safety: sockets are opened by the calling thread after setns() into the lab namespace
(portscope.netns.entered), sysctls are written only after checking that the thread really is
in that namespace, every loop is bounded by --max-connects, the open-file limit and --timeout,
and the namespace is removed in `finally` (SIGTERM/SIGHUP are turned into KeyboardInterrupt so
they take the same path as Ctrl-C).
"""
from __future__ import annotations

import errno
import fcntl
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from . import netns as _netns
from . import pressure
from .errors import BadInput, NotPermitted, PortscopeError, Unsupported
from .host import host_facts
from .host._common import run_command
from .host.linux import write_key
from .ports import MIN_USABLE_RANGE, PortRange, PortSet
from .remedies import IP_BIND_ADDRESS_NO_PORT
from .sockets import snapshot

MODES = ("connect", "bind-connect", "bind-no-port", "udp", "connect-close")
# capacity counted per destination
PER_DESTINATION_MODES = ("connect", "bind-no-port", "connect-close")
# the kernel's ways of saying "no port left"
REFUSALS = {errno.EADDRNOTAVAIL, errno.EADDRINUSE, errno.EAGAIN}

NS_PREFIX = "pslab"
LOCK_DIR = "/run/portscope-lab"     # NAME.lock, flock()ed by the live lab that made namespace NAME
DEFAULT_RANGE = PortRange(40000, 40099)   # ends of different parity: all 100 ports usable
SRC = "127.0.0.1"
SRC6 = "::1"
MAX_DESTINATIONS = 64
MAX_SECONDS = 86400.0       # --timeout and --hold: a day is a bound, not a lab
CONNECT_TIMEOUT = 5.0        # a loopback connect that takes this long is an error, not a wait
FD_HEADROOM = 64             # listeners, netlink sockets, stdio...
CHECKPOINTS = (0.25, 0.5, 0.75)


@dataclass(frozen=True)
class Plan:
    """What to run; validated before anything is created."""

    range: PortRange = DEFAULT_RANGE
    destinations: int = 2
    mode: str = "connect"
    max_connects: int = 10_000
    timeout: float = 60.0
    reserved: PortSet = field(default_factory=PortSet)
    hold: float = 0.0            # keep everything open this long at the end (to inspect it)
    tw_reuse: int | None = None  # net.ipv4.tcp_tw_reuse inside the lab (None: kernel default)
    listeners_in_range: int = 0  # servers bound on ports inside the range (they take those ports)
    family: int = 4              # 6: destinations are [::1]:80, [::1]:81, ... (one loopback address)

    def validate(self) -> "Plan":
        """The plan itself if every option is in bounds; BadInput naming the first that is not."""
        if self.mode not in MODES:
            raise BadInput(f"unknown mode {self.mode!r} (choose from {', '.join(MODES)})")
        if not 1 <= self.destinations <= MAX_DESTINATIONS:
            raise BadInput(f"--destinations must be 1..{MAX_DESTINATIONS}, got {self.destinations}")
        if self.max_connects < 1:
            raise BadInput(f"--max-connects must be at least 1, got {self.max_connects}")
        if not (isinstance(self.timeout, (int, float)) and 0 < self.timeout <= MAX_SECONDS):
            raise BadInput(f"--timeout must be in (0, {MAX_SECONDS:g}] seconds, got {self.timeout}")
        if self.family not in (4, 6):
            raise BadInput(f"--family must be 4 or 6, got {self.family}")
        if self.tw_reuse is not None and self.tw_reuse not in (0, 1, 2):
            raise BadInput(f"--tw-reuse must be 0, 1 or 2, got {self.tw_reuse}")
        if not 0 <= self.listeners_in_range < self.range.size:
            raise BadInput(f"--listeners-in-range must be 0..{self.range.size - 1} for --range "
                           f"{self.range}, got {self.listeners_in_range}")
        if not (isinstance(self.hold, (int, float)) and 0 <= self.hold <= MAX_SECONDS):   # nan, inf too
            raise BadInput(f"--hold must be in 0..{MAX_SECONDS:g} seconds, got {self.hold}")
        # the kernel refuses a range starting below ip_unprivileged_port_start (1024)
        if self.range.low < 1024:
            raise BadInput(f"--range must start at 1024 or above, got {self.range}")
        usable = self.range.size - self.reserved.count_in(self.range)
        if usable < MIN_USABLE_RANGE:
            raise BadInput(f"--range {self.range} with --reserve {self.reserved or 'none'} leaves {usable} usable "
                           f"port(s); the lab needs at least {MIN_USABLE_RANGE}")
        return self

    @property
    def listen_port(self) -> int:
        """The destinations' port. Ranges start at 1024 or above (validate), so 80 never takes
        a range port: capacity then depends only on the range and the reservations."""
        return 80

    def in_range_ports(self) -> list[int]:
        """Ports for --listeners-in-range: spread over the range, both parities."""
        n = self.listeners_in_range
        if not n:
            return []
        step = self.range.size / n
        return sorted({self.range.low + int(i * step) for i in range(n)})

    @property
    def af(self) -> int:
        """The socket address family of `family`."""
        return socket.AF_INET6 if self.family == 6 else socket.AF_INET

    @property
    def src(self) -> str:
        """The loopback address the clients connect from."""
        return SRC6 if self.family == 6 else SRC

    def destination_list(self) -> list[tuple[str, int]]:
        """(address, port) of each destination: IPv4 varies the address, IPv6 the port."""
        if self.family == 6:
            return [(SRC6, self.listen_port + j) for j in range(self.destinations)]
        return [(f"127.0.0.{2 + j}", self.listen_port) for j in range(self.destinations)]


def label(dst: str, port: int) -> str:
    """`ADDR:PORT`, an IPv6 address in brackets."""
    return f"[{dst}]:{port}" if ":" in dst else f"{dst}:{port}"


@dataclass(frozen=True)
class Prediction:
    """What pressure.analyze said at one moment, reduced to the lab's question."""

    capacity: int            # per-destination modes: this destination's; global modes: the pool's
    in_use: int              # the same scope
    utilization: float
    global_in_use: int
    global_capacity: int
    global_utilization: float
    time_wait: int = 0       # of in_use, sockets in TIME_WAIT (the destination's / all)
    # equal-parity range ends: capacity is the guaranteed count, and the kernel's scan
    # window may still reach this many ports more (0 or 1; pressure.connect_window_loss)
    slack: int = 0

    @property
    def left(self) -> int:
        """Connections still predicted to succeed (never negative)."""
        return max(0, self.capacity - self.in_use)

    def to_json(self) -> dict:
        """The prediction's JSON object (docs/json.md, lab exhaust)."""
        return {"capacity": self.capacity, "in_use": self.in_use, "left": self.left,
                "utilization": round(self.utilization, 6),
                "global_in_use": self.global_in_use, "global_capacity": self.global_capacity,
                "global_utilization": round(self.global_utilization, 6),
                "time_wait": self.time_wait, "slack": self.slack}


@dataclass(frozen=True)
class Step:
    """One checkpoint of the run: what was opened so far, what was predicted, what the kernel refused."""

    destination: str         # "127.0.0.2:80"
    phase: str               # "start", "25%", "50%", "75%", "refused", "stopped"
    opened: int              # sockets opened to this destination so far
    opened_total: int
    predicted: Prediction | None
    errno: int | None = None
    call: str | None = None  # "bind" | "connect" that the kernel refused
    # mean wall time per successful socket since the previous step: connect() slows down as
    # the range fills (the search walks more of it), a symptom that comes before the refusal
    mean_us: float | None = None

    @property
    def errno_name(self) -> str | None:
        """The refusal's symbolic name (e.g. "EADDRNOTAVAIL"), None without one."""
        return errno.errorcode.get(self.errno, str(self.errno)) if self.errno is not None else None

    def to_json(self) -> dict:
        """One element of `steps` in `lab exhaust --json`."""
        return {"destination": self.destination, "phase": self.phase, "opened": self.opened,
                "opened_total": self.opened_total,
                "predicted": self.predicted.to_json() if self.predicted else None,
                "errno": self.errno, "errno_name": self.errno_name, "call": self.call,
                "mean_us": None if self.mean_us is None else round(self.mean_us, 1)}


@dataclass(frozen=True)
class DestinationOutcome:
    """One destination's prediction against what the kernel actually allowed."""

    dst: str
    dport: int
    predicted: int | None    # connections portscope said would still succeed, at the start
    opened: int              # connections the kernel accepted
    errno: int | None        # the refusal (None: stopped by a bound first)
    call: str | None
    utilization_at_refusal: float | None   # analyze() of this destination once refused
    slack: int = 0           # the kernel may open this many more than predicted (equal parity)

    @property
    def errno_name(self) -> str | None:
        """The refusal's symbolic name, None when stopped before any refusal."""
        return errno.errorcode.get(self.errno, str(self.errno)) if self.errno is not None else None

    @property
    def match(self) -> bool | None:
        """Did the kernel open exactly the predicted count (up to `slack` more)? None without a
        prediction or a refusal to compare with."""
        if self.predicted is None or self.errno is None:
            return None
        return self.predicted <= self.opened <= self.predicted + self.slack

    def to_json(self) -> dict:
        """One element of `destinations` in `lab exhaust --json`."""
        return {"dst": self.dst, "dport": self.dport, "predicted": self.predicted,
                "opened": self.opened, "errno": self.errno, "errno_name": self.errno_name,
                "call": self.call, "utilization_at_refusal": self.utilization_at_refusal,
                "slack": self.slack, "match": self.match}


@dataclass(frozen=True)
class LabResult:
    """The whole run: per-destination outcomes, checkpoints, why it stopped."""

    namespace: str
    plan: Plan
    destinations: tuple[DestinationOutcome, ...]
    steps: tuple[Step, ...]
    stop_reason: str         # "refused" | "max-connects" | "open-files" | "timeout" | "error"
    elapsed_s: float
    global_start: Prediction | None
    global_end: Prediction | None
    error: str | None = None

    @property
    def opened_total(self) -> int:
        """Connections opened to every destination together."""
        return sum(d.opened for d in self.destinations)

    @property
    def match(self) -> bool | None:
        """True when every destination matched its prediction; None unless the run ended in refusals."""
        ms = [d.match for d in self.destinations]
        if self.stop_reason != "refused" or any(m is None for m in ms):
            return None
        return all(ms)

    def to_json(self) -> dict:
        """The `lab exhaust --json` document (docs/json.md)."""
        p = self.plan
        return {
            "namespace": self.namespace, "mode": p.mode,
            "range": {"low": p.range.low, "high": p.range.high, "size": p.range.size},
            "reserved": str(p.reserved), "listen_port": p.listen_port,
            "listeners_in_range": p.in_range_ports(), "tw_reuse": p.tw_reuse, "family": p.family,
            "max_connects": p.max_connects, "timeout_s": p.timeout,
            "destinations": [d.to_json() for d in self.destinations],
            "opened_total": self.opened_total,
            "global_start": self.global_start.to_json() if self.global_start else None,
            "global_end": self.global_end.to_json() if self.global_end else None,
            "stop_reason": self.stop_reason, "error": self.error,
            "match": self.match, "elapsed_s": round(self.elapsed_s, 3),
            "steps": [s.to_json() for s in self.steps],
        }


# ---------------------------------------------------------------- namespace lifecycle

def _ip(*args: str, check: bool = True) -> str:
    """`ip ARGS` through the shared runner; with check=False a failure is only an empty answer."""
    try:
        return run_command(["ip", *args])
    except PortscopeError:
        if check:
            raise
        return ""


def check_can_run() -> None:
    """Refuse early, with the right exit code, where the lab cannot run (not Linux, not root, no `ip`)."""
    if not sys.platform.startswith("linux"):
        raise Unsupported("lab exhaust needs Linux network namespaces")
    if os.geteuid() != 0:
        raise NotPermitted("lab exhaust needs root: it creates a private network namespace (try sudo)")
    if shutil.which("ip") is None:
        raise Unsupported("lab exhaust needs the `ip` command (iproute2)")


def lab_namespaces() -> list[str]:
    """Names of lab namespaces that exist now (ours or left by a killed run)."""
    out = _ip("netns", "list", check=False)
    return [ln.split()[0] for ln in out.splitlines() if ln.startswith(NS_PREFIX + "-")]


def _lock_path(name: str) -> str:
    return os.path.join(LOCK_DIR, f"{name}.lock")


def _take_lock(name: str, wait: bool) -> int | None:
    """An exclusive flock on the lab's lock file: the fd, or None when a live lab holds it.
    The kernel drops a flock when its holder dies (SIGKILL included), so a held lock means
    a live lab and a free one means none, whatever happened to pids since."""
    os.makedirs(LOCK_DIR, mode=0o700, exist_ok=True)
    fd = os.open(_lock_path(name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _release_lock(name: str, fd: int | None) -> None:
    """Drop the lab's lock (None: it was never taken)."""
    if fd is None:
        return
    try:
        os.unlink(_lock_path(name))      # while still holding it: no one can take a stale one
    except FileNotFoundError:
        pass
    os.close(fd)


def clean_stale() -> list[str]:
    """Delete lab namespaces no live lab holds (a run killed with SIGKILL). Liveness is the
    lab's flock on LOCK_DIR/NAME.lock, not the pid in the name (reused pids, zombies)."""
    removed = []
    for name in lab_namespaces():
        fd = _take_lock(name, wait=False)
        if fd is None:
            continue                     # a live lab holds it
        try:
            _ip("netns", "delete", name, check=False)
        finally:
            _release_lock(name, fd)
        removed.append(name)
    return removed


@contextmanager
def _signals_as_interrupt() -> Iterator[None]:
    """SIGTERM/SIGHUP take the Ctrl-C path, so the namespace is removed in every case."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    old = {}
    if threading_main():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            old[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def threading_main() -> bool:
    """True in the main thread, the only one that may install signal handlers."""
    import threading
    return threading.current_thread() is threading.main_thread()


@contextmanager
def lab_namespace() -> Iterator[str]:
    """A fresh namespace named pslab-<our pid>-<random>, loopback up, always deleted."""
    name = f"{NS_PREFIX}-{os.getpid()}-{secrets.token_hex(3)}"
    lock = _take_lock(name, wait=True)   # before the namespace exists: `lab clean` never sees it unlocked
    try:
        # inside the try: an interrupt right after `add` must still reach the delete
        _ip("netns", "add", name)
        _ip("-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        # a second Ctrl-C must not cut the clean-up short
        old = signal.signal(signal.SIGINT, signal.SIG_IGN) if threading_main() else None
        try:
            _ip("netns", "delete", name, check=False)
        finally:
            _release_lock(name, lock)
            if old is not None:
                signal.signal(signal.SIGINT, old)


def _ns_inode(path: str) -> int:
    return os.stat(path).st_ino


def _write_sysctl(key: str, value: str, ns_inode: int) -> None:
    # /proc/sys/net resolves through the *calling thread's* namespace: check we are in the lab's
    if _ns_inode("/proc/thread-self/ns/net") != ns_inode:
        raise PortscopeError("refusing to write a sysctl outside the lab namespace")
    write_key(key, value)


def _configure(plan: Plan, ns_inode: int) -> None:
    _write_sysctl("net.ipv4.ip_local_port_range", f"{plan.range.low} {plan.range.high}", ns_inode)
    _write_sysctl("net.ipv4.ip_local_reserved_ports", str(plan.reserved), ns_inode)
    # listeners never accept(): completed connections wait in the accept queue, so the server
    # side costs no file descriptors; the queue must hold a whole range
    _write_sysctl("net.core.somaxconn", "65535", ns_inode)
    if plan.tw_reuse is not None:
        _write_sysctl("net.ipv4.tcp_tw_reuse", str(plan.tw_reuse), ns_inode)


def _fd_budget() -> int:
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    limit = soft if soft != resource.RLIM_INFINITY else 1 << 20
    return max(0, limit - FD_HEADROOM - len(os.listdir("/proc/self/fd")))


# ---------------------------------------------------------------- sockets

def _listeners(plan: Plan) -> list[socket.socket]:
    out = []
    try:
        for dst, port in plan.destination_list():
            if plan.mode == "udp":
                s = socket.socket(plan.af, socket.SOCK_DGRAM)
                s.bind((dst, port))
            else:
                s = socket.socket(plan.af, socket.SOCK_STREAM)
                s.bind((dst, port))
                s.listen(65535)
            out.append(s)
        # servers inside the range: bound explicitly, so no connect() or bind(0) may take the port
        for port in plan.in_range_ports():
            wild = "::" if plan.family == 6 else "0.0.0.0"
            if plan.mode == "udp":
                s = socket.socket(plan.af, socket.SOCK_DGRAM)
                s.bind((wild, port))
            else:
                s = socket.socket(plan.af, socket.SOCK_STREAM)
                s.bind((wild, port))
                s.listen(16)
            out.append(s)
    except BaseException:
        for s in out:
            s.close()
        raise
    return out


def close_into_time_wait(client: socket.socket, listener: socket.socket) -> None:
    """Client closes first, then the server side: the client's port enters TIME_WAIT (60 s)."""
    server, _ = listener.accept()
    client.close()
    server.close()


def open_one(mode: str, dst: str, port: int) -> socket.socket:
    """One client socket in `mode`; OSError carries `.call` = the syscall that failed."""
    udp = mode == "udp"
    v6 = ":" in dst
    s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET,
                      socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
    call = "bind"
    try:
        if not udp:
            s.settimeout(CONNECT_TIMEOUT)
        if mode == "bind-no-port":
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        if mode in ("bind-connect", "bind-no-port"):
            s.bind((SRC6 if v6 else SRC, 0))
        call = "connect"
        s.connect((dst, port))
    except OSError as e:
        s.close()
        e.call = call  # type: ignore[attr-defined]  # read by Refusal: which syscall failed
        raise
    except BaseException:
        s.close()
        raise
    return s


# ---------------------------------------------------------------- predictions

def portscope_predictor(plan: Plan, namespace: str) -> Callable[[str, int], Prediction]:
    """Ask pressure.analyze about the live table and host facts of `namespace`."""

    proto = "udp" if plan.mode == "udp" else "tcp"
    per_dest = plan.mode in PER_DESTINATION_MODES

    def predict(dst: str, dport: int) -> Prediction:
        hf = host_facts(namespace)
        table = snapshot(protos=(proto,), families=(plan.family,), netns=namespace, facts=hf)
        r = pressure.analyze(hf, table)
        g = r.global_
        row = r.destination(dst, dport, proto, src=plan.src)
        tw = g.time_wait
        # connect() and bind(0) scan an even-sized window of the range (udp does not)
        slack = r.connect_window_loss if proto == "tcp" else 0
        if per_dest:
            if row is not None:
                cap, used, tw = row.capacity, row.in_use, row.time_wait
            else:  # a destination with no socket yet
                cap, used, tw = r.new_destination_capacity(proto), 0, 0
        elif plan.mode == "udp":
            cap, used = g.capacity, g.udp_exclusive
        else:  # bind(0) needs a port no TCP socket holds at all
            cap, used = r.tcp_pool_ports, g.in_use
        # the extra port exists only while one is still free
        slack = max(0, cap + slack - used) - max(0, cap - used)
        return Prediction(capacity=cap, in_use=used, utilization=min(1.0, used / cap) if cap else 1.0,
                          global_in_use=g.in_use, global_capacity=g.capacity,
                          global_utilization=g.utilization, time_wait=tw, slack=slack)

    return predict


# ---------------------------------------------------------------- the run

def run_exhaust(plan: Plan, on_step: Callable[[Step], None] | None = None,
                on_ready: Callable[[str], None] | None = None,
                on_hold: Callable[[str], None] | None = None,
                predictor_factory: Callable[[Plan, str], Callable[[str, int], Prediction]] | None = None,
                ) -> LabResult:
    """Create the lab, exhaust it, report, and remove everything (also on Ctrl-C/SIGTERM)."""

    plan.validate()
    check_can_run()
    fd_budget = _fd_budget()   # open client sockets (connect-close keeps none open)
    held = 0
    t0 = time.monotonic()
    steps: list[Step] = []
    outcomes: list[DestinationOutcome] = []

    def step(s: Step) -> None:
        steps.append(s)
        if on_step:
            on_step(s)

    with ExitStack() as stack:
        stack.enter_context(_signals_as_interrupt())
        name = stack.enter_context(lab_namespace())
        ns_inode = _ns_inode(_netns.resolve(name))
        stack.enter_context(_netns.entered(name))
        _configure(plan, ns_inode)
        sockets: list[socket.socket] = []
        # closed before the namespace is deleted (ExitStack unwinds in reverse)
        stack.callback(_close_all, sockets)
        listeners = _listeners(plan)
        sockets.extend(listeners)
        listener_of = dict(zip(plan.destination_list(), listeners))
        for ls in listener_of.values():
            ls.settimeout(CONNECT_TIMEOUT)
        if on_ready:
            on_ready(name)
        predict = (predictor_factory or portscope_predictor)(plan, name)
        first = plan.destination_list()[0]
        global_start = predict(*first)
        stop, error = "refused", None
        total = 0
        deadline = time.monotonic() + plan.timeout   # --timeout bounds the opening, not the set-up
        for dst, port in plan.destination_list():
            name_ = label(dst, port)
            if stop != "refused":
                break
            start = predict(dst, port)
            step(Step(name_, "start", 0, total, start))
            marks = {max(1, round(start.left * f)): f"{int(f * 100)}%" for f in CHECKPOINTS}
            opened, err, call = 0, None, None
            seg_s, seg_n = 0.0, 0

            def mean_us():
                nonlocal seg_s, seg_n
                m = seg_s / seg_n * 1e6 if seg_n else None
                seg_s, seg_n = 0.0, 0
                return m

            while True:
                if total >= plan.max_connects:
                    stop = "max-connects"
                    break
                if held >= fd_budget:
                    stop = "open-files"
                    break
                # at least one attempt per destination, however slow the set-up was
                if opened and time.monotonic() > deadline:
                    stop = "timeout"
                    break
                t1 = time.perf_counter()
                try:
                    if plan.mode == "connect-close":
                        close_into_time_wait(open_one("connect", dst, port),
                                             listener_of[(dst, port)])
                    else:
                        sockets.append(open_one(plan.mode, dst, port))
                        held += 1
                except OSError as e:
                    err, call = e.errno, getattr(e, "call", None)
                    if e.errno not in REFUSALS:
                        stop, error = "error", f"{call}() failed: {e.strerror or e}"
                    break
                seg_s += time.perf_counter() - t1
                seg_n += 1
                opened += 1
                total += 1
                if opened in marks and opened < start.left:
                    m = mean_us()
                    step(Step(name_, marks[opened], opened, total, predict(dst, port), mean_us=m))
            after = predict(dst, port)
            phase = "refused" if err is not None and stop == "refused" else "stopped"
            step(Step(name_, phase, opened, total, after, err, call, mean_us=mean_us()))
            outcomes.append(DestinationOutcome(
                dst=dst, dport=port, predicted=start.left, opened=opened,
                errno=err, call=call, slack=start.slack,
                utilization_at_refusal=round(after.utilization, 6) if phase == "refused" else None))
        global_end = predict(*first)
        if plan.hold > 0:
            if on_hold:
                on_hold(name)
            time.sleep(plan.hold)
        elapsed = time.monotonic() - t0
    return LabResult(namespace=name, plan=plan, destinations=tuple(outcomes), steps=tuple(steps),
                     stop_reason=stop, elapsed_s=elapsed, global_start=global_start,
                     global_end=global_end, error=error)


def _close_all(sockets: list[socket.socket]) -> None:
    for s in sockets:
        s.close()
