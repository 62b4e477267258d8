"""Planning, applying, reading back, persisting and rolling back port-setting changes.

Pure checks run on recorded facts; native macOS/FreeBSD/Windows commands run
against fake runners that behave like the real OS (recorded output format);
every live write happens inside the `netns` fixture's private namespace.
"""
from __future__ import annotations

import os
import re
import sys
import time

import pytest

from portscope.errors import BadInput, NotPermitted, PortscopeError, SystemReadError, Unsupported
from portscope import settings
from portscope.fsutil import atomic_write
from portscope.host import _common, bsd, linux, sysctld, windows
from portscope.host._common import SocketFacts
from portscope.host.engine import apply, plan_range, plan_reserve
from portscope.ports import PortRange, PortSet

from conftest import host_values, ns_values, sample


def linux_facts(low=32768, high=60999, reserved="", unpriv=1024, netns=None):
    f = linux.read_facts()
    return f.replace(ephemeral=PortRange(low, high), reserved=PortSet.parse(reserved),
                     unprivileged_port_start=unpriv, netns=netns)


NO_SOCKETS = SocketFacts({}, frozenset())


# ------------------------------------------------------------------ validation (pure)

@pytest.mark.parametrize("low,high,msg", [
    ("70000", "80000", "1..65535"), ("100", "50", "above HIGH"), ("abc", "5", "integer"),
    ("0", "100", "1..65535"), ("1000", "70000", "1..65535"), ("1.5", "9", "integer"), ("", "9", "integer"),
    ("500", "60000", "ip_unprivileged_port_start"),
])
def test_bad_ranges_are_refused_before_anything(low, high, msg):
    with pytest.raises(BadInput) as e:
        plan_range(low, high, facts=linux_facts(), sockets=NO_SOCKETS)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_low_may_go_down_to_the_unprivileged_boundary():
    p = plan_range(1024, 65535, facts=linux_facts(), sockets=NO_SOCKETS)
    assert [s.new for s in p.steps] == ["1024 65535"]
    with pytest.raises(BadInput):
        plan_range(1023, 65535, facts=linux_facts(), sockets=NO_SOCKETS)
    # a namespace that lowered its boundary allows lower ranges
    p = plan_range(600, 65535, facts=linux_facts(unpriv=500), sockets=NO_SOCKETS)
    assert p.steps[0].new == "600 65535"


def test_equal_parity_warns_different_does_not():
    p = plan_range(15000, 65000, facts=linux_facts(), sockets=NO_SOCKETS)
    assert any("parity" in w for w in p.warnings)
    p = plan_range(15000, 64999, facts=linux_facts(), sockets=NO_SOCKETS)
    assert not any("parity" in w for w in p.warnings)


def test_listeners_inside_new_range_warn_unless_reserved():
    socks = SocketFacts({8080: "tcp", 20000: "tcp", 20001: "udp", 30000: "tcp"}, frozenset())
    p = plan_range(15000, 64999, facts=linux_facts(reserved="30000"), sockets=socks)
    w = " ".join(p.warnings)
    assert "20000-20001" in w and "portscope reserve add 20000-20001" in w
    assert "8080" not in w and "30000" not in w       # outside the range / already reserved
    p = plan_range(15000, 64999, facts=linux_facts(reserved="30000"), sockets=socks, reserve_listeners=True)
    assert [s.key for s in p.steps] == [linux.RESERVED_KEY, linux.RANGE_KEY]   # reserve first
    assert p.steps[0].old == "30000" and p.steps[0].new == "20000-20001,30000"
    assert not any("would fall inside" in w for w in p.warnings)


def test_refuses_to_shrink_below_ephemeral_ports_in_use():
    socks = SocketFacts({}, frozenset(range(40000, 40030)))
    with pytest.raises(BadInput) as e:
        plan_range(50000, 50019, facts=linux_facts(), sockets=socks)
    assert "--force" in str(e.value) and "30" in str(e.value)
    p = plan_range(50000, 50019, facts=linux_facts(), sockets=socks, force=True)
    assert p.steps and any("--force" in w for w in p.warnings)
    # reserved ports inside the new range count against it
    with pytest.raises(BadInput):
        plan_range(50000, 50039, facts=linux_facts(reserved="50000-50019"), sockets=socks)
    assert plan_range(50000, 50039, facts=linux_facts(), sockets=socks).steps


def test_same_range_is_a_no_op():
    p = plan_range(32768, 60999, facts=linux_facts(), sockets=NO_SOCKETS)
    assert not p.steps and not p.changes_anything and "nothing to change" in p.notes[-1]


def test_dry_run_commands_are_exact_and_netns_aware():
    p = plan_range(15000, 64999, facts=linux_facts(netns="blue"), sockets=NO_SOCKETS)
    assert p.commands() == ["ip netns exec blue sysctl -w 'net.ipv4.ip_local_port_range=15000 64999'"]
    p = plan_range(15000, 64999, facts=linux_facts(netns="pid:42"), sockets=NO_SOCKETS)
    assert p.commands() == ["nsenter --net=/proc/42/ns/net sysctl -w 'net.ipv4.ip_local_port_range=15000 64999'"]


@pytest.mark.parametrize("op,ports,old,new", [
    ("add", "8080,9000-9010", "", "8080,9000-9010"),
    ("add", "9005-9020", "8080,9000-9010", "8080,9000-9020"),
    ("add", "8080", "8080,9000-9010", None),
    ("remove", "9005", "8080,9000-9010", "8080,9000-9004,9006-9010"),
    ("remove", "8080,9000-9010", "8080,9000-9010", ""),
    ("remove", "7000", "8080", None),
])
def test_reserve_keeps_existing_entries(op, ports, old, new):
    p = plan_reserve(op, ports, facts=linux_facts(reserved=old))
    if new is None:
        assert not p.steps
    else:
        (s,) = p.steps
        assert (s.old, s.new) == (old, new)
    if op == "remove" and ports == "7000":
        assert any("not reserved" in w for w in p.warnings)


@pytest.mark.parametrize("ports", ["1-2-3", "", "abc", "70000", "5-", ",", "9-3"])
def test_reserve_bad_ports(ports):
    with pytest.raises(BadInput) as e:
        plan_reserve("add", ports, facts=linux_facts())
    assert "\n" not in str(e.value)


def test_reserve_is_linux_only():
    f = bsd.facts_from_sysctl(sample("darwin_sysctl_portrange.txt"), "darwin")
    with pytest.raises(Unsupported) as e:
        plan_reserve("add", "8080", facts=f)
    assert e.value.exit_code == 4


# ------------------------------------------------------------------ persistence (files only)

def test_persist_writes_a_drop_in_and_keeps_other_lines(tmp_path):
    existing = "# mine\nnet.core.somaxconn = 4096\nnet.ipv4.ip_local_port_range=1 2\n"
    (tmp_path / sysctld.DROPIN_NAME).write_text(existing)
    p = plan_range(15000, 64999, facts=linux_facts(), sockets=NO_SOCKETS, persist=True, sysctl_dir=str(tmp_path))
    assert p.persist.old == existing
    assert p.persist.new == "# mine\nnet.core.somaxconn = 4096\nnet.ipv4.ip_local_port_range = 15000 64999\n"
    atomic_write(p.persist.path, p.persist.new)
    assert (tmp_path / sysctld.DROPIN_NAME).read_text() == p.persist.new
    assert [x.name for x in tmp_path.iterdir()] == [sysctld.DROPIN_NAME]    # no temp file left


def test_persist_warns_about_a_later_file_that_wins(tmp_path):
    (tmp_path / "99-sysctl.conf").write_text("net.ipv4.ip_local_port_range = 1024 65000\n")
    (tmp_path / "10-early.conf").write_text("net.ipv4.ip_local_port_range = 1024 65000\n")
    p = plan_range(15000, 64999, facts=linux_facts(), sockets=NO_SOCKETS, persist=True, sysctl_dir=str(tmp_path))
    assert len(p.warnings) == 1 and "99-sysctl.conf" in p.warnings[0]


def test_persist_with_netns_is_refused(tmp_path):
    with pytest.raises(BadInput) as e:
        plan_range(15000, 64999, facts=linux_facts(netns="x"), sockets=NO_SOCKETS, persist=True,
                   sysctl_dir=str(tmp_path))
    assert "--netns" in str(e.value)


def test_persist_dir_must_exist(tmp_path):
    with pytest.raises(BadInput):
        plan_reserve("add", "8080", facts=linux_facts(), persist=True, sysctl_dir=str(tmp_path / "nope"))


def test_persist_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(sysctld.SYSCTL_DIR_ENV, str(tmp_path))
    p = plan_reserve("add", "8080", facts=linux_facts(), persist=True)
    assert p.persist.path == str(tmp_path / sysctld.DROPIN_NAME)
    assert "net.ipv4.ip_local_reserved_ports = 8080" in p.persist.new


# ------------------------------------------------------------------ native commands through fake OSes

class FakeBsd:
    """Behaves like `sysctl` on macOS: prints `name: value`, `-w k=v` sets."""

    def __init__(self, text, fail_on_set=None, lie=False):
        self.values = bsd.parse_sysctl(text)
        self.sets = 0
        self.fail_on_set = fail_on_set
        self.lie = lie
        self.calls = []

    def __call__(self, argv):
        argv = tuple(argv)
        self.calls.append(argv)
        if argv == bsd.READ_ARGV:
            return "".join(f"{bsd.PREFIX}{k}: {v}\n" for k, v in self.values.items())
        if argv in (bsd.MSL_ARGV, bsd.OSRELEASE_ARGV):   # read with the range; absent here
            raise SystemReadError(f"sysctl: unknown oid '{argv[1]}'")
        assert argv[:2] == ("sysctl", "-w"), argv
        self.sets += 1
        if self.sets == self.fail_on_set:
            raise SystemReadError("sysctl: net.inet.ip.portrange.last: Operation not permitted")
        k, v = argv[2].split("=")
        self.values[k[len(bsd.PREFIX):]] = int(v) + (1 if self.lie else 0)
        return ""


class FakeWindows:
    """Behaves like netsh: English output, `set dynamic` changes one protocol/family."""

    def __init__(self, fail_on_set=None):
        self.ranges = {(f, p): PortRange(49152, 65535) for f in windows.FAMILIES for p in windows.PROTOS}
        self.sets = 0
        self.fail_on_set = fail_on_set
        self.calls = []

    def __call__(self, argv):
        argv = tuple(argv)
        self.calls.append(argv)
        if argv == windows.TIMED_WAIT_ARGV:   # read with the ranges; not set here, so reg exits 1
            raise SystemReadError("ERROR: The system was unable to find the specified registry key or value.")
        _, _, fam, verb, what, *rest = argv
        if verb == "show" and what == "dynamicport":
            r = self.ranges[(fam, rest[0])]
            return sample(f"windows_en_{fam}_dynamicport_{rest[0]}.txt").replace("49152", str(r.low)).replace(
                "16384", str(r.size))
        if verb == "show" and what == "excludedportrange":
            return sample(f"windows_en_{fam}_excludedportrange_{rest[0].split('=')[1]}.txt")
        assert verb == "set" and what == "dynamic", argv
        self.sets += 1
        if self.sets == self.fail_on_set:
            raise NotPermitted("netsh: The requested operation requires elevation (Run as administrator).")
        start = int(rest[1].split("=")[1])
        num = int(rest[2].split("=")[1])
        self.ranges[(fam, rest[0])] = PortRange(start, start + num - 1)
        return "Ok.\r\n"


def test_macos_range_set_builds_sysctl_w_and_reads_back():
    fake = FakeBsd(sample("darwin_sysctl_portrange.txt"))
    f = bsd.read_facts("darwin", fake)
    p = plan_range(32768, 60999, facts=f)
    assert p.commands() == ["sysctl -w net.inet.ip.portrange.first=32768",
                            "sysctl -w net.inet.ip.portrange.last=60999"]
    r = apply(p, runner=fake)
    assert r.after.ephemeral == PortRange(32768, 60999)
    assert fake.values["first"] == 32768 and fake.values["last"] == 60999
    assert fake.values["hifirst"] == 49152        # untouched


def test_freebsd_moving_the_range_up_sets_last_first():
    fake = FakeBsd(sample("freebsd_sysctl_portrange.txt").replace("portrange.last: 65535", "portrange.last: 20000"))
    f = bsd.read_facts("freebsd", fake)
    assert f.ephemeral == PortRange(10000, 20000)
    p = plan_range(30000, 40001, facts=f)
    assert [s.key.rsplit(".", 1)[1] for s in p.steps] == ["last", "first"]
    apply(p, runner=fake)
    assert (fake.values["first"], fake.values["last"]) == (30000, 40001)


def test_bsd_second_command_fails_first_is_undone():
    fake = FakeBsd(sample("darwin_sysctl_portrange.txt"), fail_on_set=2)
    before = dict(fake.values)
    p = plan_range(32768, 60999, facts=bsd.read_facts("darwin", fake))
    with pytest.raises(SystemReadError) as e:
        apply(p, runner=fake)
    assert "rolled back 1 change" in str(e.value)
    assert fake.values == before
    assert fake.calls[-2] == ("sysctl", "-w", "net.inet.ip.portrange.first=49152")   # the undo


def test_bsd_read_back_mismatch_is_rolled_back():
    fake = FakeBsd(sample("darwin_sysctl_portrange.txt"), lie=True)
    p = plan_range(32768, 60999, facts=bsd.read_facts("darwin", fake))
    with pytest.raises(SystemReadError) as e:
        apply(p, runner=fake)
    # the fake "lies" on every set, so the undo cannot be confirmed either: that must be said
    assert "read back" in str(e.value) and "ROLLBACK FAILED" in str(e.value)


def test_windows_range_set_all_four_then_read_back():
    fake = FakeWindows()
    f = windows.read_facts(fake)
    p = plan_range(10000, 59999, facts=f)
    assert p.commands() == [f"netsh int {fam} set dynamic {pr} start=10000 num=50000"
                            for fam in ("ipv4", "ipv6") for pr in ("tcp", "udp")]
    r = apply(p, runner=fake)
    assert {x.range for x in r.after.ranges} == {PortRange(10000, 59999)}


def test_windows_one_protocol_only():
    fake = FakeWindows()
    p = plan_range(10000, 59999, facts=windows.read_facts(fake), protos=["udp"])
    assert [s.key for s in p.steps] == ["ipv4/udp", "ipv6/udp"]


def test_windows_limits_checked_before_running():
    fake = FakeWindows()
    f = windows.read_facts(fake)
    for lo, hi in ((1024, 65535), (60000, 60100)):
        with pytest.raises(BadInput):
            plan_range(lo, hi, facts=f)
    assert not any(c[3] == "set" for c in fake.calls)


def test_windows_third_set_fails_first_two_are_undone():
    fake = FakeWindows(fail_on_set=3)
    p = plan_range(10000, 59999, facts=windows.read_facts(fake))
    with pytest.raises(NotPermitted) as e:
        apply(p, runner=fake)
    assert e.value.exit_code == 3 and "rolled back 2 change" in str(e.value)
    assert set(fake.ranges.values()) == {PortRange(49152, 65535)}


def test_native_persist_is_refused_on_windows():
    with pytest.raises(Unsupported):
        plan_range(10000, 59999, facts=windows.read_facts(FakeWindows()), persist=True)


def test_default_runner_maps_failures():
    with pytest.raises(Unsupported):
        _common.run_command(["no-such-command-portscope"])
    with pytest.raises(SystemReadError):
        _common.run_command([sys.executable, "-c", "import sys; sys.exit('boom')"])
    with pytest.raises(NotPermitted):
        _common.run_command([sys.executable, "-c", "import sys; sys.exit('Operation not permitted')"])
    assert _common.run_command([sys.executable, "-c", "print(7)"]) == "7\n"


# ------------------------------------------------------------------ live, inside a private namespace

class FailingSysctl(linux.LinuxSysctl):
    """Injects a failure into the Nth write."""

    def __init__(self, fail_on):
        self.fail_on = fail_on
        self.writes = 0

    def write(self, key, value):
        self.writes += 1
        if self.writes == self.fail_on:
            raise OSError(5, "injected I/O error")
        super().write(key, value)


def _listen(ns, port):
    code = ("import socket,sys,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1);"
            f"s.bind(('127.0.0.1',{port})); s.listen(); print('ready', flush=True); time.sleep(30)")
    return ns.start(code)


def test_live_range_set_in_namespace_reads_back_and_leaves_host_alone(netns):
    host = host_values()
    plan, res = settings.set_range(20000, 29999, netns=netns.name)
    assert res.read_back == {linux.RANGE_KEY: "20000 29999"}
    assert res.after.ephemeral == PortRange(20000, 29999)
    assert netns.sysctl("net.ipv4.ip_local_port_range").split() == ["20000", "29999"]
    assert host_values() == host


def test_live_rollback_when_second_write_fails(netns):
    netns.sysctl("net.ipv4.ip_local_reserved_ports", "7000")
    srv = _listen(netns, 25000)
    try:
        before = ns_values(netns)
        with pytest.raises(SystemReadError) as e:
            settings.set_range(20000, 29999, netns=netns.name, reserve_listeners=True, sysctl=FailingSysctl(2))
        assert "injected" in str(e.value) and "rolled back 1 change" in str(e.value)
        assert ns_values(netns) == before
        # the same change without the fault: the listener is reserved first, then the range moves
        plan, res = settings.set_range(20000, 29999, netns=netns.name, reserve_listeners=True)
        assert ns_values(netns) == ("20000\t29999", "7000,25000")
    finally:
        srv.kill()
        srv.wait()


def test_live_rollback_when_persisting_fails(netns, tmp_path):
    before = ns_values(netns)

    def broken_write(path, text):
        raise OSError(28, "No space left on device")

    plan = plan_reserve("add", "9000-9010", facts=linux.read_facts(netns.name))
    # persisting with --netns is refused, so build the file step by hand to reach apply()
    plan = plan.replace(persist=_common.FileWrite(str(tmp_path / "x.conf"), None, "k = v\n"))
    with pytest.raises(SystemReadError) as e:
        apply(plan, write_file=broken_write)
    assert "No space left" in str(e.value) and "rolled back 1 change" in str(e.value)
    assert ns_values(netns) == before and not (tmp_path / "x.conf").exists()


def test_live_kernel_refusal_is_bad_input(netns):
    # the kernel refuses LOW below ip_unprivileged_port_start: plan around our own check to see it
    f = linux.read_facts(netns.name)
    step = linux.step(linux.RANGE_KEY, f"{f.ephemeral.low} {f.ephemeral.high}", "100 200")
    plan = _common.Plan("linux", "range set", netns.name, f, (step,))
    before = ns_values(netns)
    with pytest.raises(BadInput) as e:
        apply(plan)
    assert "EINVAL" in str(e.value) and ns_values(netns) == before


def test_live_reserve_add_remove_keep_entries(netns):
    netns.sysctl("net.ipv4.ip_local_reserved_ports", "5000,6000-6010")
    settings.change_reserved("add", "8080,9000-9010", netns=netns.name)
    assert netns.sysctl("net.ipv4.ip_local_reserved_ports") == "5000,6000-6010,8080,9000-9010"
    settings.change_reserved("remove", "6005,9000-9010", netns=netns.name)
    assert netns.sysctl("net.ipv4.ip_local_reserved_ports") == "5000,6000-6004,6006-6010,8080"
    settings.change_reserved("remove", "5000,6000-6010,8080", netns=netns.name)
    assert netns.sysctl("net.ipv4.ip_local_reserved_ports") == ""


def test_live_socket_checks_use_the_namespace_sockets(netns):
    """30 open client connections: a 20-port range is refused, --force does it."""
    import subprocess
    code = ("import socket,time; s=socket.socket(); s.bind(('127.0.0.1',5000)); s.listen(64);"
            "cs=[socket.create_connection(('127.0.0.1',5000)) for _ in range(30)];"
            "a=[s.accept() for _ in range(30)]; print('ready', flush=True); time.sleep(30)")
    p = netns.popen(sys.executable, "-c", code, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        before = ns_values(netns)
        with pytest.raises(BadInput) as e:
            settings.set_range(40000, 40019, netns=netns.name)
        assert "30 ephemeral ports are in use" in str(e.value)
        assert ns_values(netns) == before
        plan, res = settings.set_range(40000, 40019, netns=netns.name, force=True)
        assert res.after.ephemeral == PortRange(40000, 40019)
        # the listener on 5000 sits outside both ranges; moving the range over it warns
        plan, _ = settings.set_range(4000, 5999, netns=netns.name, dry_run=True)
        assert any("5000" in w and "reserve add 5000" in w for w in plan.warnings)
    finally:
        p.kill()
        p.wait()


def test_bsd_persist_edits_sysctl_conf(tmp_path):
    (tmp_path / "sysctl.conf").write_text("kern.ipc.somaxconn=1024\nnet.inet.ip.portrange.first=20000\n")
    fake = FakeBsd(sample("freebsd_sysctl_portrange.txt"))
    p = plan_range(30000, 60999, facts=bsd.read_facts("freebsd", fake), persist=True, sysctl_dir=str(tmp_path))
    r = apply(p, runner=fake)
    assert r.persisted == str(tmp_path / "sysctl.conf")
    assert (tmp_path / "sysctl.conf").read_text() == (
        "kern.ipc.somaxconn=1024\nnet.inet.ip.portrange.first=30000\nnet.inet.ip.portrange.last=60999\n")


def test_proto_option_is_windows_only():
    with pytest.raises(BadInput):
        plan_range(20000, 29999, facts=linux_facts(), sockets=NO_SOCKETS, protos=["tcp"])


def test_live_value_changed_after_planning_is_not_overwritten(netns):
    plan = plan_range(20000, 29999, facts=linux.read_facts(netns.name), sockets=NO_SOCKETS)
    netns.sysctl("net.ipv4.ip_local_port_range", "40000 49999")     # someone else, meanwhile
    with pytest.raises(SystemReadError) as e:
        apply(plan)
    assert "changed since it was read" in str(e.value) and "nothing was changed" in str(e.value)
    assert netns.sysctl("net.ipv4.ip_local_port_range") == "40000\t49999"


def test_live_ctrl_c_between_writes_is_rolled_back(netns):
    class Interrupt(linux.LinuxSysctl):
        n = 0

        def write(self, key, value):
            self.n += 1
            if self.n == 2:
                raise KeyboardInterrupt
            super().write(key, value)

    f = linux.read_facts(netns.name)
    socks = SocketFacts({25000: "tcp"}, frozenset())
    plan = plan_range(20000, 29999, facts=f, sockets=socks, reserve_listeners=True)
    before = ns_values(netns)
    with pytest.raises(KeyboardInterrupt):
        apply(plan, sysctl=Interrupt())
    assert ns_values(netns) == before


class FakeWindowsExclusions(FakeWindows):
    """netsh with a live exclusion table: add/delete excludedportrange, shown as netsh prints it."""

    def __init__(self, fail_on_set=None):
        super().__init__(fail_on_set)
        self.excl = {(f, p): {} for f in windows.FAMILIES for p in windows.PROTOS}   # (lo, hi) -> administered
        self.excl[("ipv4", "tcp")] = {(5357, 5357): False, (50000, 50059): True}

    def __call__(self, argv):
        argv = tuple(argv)
        _, _, fam, verb, what, *rest = argv
        if what != "excludedportrange":
            return super().__call__(argv)
        self.calls.append(argv)
        proto = rest[0].split("=")[1]
        table = self.excl[(fam, proto)]
        if verb == "show":
            rows = "".join(f"{lo:>10}  {hi:>10}{'     *' if adm else ''}\n" for (lo, hi), adm in sorted(table.items()))
            return (f"\nProtocol {proto} Port Exclusion Ranges\n\nStart Port    End Port\n----------    --------\n"
                    f"{rows}\n* - Administered port exclusions.\n\n").replace("\n", "\r\n")
        self.sets += 1
        if self.sets == self.fail_on_set:
            raise SystemReadError("netsh: The process cannot access the file because it is being used by another process.")
        lo = int(rest[1].split("=")[1])
        hi = lo + int(rest[2].split("=")[1]) - 1
        if verb == "add":
            table[(lo, hi)] = True
        else:
            assert table.pop((lo, hi)), "netsh deletes administered exclusions only"
        return "Ok.\r\n"


def test_windows_reserve_add_is_per_protocol_and_family():
    fake = FakeWindowsExclusions()
    plan, res = settings.change_reserved("add", "8080,50010-50100", facts=windows.read_facts(fake), runner=fake)
    cmds = plan.commands()
    assert "netsh int ipv4 add excludedportrange protocol=tcp startport=8080 numberofports=1" in cmds
    # tcp/ipv4 already excludes 50000-50059: only the rest is added there
    assert "netsh int ipv4 add excludedportrange protocol=tcp startport=50060 numberofports=41" in cmds
    assert "netsh int ipv6 add excludedportrange protocol=udp startport=50010 numberofports=91" in cmds
    sets = {s.name: s.ports for s in res.after.reserved_sets}
    assert sets["tcp/ipv4"] == PortSet.parse("5357,8080,50000-50100")
    assert sets["udp/ipv6"] == PortSet.parse("8080,50010-50100")


def test_windows_reserve_remove_splits_administered_and_keeps_system_ones():
    fake = FakeWindowsExclusions()
    plan, res = settings.change_reserved("remove", "5357,50020-50029", facts=windows.read_facts(fake),
                                       runner=fake, protos=["tcp"])
    assert any("5357 excluded by the system" in w for w in plan.warnings)
    assert plan.commands() == [
        "netsh int ipv4 delete excludedportrange protocol=tcp startport=50000 numberofports=60",
        "netsh int ipv4 add excludedportrange protocol=tcp startport=50000 numberofports=20",
        "netsh int ipv4 add excludedportrange protocol=tcp startport=50030 numberofports=30"]
    assert fake.excl[("ipv4", "tcp")] == {(5357, 5357): False, (50000, 50019): True, (50030, 50059): True}


def test_windows_reserve_failure_half_way_restores_exclusions():
    fake = FakeWindowsExclusions(fail_on_set=3)
    before = {k: dict(v) for k, v in fake.excl.items()}
    with pytest.raises(SystemReadError) as e:
        settings.change_reserved("remove", "50020-50029", facts=windows.read_facts(fake), runner=fake)
    assert "rolled back 2 change" in str(e.value)
    assert fake.excl == before
