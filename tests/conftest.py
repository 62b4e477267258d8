"""Shared fixtures and helpers (each lives here once), and the hook that keeps the test
tiers' marks honest. Anything that writes sysctls, reserves or exhausts ports runs inside
a private network namespace made here and always removed."""
from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

ROOT = os.geteuid() == 0
HAVE_IP = shutil.which("ip") is not None
NEED_ROOT = "needs root and `ip netns` to create a private network namespace"

# the venv's console script, as a user runs it (`python -m portscope` where there is none)
PORTSCOPE = os.path.join(os.path.dirname(sys.executable), "portscope")
ENTRY = [PORTSCOPE] if os.path.exists(PORTSCOPE) else [sys.executable, "-m", "portscope"]
PYTHON_M = (sys.executable, "-m", "portscope")
SAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "samples")

# the namespace mark: the hook below adds root and live to it, and skips it without root and `ip`
needs_netns = pytest.mark.netns
CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Fixtures that create private network namespaces: a test using any of them, directly or
# through another fixture, is a netns test whatever its own marks say.
NETNS_FIXTURES = frozenset({"netns", "netns_factory", "module_netns"})


@pytest.hookimpl(tryfirst=True)          # before `-m` deselects by mark
def pytest_collection_modifyitems(config, items):
    """Make the marks honest, so that the fast tier (`-m "not root and not netns and not slow
    and not live"`) cannot pick up a test that needs root: a test that uses a namespace
    fixture is marked netns; a netns test is a root test and a live one (it talks to the
    kernel); and a root test skips, with the reason, where there is no root."""
    for item in items:
        if NETNS_FIXTURES.intersection(item.fixturenames) and item.get_closest_marker("netns") is None:
            item.add_marker(pytest.mark.netns)
        netns_test = item.get_closest_marker("netns") is not None
        if netns_test:
            for name in ("root", "live"):
                if item.get_closest_marker(name) is None:
                    item.add_marker(name)
            if not (ROOT and HAVE_IP):
                item.add_marker(pytest.mark.skip(reason=NEED_ROOT))
        elif item.get_closest_marker("root") is not None and not ROOT:
            item.add_marker(pytest.mark.skip(reason="needs root"))


NOBODY_IDS = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")


def _dist_closure() -> list:
    """The installed distributions portscope needs at run time (its requirements, recursively)."""
    from importlib import metadata
    from packaging.requirements import Requirement

    seen: dict[str, object] = {}
    todo = ["portscope"]
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        try:
            d = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[key] = d
        for r in d.requires or ():
            req = Requirement(r)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen.values())


def _place(src: str, dst: str) -> None:
    """Hard-link (fast, same file system, no bytes copied) or copy `src` to `dst`, world-readable."""
    import stat
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    mode = os.stat(src).st_mode
    if mode & stat.S_IROTH:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o755 if mode & stat.S_IXUSR else 0o644)


def _runs_as_nobody(argv: list[str], env: dict) -> bool:
    p = subprocess.run([*NOBODY_IDS, *argv, "-c", "import portscope.cli, bcrypt, psutil, yaml"],
                       capture_output=True, env=env, cwd="/", timeout=60)
    return p.returncode == 0


@pytest.fixture(scope="session")
def nobody_portscope():
    """argv that runs `portscope` as uid 65534 (prefix it with NOBODY_IDS or setpriv flags).

    The checkout may sit in a private directory (`mktemp -d` is 0700, and so is /root, where
    root clones by default), and the venv's interpreter under /root/.pyenv as well: `nobody`
    can reach neither, and changing the mode of any directory above the checkout is not ours
    to do. So the session builds its own runtime in a fresh 0755 directory under the system
    temp dir: this checkout's package and the installed files of its run-time dependencies
    (hard links where possible), run by the venv's base interpreter if nobody can execute it,
    else by a system interpreter of the same major.minor (same ABI for the compiled wheels).
    It is removed when the session ends."""
    import tempfile
    if not ROOT or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux) to drop to nobody")
    rt = tempfile.mkdtemp(prefix="portscope-nobody-")
    try:
        os.chmod(rt, 0o755)
        site = os.path.join(rt, "site")
        pkg = os.path.join(CHECKOUT, "portscope")
        for d, _, files in os.walk(pkg):
            if "__pycache__" in d:
                continue
            for f in files:
                src = os.path.join(d, f)
                _place(src, os.path.join(site, "portscope", os.path.relpath(src, pkg)))
        for dist in _dist_closure():
            if dist.metadata["Name"].lower() == "portscope":
                continue
            for f in dist.files or ():
                src = str(f.locate())
                rel = str(f)
                if rel.startswith("..") or "__pycache__" in rel or not os.path.isfile(src):
                    continue
                _place(src, os.path.join(site, rel))
        # the directories made above follow the umask; nobody must list and enter each one
        for d, dirs, _ in os.walk(rt):
            os.chmod(d, 0o755)
        env = {**os.environ, "PYTHONPATH": site, "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        env.pop("VIRTUAL_ENV", None)
        ver = "python%d.%d" % sys.version_info[:2]
        candidates = [os.path.join(sys.base_prefix, "bin", ver)]
        candidates += [p for p in (shutil.which(ver, path="/usr/bin:/usr/local/bin:/bin"),) if p]
        for exe in candidates:
            if os.path.exists(exe) and _runs_as_nobody(["env", f"PYTHONPATH={site}", "PYTHONNOUSERSITE=1",
                                                        "PYTHONDONTWRITEBYTECODE=1", exe], env):
                yield ["env", f"PYTHONPATH={site}", "PYTHONNOUSERSITE=1", "PYTHONDONTWRITEBYTECODE=1",
                       exe, "-m", "portscope"]
                break
        else:
            pytest.skip(f"no {ver} interpreter that uid 65534 may execute (tried {', '.join(candidates)}): "
                        f"install the system's {ver}")
    finally:
        shutil.rmtree(rt, ignore_errors=True)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class Netns:
    """A named namespace with loopback up; `run` executes a command inside it."""

    def __init__(self, name: str):
        self.name = name

    def run(self, *cmd: str, check: bool = True, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, *cmd], capture_output=True,
                              text=True, check=check, timeout=timeout, **kw)

    def python(self, code: str, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-c", code, *args, **kw)

    def sysctl(self, key: str, value: str | None = None) -> str:
        path = "/proc/sys/" + key.replace(".", "/")
        if value is None:
            return self.run("cat", path).stdout.strip()
        self.run("sh", "-c", f'printf "%s" "$1" > {path}', "sh", value)
        return value

    def popen(self, *cmd: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], **kw)

    def ss(self, *args: str) -> list[list[str]]:
        """`ss -H ARGS` inside the namespace (the ground truth): one list of fields a socket."""
        return [ln.split() for ln in self.run("ss", "-H", *args).stdout.splitlines() if ln.strip()]

    def start(self, code: str, *args: str, ready: str = "ready", timeout: float = 30, **kw) -> subprocess.Popen:
        """Run Python `code` inside the namespace and return once its first line is `ready`
        (its sockets are open by then); end it with stop_process()."""
        p = self.popen(sys.executable, "-c", code, *args, stdout=subprocess.PIPE, text=True, **kw)
        r, _, _ = select.select([p.stdout], [], [], timeout)
        line = p.stdout.readline().strip() if r else f"nothing within {timeout} s"
        if line != ready:
            stop_process(p)
        assert line == ready, line
        return p


def stop_process(p: subprocess.Popen, timeout: float = 10) -> None:
    """Terminate, then kill if it lingers; reaped either way."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def free_port() -> int:
    """A loopback TCP port free at this moment."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 20, proc: subprocess.Popen | None = None) -> None:
    """Until `url` answers; fails early if `proc` (the server) has exited."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer in {timeout} s")


def sample(name: str) -> str:
    """A recorded command output from tests/samples, line ends as recorded (Windows' CRLF)."""
    with open(os.path.join(SAMPLES, name), encoding="utf-8", newline="") as f:
        return f.read()


# the host settings tests must never change: compared before and after the risky ones
HOST_SYSCTLS = ("net/ipv4/ip_local_port_range", "net/ipv4/ip_local_reserved_ports",
                "net/ipv4/ip_unprivileged_port_start", "net/ipv4/tcp_tw_reuse", "net/core/somaxconn")


def host_sysctls() -> dict:
    """This process's own namespace's values of HOST_SYSCTLS (call it outside any setns)."""
    out = {}
    for k in HOST_SYSCTLS:
        with open(f"/proc/sys/{k}") as f:
            out[k] = f.read()
    return out


def host_values() -> tuple[str, str]:
    """This host's ephemeral range and reserved ports, to show that a test left them alone."""
    return (" ".join(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()),
            open("/proc/sys/net/ipv4/ip_local_reserved_ports").read().strip())


def ns_values(ns: Netns) -> tuple[str, str]:
    """The same two settings inside a namespace."""
    return (ns.sysctl("net.ipv4.ip_local_port_range"), ns.sysctl("net.ipv4.ip_local_reserved_ports"))


def make_netns(prefix: str = "pstest") -> Netns:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    _ip("netns", "add", name)
    _ip("-n", name, "link", "set", "lo", "up")
    return Netns(name)


def remove_netns(ns: Netns) -> None:
    # kill anything left inside, then delete
    subprocess.run(["ip", "netns", "pids", ns.name], capture_output=True)
    pids = subprocess.run(["ip", "netns", "pids", ns.name], capture_output=True, text=True).stdout.split()
    for p in pids:
        try:
            os.kill(int(p), 9)
        except (ProcessLookupError, ValueError):
            pass
    _ip("netns", "delete", ns.name, check=False)


@contextlib.contextmanager
def private_netns(prefix: str = "pstest"):
    """A fresh namespace for the block, removed however the block ends (skips without root)."""
    if not (ROOT and HAVE_IP):
        pytest.skip(NEED_ROOT)
    ns = make_netns(prefix)
    try:
        yield ns
    finally:
        remove_netns(ns)


@pytest.fixture
def netns():
    with private_netns() as ns:
        yield ns


@pytest.fixture(scope="module")
def module_netns():
    """One namespace shared by a module's tests, for scenes that are slow to build; removed
    after the module's last test."""
    with private_netns() as ns:
        yield ns


@pytest.fixture
def netns_factory():
    """Several namespaces in one test; all removed at the end."""
    if not (ROOT and HAVE_IP):
        pytest.skip(NEED_ROOT)
    made: list[Netns] = []

    def make() -> Netns:
        ns = make_netns()
        made.append(ns)
        return ns

    try:
        yield make
    finally:
        for ns in made:
            remove_netns(ns)


@pytest.fixture
def cli():
    """Run the real console entry point in-process; returns (exit_code, stdout, stderr)."""
    from click.testing import CliRunner
    from portscope.cli import main

    def run(*args: str, input: str | None = None):
        runner = CliRunner(mix_stderr=False) if "mix_stderr" in CliRunner.__init__.__code__.co_varnames else CliRunner()
        code = 0
        res = runner.invoke(_Main(main), list(args), input=input, catch_exceptions=False)
        code = res.exit_code
        return code, res.stdout, res.stderr

    return run


class _Main:
    """Adapts portscope.cli.main (which calls sys.exit) to CliRunner.invoke."""

    def __init__(self, fn):
        self.fn = fn
        self.name = "portscope"

    def main(self, args=None, prog_name=None, **kw):
        self.fn(args)
        raise SystemExit(0)


# --- a socket driver inside a namespace -------------------------------------------------

LIMIT = 2000                      # no driver loop runs further than this

DRIVER = r"""
import errno, json, socket, sys, threading, time
LIMIT = int(sys.argv[1])
held, listeners = [], []

def drain(c):
    try:
        while c.recv(4096):
            pass
    except OSError:
        pass
    c.close()

def serve(l):
    while True:
        try:
            c, _ = l.accept()
        except OSError:
            return
        threading.Thread(target=drain, args=(c,), daemon=True).start()

def client(mode, dst, dport, src, lport=0):
    fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
    kind = socket.SOCK_DGRAM if mode == "udp" else socket.SOCK_STREAM
    c = socket.socket(fam, kind)
    try:
        if mode == "nobind":
            c.setsockopt(socket.IPPROTO_IP, 24, 1)   # IP_BIND_ADDRESS_NO_PORT
        if mode in ("bind", "nobind", "udp", "bindonly"):
            c.bind((src, lport))
        if mode == "bindonly":
            return c
        if mode != "udp" or dport:
            c.connect((dst, dport))
    except OSError:
        c.close()
        raise
    return c

def rate(dst, dport, r, seconds):
    t0 = time.monotonic()
    for k in range(int(r * seconds)):
        d = t0 + k / r - time.monotonic()
        if d > 0:
            time.sleep(d)
        try:
            client("connect", dst, dport, None).close()
        except OSError:
            pass

for line in sys.stdin:
    cmd = json.loads(line)
    op, out = cmd["op"], {"op": cmd["op"]}
    try:
        if op == "listen":
            l = socket.socket(socket.AF_INET6 if ":" in cmd.get("addr", "") else socket.AF_INET)
            l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            l.bind((cmd.get("addr", "127.0.0.1"), cmd["port"]))
            l.listen(4096)
            listeners.append(l)
            if cmd.get("serve"):
                threading.Thread(target=serve, args=(l,), daemon=True).start()
        elif op in ("open", "churn"):
            n, dests = cmd.get("n"), cmd["dests"]
            out["opened"] = [0] * len(dests)
            out["error"] = None
            i = 0
            while (n is None or sum(out["opened"]) < n) and sum(out["opened"]) < LIMIT:
                k = i % len(dests)
                i += 1
                if out["opened"][k] < 0:
                    continue
                try:
                    c = client(cmd.get("mode", "connect"), dests[k][0], dests[k][1], cmd.get("src", "127.0.0.1"),
                               cmd.get("lport", 0))
                except OSError as e:
                    out["error"] = errno.errorcode.get(e.errno, str(e.errno))
                    out.setdefault("failed", []).append(k)
                    if cmd.get("until") == "all" and len(out["failed"]) < len(dests):
                        out["opened"][k] = -out["opened"][k] - 1   # mark exhausted
                        continue
                    break
                if op == "churn":
                    c.close()
                else:
                    held.append(c)
                out["opened"][k] += 1
            out["opened"] = [x if x >= 0 else -x - 1 for x in out["opened"]]
            if op == "churn":
                time.sleep(0.3)   # let the server side close so the client reaches TIME_WAIT
        elif op == "rate":
            threading.Thread(target=rate, args=(cmd["dst"], cmd["dport"], cmd["rate"], cmd["seconds"]),
                             daemon=True).start()
            out["t0"] = time.time()
    except OSError as e:
        out["error"] = errno.errorcode.get(e.errno, str(e.errno))
    print(json.dumps(out), flush=True)
"""


class Driver:
    """A process inside a namespace that opens, holds and churns sockets on command
    (`drive(op="open", dests=DESTS, n=5)`), answering each command with one JSON line."""

    def __init__(self, ns):
        self.ns = ns
        self.p = ns.popen(sys.executable, "-c", DRIVER, str(LIMIT), stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def __call__(self, timeout: float = 30, **cmd) -> dict:
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        if not r:
            raise AssertionError(f"driver did not answer {cmd} within {timeout} s")
        line = self.p.stdout.readline()
        if not line:
            raise AssertionError(f"driver died: {self.p.stderr.read()}")
        return json.loads(line)

    def close(self):
        try:
            self.p.stdin.close()
            self.p.wait(10)
        except Exception:
            self.p.kill()
            self.p.wait(5)


# two destinations on loopback, for the driver's open and churn commands
DESTS = [["127.0.0.1", 5001], ["127.0.0.1", 5002]]


@pytest.fixture
def driver(netns):
    """A Driver in the test's namespace, always stopped."""
    d = Driver(netns)
    try:
        yield d
    finally:
        d.close()


def analyze_ns(ns: Netns, **kw):
    """portscope.pressure.analyze() of a namespace's TCP and UDP sockets in its ephemeral range."""
    from portscope.host import facts as host_facts
    from portscope.pressure import analyze
    from portscope.sockets import snapshot
    f = host_facts(ns.name)
    table = snapshot(protos=("tcp", "udp"), sport=f.ephemeral, netns=ns.name, facts=f,
                     owners=kw.get("process", False))
    return analyze(f, table, **kw)
