"""Shared fixtures. Anything that writes sysctls, reserves or exhausts ports runs
inside a private network namespace made here and always removed."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

ROOT = os.geteuid() == 0
HAVE_IP = shutil.which("ip") is not None
NEED_ROOT = "needs root and `ip netns` to create a private network namespace"

needs_netns = pytest.mark.skipif(not (ROOT and HAVE_IP), reason=NEED_ROOT)
CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


@pytest.fixture
def netns():
    if not (ROOT and HAVE_IP):
        pytest.skip(NEED_ROOT)
    ns = make_netns()
    try:
        yield ns
    finally:
        remove_netns(ns)


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
