"""Every host backend returns the same HostFacts shape: Linux live, the others from
recorded command output (tests/samples, see its README for where each came from)."""
from __future__ import annotations

import os
import subprocess

import pytest

from conftest import SAMPLES, sample
from portscope.errors import SystemReadError
from portscope.host import HostFacts, NamedRange, NamedSet, as_dict, bsd, linux, windows
from portscope.ports import PortRange, PortSet
from portscope.value import FrozenError

def windows_outputs(lang: str):
    dyn = {(f, p): sample(f"windows_{lang}_{f}_dynamicport_{p}.txt")
           for f in windows.FAMILIES for p in windows.PROTOS}
    exc = {}
    for f in windows.FAMILIES:
        for p in windows.PROTOS:
            for lg in (lang, "en"):
                path = os.path.join(SAMPLES, f"windows_{lg}_{f}_excludedportrange_{p}.txt")
                if os.path.exists(path):
                    exc[(f, p)] = sample(os.path.basename(path))
                    break
    return dyn, exc


class RecordedRunner:
    """Answers each command with the recorded output; fails on anything unexpected."""

    def __init__(self, outputs: dict):
        self.outputs = {tuple(k): v for k, v in outputs.items()}
        self.calls = []

    def __call__(self, argv):
        self.calls.append(tuple(argv))
        out = self.outputs[tuple(argv)]
        if isinstance(out, Exception):   # the command failed (run_command raises)
            raise out
        return out


def failed(argv, sample_name):
    """What run_command raises when `argv` exits non-zero printing the recorded text."""
    return SystemReadError(f"`{' '.join(argv)}` failed: {' '.join(sample(sample_name).split())}")


def _win_runner(lang, timed_wait="absent"):
    dyn, exc = windows_outputs(lang)
    out = {windows.dynamic_argv(f, p): t for (f, p), t in dyn.items()}
    out.update({windows.excluded_argv(f, p): t for (f, p), t in exc.items()})
    name = f"windows_reg_tcptimedwaitdelay_{timed_wait}.txt"
    out[windows.TIMED_WAIT_ARGV] = (sample(name) if timed_wait == "present"
                                    else failed(windows.TIMED_WAIT_ARGV, name))
    return RecordedRunner(out)


def _bsd_runner(osname, msl=True, release="mojave"):
    out = {bsd.READ_ARGV: sample(f"{osname}_sysctl_portrange.txt"),
           bsd.MSL_ARGV: (sample(f"{osname}_sysctl_tcp_msl.txt") if msl
                          else SystemReadError("`sysctl net.inet.tcp.msl` failed: unknown oid"))}
    if osname == "darwin":
        out[bsd.OSRELEASE_ARGV] = (sample(f"darwin_sysctl_osrelease_{release}.txt") if release
                                   else SystemReadError("`sysctl kern.osrelease` failed: unknown oid"))
    return RecordedRunner(out)


BACKENDS = {
    "linux-live": lambda: linux.read_facts(),            # this host: marked live below
    "darwin": lambda: bsd.read_facts("darwin", _bsd_runner("darwin")),
    "darwin-10.13": lambda: bsd.read_facts("darwin", _bsd_runner("darwin", release="high_sierra")),
    "darwin-sysctl-a": lambda: bsd.facts_from_sysctl(sample("darwin_sysctl_a_excerpt.txt"), "darwin"),
    "freebsd": lambda: bsd.read_facts("freebsd", _bsd_runner("freebsd")),
    "freebsd-no-msl": lambda: bsd.read_facts("freebsd", _bsd_runner("freebsd", msl=False)),
    "freebsd12": lambda: bsd.facts_from_sysctl(sample("freebsd12_sysctl_excerpt.txt"), "freebsd"),
    "windows-en": lambda: windows.read_facts(_win_runner("en")),
    "windows-fr": lambda: windows.read_facts(_win_runner("fr")),
    "windows-de": lambda: windows.read_facts(_win_runner("de")),
    "windows-timed-wait-set": lambda: windows.read_facts(_win_runner("en", "present")),
}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.live) if n == "linux-live" else n
                                  for n in BACKENDS])
def test_every_backend_returns_the_same_shape(name):
    f = BACKENDS[name]()
    assert type(f) is HostFacts
    assert f.os in ("linux", "darwin", "freebsd", "windows")
    assert isinstance(f.ephemeral, PortRange) and isinstance(f.os_default, PortRange)
    assert isinstance(f.reserved, PortSet)
    assert isinstance(f.unprivileged_port_start, int) and 0 <= f.unprivileged_port_start <= 65536
    assert f.ranges and all(isinstance(r, NamedRange) for r in f.ranges)
    assert all(isinstance(s, NamedSet) for s in f.reserved_sets)
    # the headline range is always one of the listed ranges
    assert f.ephemeral in [r.range for r in f.ranges]
    assert f.sources
    d = as_dict(f)
    assert set(d) >= {"ephemeral", "reserved", "unprivileged_port_start", "ranges", "comparison"}
    assert d["ephemeral"] == {"low": f.ephemeral.low, "high": f.ephemeral.high, "size": f.ephemeral.size}
    assert PortSet.parse(d["reserved"]) == f.reserved
    # frozen: callers may share it
    with pytest.raises(FrozenError):
        f.os = "x"


@pytest.mark.live
def test_linux_live_matches_sysctl_command():
    f = linux.read_facts()
    out = subprocess.run(["sysctl", "-n", "net.ipv4.ip_local_port_range", "net.ipv4.ip_local_reserved_ports",
                          "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_fin_timeout"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    lo, hi = map(int, out[0].split())
    assert (f.ephemeral.low, f.ephemeral.high) == (lo, hi)
    assert f.reserved == PortSet.parse(out[1])
    assert f.unprivileged_port_start == int(out[2])
    assert f.tcp_tw_reuse == int(out[3])
    assert f.tcp_fin_timeout == int(out[4])
    assert f.ephemeral.size == hi - lo + 1


def test_darwin_values():
    f = BACKENDS["darwin"]()
    assert f.ephemeral == PortRange(49152, 65535) == f.os_default
    names = {r.name: r.range for r in f.ranges}
    assert names == {"default": PortRange(49152, 65535), "hi": PortRange(49152, 65535), "low": PortRange(600, 1023)}
    assert f.unprivileged_port_start == 1024 and not f.reserved
    assert as_dict(f)["comparison"].startswith("Same as IANA")


def test_sysctl_a_noise_is_ignored():
    # the same port settings; that capture lacks the msl and osrelease lines read separately
    full = BACKENDS["darwin"]()
    assert BACKENDS["darwin-sysctl-a"]() == full.replace(tcp_msl_ms=None, os_release=None)


def test_freebsd_values_and_privileged_window():
    f = BACKENDS["freebsd"]()
    assert f.ephemeral == PortRange(10000, 65535) == f.os_default
    assert f.ephemeral.size == 55536
    assert f.unprivileged_port_start == 1024 and f.privileged_low == 0
    # reservedhigh=0 (as in the recorded `1023 -> 0` change) turns privileged ports off
    text = sample("freebsd_sysctl_portrange.txt").replace("reservedhigh: 1023", "reservedhigh: 0")
    assert bsd.facts_from_sysctl(text, "freebsd").unprivileged_port_start == 1


def test_sysctl_change_output_takes_the_new_value():
    assert bsd.parse_sysctl(sample("freebsd_sysctl_set_reservedhigh.txt")) == {"reservedlow": 0, "reservedhigh": 0}


def test_freebsd12_without_reserved_keys_falls_back_to_ipport_reserved():
    f = BACKENDS["freebsd12"]()
    assert f.ephemeral == PortRange(10000, 65535)
    assert f.unprivileged_port_start == 1024
    assert "IPPORT_RESERVED" in f.sources["unprivileged_port_start"]


@pytest.mark.parametrize("lang", ["en", "fr", "de"])
def test_windows_reads_numbers_not_labels(lang):
    f = BACKENDS[f"windows-{lang}"]()
    got = {r.name: r.range for r in f.ranges}
    assert set(got) == {"tcp/ipv4", "udp/ipv4", "tcp/ipv6", "udp/ipv6"}
    if lang == "de":
        assert got["tcp/ipv4"] == PortRange(1024, 65534) and got["tcp/ipv4"].size == 64511
        assert got["udp/ipv4"] == PortRange(49152, 65535)
    else:
        assert all(r == PortRange(49152, 65535) for r in got.values())
    assert f.ephemeral == got["tcp/ipv4"]
    assert f.unprivileged_port_start == 0
    assert {r.proto for r in f.ranges} == {"tcp", "udp"} and {r.family for r in f.ranges} == {4, 6}


def test_windows_exclusions_and_administered_mark():
    f = BACKENDS["windows-en"]()
    sets = {s.name: s for s in f.reserved_sets}
    assert sets["tcp/ipv4"].ports == PortSet.parse("5357,50000-50059")
    assert sets["tcp/ipv4"].administered == PortSet.parse("50000-50059")
    assert sets["tcp/ipv6"].ports == PortSet.parse("5357")
    assert not sets["udp/ipv4"].ports
    assert f.reserved == sets["tcp/ipv4"].ports
    fr = BACKENDS["windows-fr"]()
    assert fr.reserved == PortSet.parse("1080-1179,5357,50000-50059")
    d = as_dict(fr)
    assert {s["name"] for s in d["reserved_sets"]} == {"tcp/ipv4", "udp/ipv4", "tcp/ipv6", "udp/ipv6"}


@pytest.mark.parametrize("text", [
    "",
    "Protocol tcp Dynamic Port Range\n------\nStart Port : 49152\n",          # count missing
    "Start Port : 65000\nNumber of Ports : 16384\n",                        # ends above 65535
    "Start Port : 49152\nNumber of Ports : 0\n",
    "Start Port : abc\nNumber of Ports : 16384\n",
])
def test_malformed_netsh_is_a_one_line_error(text):
    with pytest.raises(SystemReadError) as e:
        windows.parse_dynamicport(text)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text", ["", "net.inet.ip.portrange.first: 49152\n",
                                  "net.inet.ip.portrange.first: 70000\nnet.inet.ip.portrange.last: 80000\n"])
def test_malformed_bsd_sysctl_is_a_one_line_error(text):
    with pytest.raises(SystemReadError) as e:
        bsd.facts_from_sysctl(text, "darwin")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name,text", [
    ("ip_local_port_range", "abc def"), ("ip_local_port_range", "40000"), ("ip_local_port_range", "5 70000"),
    ("ip_local_port_range", "2000 1000"), ("ip_local_reserved_ports", "1-2-3"), ("ip_local_reserved_ports", "x"),
    ("ip_unprivileged_port_start", "ten"),
])
def test_malformed_procfs_values_are_one_line_errors(monkeypatch, tmp_path, name, text):
    # a fake /proc/sys/net/ipv4 holding one bad value among good ones
    good = {"ip_local_port_range": "32768\t60999\n", "ip_local_reserved_ports": "\n",
            "ip_unprivileged_port_start": "1024\n"}
    good[name] = text + "\n"
    for k, v in good.items():
        (tmp_path / k).write_text(v)
    monkeypatch.setattr(linux, "SYSCTL_DIR", str(tmp_path))
    with pytest.raises(SystemReadError) as e:
        linux.read_facts()
    assert name in str(e.value) and "\n" not in str(e.value)


def test_missing_optional_knobs_use_kernel_defaults(monkeypatch, tmp_path):
    (tmp_path / "ip_local_port_range").write_text("32768\t60999\n")
    (tmp_path / "ip_local_reserved_ports").write_text("8080,9000-9010\n")
    monkeypatch.setattr(linux, "SYSCTL_DIR", str(tmp_path))
    f = linux.read_facts()
    assert f.unprivileged_port_start == 1024 and f.tcp_tw_reuse is None
    assert f.reserved == PortSet.parse("8080,9000-9010")
    assert as_dict(f)["usable_ephemeral"] == 28232   # all reserved ports lie below the range


def test_iana_comparison_numbers():
    d = as_dict(linux.read_facts().replace(ephemeral=PortRange(32768, 60999)))
    assert d["ephemeral"]["size"] == 28232
    assert d["overlap_with_iana_dynamic"] == 60999 - 49152 + 1
    assert "16,384 of yours lie below 49152" in d["comparison"]
    assert "4,536 ports of IANA's dynamic range" in d["comparison"]


# -- TIME_WAIT: read where the system exposes it, a named default where it does not ----------

@pytest.mark.parametrize("name,seconds,read", [
    ("linux-live", 60, False),               # TCP_TIMEWAIT_LEN: a constant, nothing to read
    ("freebsd", 60, True),                   # 2 x net.inet.tcp.msl (30000 ms)
    ("freebsd-no-msl", 60, False),
    ("darwin", 30, True),                    # 2 x 15000 ms
    ("darwin-sysctl-a", 30, False),          # that capture has no net.inet.tcp.msl line
    ("windows-en", 120, False),              # TcpTimedWaitDelay not set: reg query exits 1
    ("windows-timed-wait-set", 30, True),    # 0x1e
])
def test_time_wait_is_read_or_labelled_default(name, seconds, read):
    f = BACKENDS[name]()
    assert f.time_wait_seconds == seconds
    src = f.time_wait_source
    assert src.startswith("read:") == read
    if not read:
        assert src.startswith(("default, not read:", "fixed:"))
    d = as_dict(f)
    assert d["time_wait_seconds"] == seconds and d["time_wait_source"] == src


def test_time_wait_follows_the_value_read():
    text = sample("freebsd_sysctl_portrange.txt") + "net.inet.tcp.msl: 7500\n"
    f = bsd.facts_from_sysctl(text, "freebsd")
    assert (f.tcp_msl_ms, f.time_wait_seconds) == (7500, 15)
    assert f.sources["tcp_msl_ms"] == "sysctl net.inet.tcp.msl"
    # `sysctl name=value` prints old -> new: the new value counts
    f = bsd.facts_from_sysctl(sample("freebsd_sysctl_portrange.txt") + "net.inet.tcp.msl: 30000 -> 5000\n",
                              "freebsd")
    assert f.time_wait_seconds == 10


def test_windows_timed_wait_delay_parsing():
    assert windows.parse_timed_wait_delay(sample("windows_reg_tcptimedwaitdelay_present.txt")) == 30
    assert windows.parse_timed_wait_delay(sample("windows_reg_tcptimedwaitdelay_absent.txt")) is None
    assert windows.parse_timed_wait_delay("    TcpTimedWaitDelay    REG_DWORD    0xF0\r\n") == 240
    runner = _win_runner("en", "present")
    f = windows.read_facts(runner)
    assert windows.TIMED_WAIT_ARGV in runner.calls
    assert f.sources["tcp_timed_wait_delay"].startswith("reg query HKLM\\SYSTEM")


def test_macos_version_decides_the_wildcard_rule():
    new, old = BACKENDS["darwin"](), BACKENDS["darwin-10.13"]()
    assert (new.os_release, new.wildcard_bind_unprivileged) == ("18.7.0", True)
    assert (old.os_release, old.wildcard_bind_unprivileged) == ("17.7.0", False)
    assert new.unprivileged_port_start == old.unprivileged_port_start == 1024
    # unread version: every macOS still supported is 10.14+, and the source says it was assumed
    f = bsd.read_facts("darwin", _bsd_runner("darwin", release=None))
    assert f.wildcard_bind_unprivileged and f.os_release is None
    assert f.sources["os_release"].startswith("not read")
    # FreeBSD has no such exemption whatever it prints
    assert not BACKENDS["freebsd"]().wildcard_bind_unprivileged
