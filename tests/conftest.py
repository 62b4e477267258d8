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


@pytest.fixture(scope="session", autouse=True)
def _checkout_reachable_by_nobody():
    """Several tests drop to `nobody` (setpriv) and run this checkout's venv. A checkout
    made in a private directory (`mktemp -d` is 0700) would fail them for a reason that is
    not portscope's: give others read and search on the checkout's own directory (its
    files are world-readable already; Python's importer lists a sys.path directory, so
    search alone is not enough) for the session, and put the mode back afterwards."""
    import stat
    mode = os.stat(CHECKOUT).st_mode
    need = stat.S_IROTH | stat.S_IXOTH
    if not ROOT or mode & need == need:
        yield
        return
    os.chmod(CHECKOUT, stat.S_IMODE(mode) | need)
    try:
        yield
    finally:
        os.chmod(CHECKOUT, stat.S_IMODE(mode))


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


@pytest.fixture(scope="module")
def module_netns():
    """One namespace shared by a module's tests, for scenes that are slow to build; removed
    after the module's last test."""
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
