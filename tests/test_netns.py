import os
import time

import pytest

from portscope import netns as pnetns
from portscope.errors import BadInput


def _ns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def test_enter_named_namespace_reads_its_own_sysctl_and_returns(netns):
    netns.sysctl("net.ipv4.ip_local_port_range", "20000 20999")
    home = _ns_inode()
    with pnetns.entered(netns.name):
        assert _ns_inode() != home
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            assert f.read().split() == ["20000", "20999"]
        with open(pnetns.proc_net_path("tcp")) as f:
            assert f.readline().split()[0] == "sl"
    assert _ns_inode() == home
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        assert f.read().split() != ["20000", "20999"]


def test_enter_by_pid(netns):
    proc = netns.popen("sleep", "30")
    try:
        with pnetns.entered(netns.name):
            target = _ns_inode()
        # `ip netns exec` setns()es and then execs in the same pid: wait for the switch
        deadline = time.monotonic() + 5
        while os.stat(f"/proc/{proc.pid}/ns/net").st_ino != target and time.monotonic() < deadline:
            time.sleep(0.01)
        # `ip netns exec` forks/execs, so the sleep's pid lives in the namespace
        with pnetns.entered(f"pid:{proc.pid}"):
            assert _ns_inode() == target
    finally:
        proc.kill()
        proc.wait()


def test_returns_home_even_when_the_block_raises(netns):
    home = _ns_inode()
    with pytest.raises(RuntimeError):
        with pnetns.entered(netns.name):
            raise RuntimeError("boom")
    assert _ns_inode() == home


@pytest.mark.parametrize("spec", ["no-such-ns-xyz", "pid:999999999", "pid:abc", "../etc", ""])
def test_bad_specs_are_one_line_errors(spec):
    with pytest.raises(BadInput) as e:
        with pnetns.entered(spec or " "):
            pass
    assert "\n" not in str(e.value)


def test_none_means_stay_here():
    home = _ns_inode()
    with pnetns.entered(None):
        assert _ns_inode() == home


def test_no_descriptor_is_left_open(netns):
    """entered() opens the target's and home's namespace files and closes both: after a block,
    a raising block and a refused spec alike."""
    before = sorted(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with pnetns.entered(netns.name):
            assert len(os.listdir("/proc/self/fd")) == len(before) + 2
        with pytest.raises(RuntimeError):
            with pnetns.entered(netns.name):
                raise RuntimeError("boom")
        with pytest.raises(BadInput):
            with pnetns.entered("no-such-ns-xyz"):
                pass
    assert sorted(os.listdir("/proc/self/fd")) == before
