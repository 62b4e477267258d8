"""`portscope range`, `range set` and `reserve` end to end: JSON contract, every bad
input of issue 2 (one line, exit code, nothing changed), netns by name and pid,
`ip netns exec`, persistence and the unprivileged writer. All writes happen in
the `netns` fixture's private namespace."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from portscope import host as phost
from portscope.host import linux
from portscope.ports import PortSet

from conftest import PYTHON_M as PS
from conftest import host_values, ns_values, sample

NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("portscope: error: ") and "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------ showing

@pytest.mark.live
def test_range_json_contract_matches_the_kernel(cli):
    code, out, err = cli("range", "--json")
    assert code == 0, err
    d = json.loads(out)
    lo, hi = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    assert d["ephemeral"] == {"low": lo, "high": hi, "size": hi - lo + 1}
    assert PortSet.parse(d["reserved"]) == PortSet.parse(open("/proc/sys/net/ipv4/ip_local_reserved_ports").read())
    assert d["unprivileged_port_start"] == int(open("/proc/sys/net/ipv4/ip_unprivileged_port_start").read())
    assert d["ranges"] == [{"name": "default", "low": lo, "high": hi, "size": hi - lo + 1,
                            "proto": None, "family": None}]
    assert d["iana_dynamic"] == {"low": 49152, "high": 65535, "size": 16384}
    # the global flag works the same
    code, out2, _ = cli("--json", "range")
    assert code == 0 and json.loads(out2)["ephemeral"] == d["ephemeral"]


def test_range_text_in_a_namespace(cli, netns):
    netns.sysctl("net.ipv4.ip_local_port_range", "20000 29999")
    netns.sysctl("net.ipv4.ip_local_reserved_ports", "25000-25009")
    code, out, err = cli("range", "--netns", netns.name)
    assert code == 0, err
    assert f"Ephemeral range in netns {netns.name}: 20000-29999 (10,000 ports" in out
    assert "Reserved ports: 25000-25009 (10 ports, 10 inside the range; 9,990 usable)" in out
    assert "IANA" in out and "below 1024" in out
    code, out, _ = cli("--netns", netns.name, "reserve", "--json")
    d = json.loads(out)
    assert (d["reserved"], d["count"], d["in_range"], d["usable_ephemeral"]) == ("25000-25009", 10, 10, 9990)


def test_range_json_on_other_oses(cli, monkeypatch):
    from portscope.host import bsd      # only the running OS's backend is imported by the package
    f = bsd.facts_from_sysctl(sample("freebsd_sysctl_portrange.txt"), "freebsd")
    monkeypatch.setattr(phost, "host_facts", lambda netns=None: f)
    code, out, err = cli("range", "--json")
    d = json.loads(out)
    assert d["os"] == "freebsd" and d["ephemeral"] == {"low": 10000, "high": 65535, "size": 55536}
    assert {r["name"] for r in d["ranges"]} == {"default", "hi", "low"}
    code, out, err = cli("range")
    assert "Privileged ports: 0-1023 (binding needs root)" in out


# ------------------------------------------------------------------ bad inputs: one line, exit code, nothing changed

BAD = [
    (("range", "set", "70000", "80000"), 2, "1..65535"),
    (("range", "set", "100", "50"), 2, "above HIGH"),
    (("range", "set", "abc", "5"), 2, "integer"),
    (("range", "set", "-1", "5"), 2, "1..65535"),
    (("range", "set", "1000", "60999"), 2, "ip_unprivileged_port_start"),
    (("reserve", "add", "1-2-3"), 2, "1-2-3"),
    (("reserve", "remove", "x"), 2, "x"),
    (("reserve", "add", ""), 2, "no ports"),
    (("reserve", "add", "-5"), 2, "-5"),
    (("reserve", "add", "70000"), 2, "70000"),
]


@pytest.mark.parametrize("args,code,msg", BAD, ids=[" ".join(a) for a, _, _ in BAD])
def test_bad_input_changes_nothing(cli, netns, args, code, msg):
    netns.sysctl("net.ipv4.ip_local_reserved_ports", "7000")
    before, host = ns_values(netns), host_values()
    rc, out, err = cli(*args, "--netns", netns.name)
    assert rc == code
    assert msg in one_line_error(err)
    assert ns_values(netns) == before and host_values() == host


@pytest.mark.live                 # the host's settings are the evidence that nothing changed
@pytest.mark.parametrize("spec", ["no-such-ns-portscope", "pid:999999999", "pid:abc"])
def test_missing_netns(cli, spec):
    host = host_values()
    rc, out, err = cli("range", "set", "20000", "29999", "--netns", spec)
    assert rc == 2
    line = one_line_error(err)
    assert "does not exist" in line or "expected pid:PID" in line
    assert host_values() == host
    rc, out, err = cli("range", "--netns", spec)
    assert rc == 2


@pytest.mark.parametrize("args", [("range", "set", "20000", "29999"), ("reserve", "add", "8080")])
def test_non_root_writer_gets_exit_3(netns, args, nobody_portscope):
    before = ns_values(netns)
    p = netns.run(*NOBODY, *nobody_portscope, *args, check=False, cwd="/")
    assert p.returncode == 3, p.stderr
    assert "permission denied" in one_line_error(p.stderr)
    assert ns_values(netns) == before
    # naming the namespace needs CAP_SYS_ADMIN too: same exit code
    p = subprocess.run([*NOBODY, *nobody_portscope, *args, "--netns", netns.name], capture_output=True,
                       text=True, cwd="/")
    assert p.returncode == 3 and "run as root" in one_line_error(p.stderr)


def test_non_root_dry_run_is_allowed(netns, nobody_portscope):
    p = netns.run(*NOBODY, *nobody_portscope, "range", "set", "20000", "29999", "--dry-run", check=False, cwd="/")
    assert p.returncode == 0, p.stderr
    assert "sysctl -w 'net.ipv4.ip_local_port_range=20000 29999'" in p.stdout


@pytest.mark.parametrize("content,code", [("abc def", 2), ("40000", 2), (None, 2)])
def test_malformed_or_unreadable_procfs(cli, monkeypatch, tmp_path, content, code):
    (tmp_path / "ip_local_reserved_ports").write_text("\n")
    if content is None:
        (tmp_path / "ip_local_port_range").mkdir()       # unreadable: a directory, EISDIR
    else:
        (tmp_path / "ip_local_port_range").write_text(content + "\n")
    monkeypatch.setattr(linux, "SYSCTL_DIR", str(tmp_path))
    for args in (("range",), ("range", "set", "20000", "29999"), ("reserve", "add", "8080")):
        rc, out, err = cli(*args)
        assert rc == code and "ip_local_port_range" in one_line_error(err)


def test_unsupported_os_exit_4(cli, monkeypatch):
    monkeypatch.setattr(phost, "current_os", lambda: "sunos")
    rc, out, err = cli("range")
    assert rc == 4 and "unsupported" in one_line_error(err)
    from portscope.host import bsd
    f = bsd.facts_from_sysctl(sample("darwin_sysctl_portrange.txt"), "darwin")
    monkeypatch.setattr(phost, "host_facts", lambda netns=None: f)
    rc, out, err = cli("reserve", "add", "8080")
    assert rc == 4 and "Linux and Windows" in one_line_error(err)


# ------------------------------------------------------------------ writes in a namespace

def test_range_set_by_name_json(cli, netns):
    host = host_values()
    rc, out, err = cli("range", "set", "20000", "29999", "--netns", netns.name, "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["changed"] and not d["dry_run"]
    assert d["before"]["ephemeral"] == {"low": 32768, "high": 60999, "size": 28232}
    assert d["after"]["ephemeral"] == {"low": 20000, "high": 29999, "size": 10000}
    assert d["read_back"] == {"net.ipv4.ip_local_port_range": "20000 29999"}
    assert d["commands"] == [f"ip netns exec {netns.name} sysctl -w 'net.ipv4.ip_local_port_range=20000 29999'"]
    assert netns.sysctl("net.ipv4.ip_local_port_range") == "20000\t29999"
    assert host_values() == host


def test_range_set_by_pid(cli, netns):
    proc = netns.popen("sleep", "30")
    try:
        target = os.stat(f"/run/netns/{netns.name}").st_ino
        deadline = time.monotonic() + 20
        while os.stat(f"/proc/{proc.pid}/ns/net").st_ino != target and time.monotonic() < deadline:
            time.sleep(0.01)
        # until `ip netns exec` has entered the namespace, pid:PID names the host's own: the
        # change below must never run then
        assert os.stat(f"/proc/{proc.pid}/ns/net").st_ino == target, "sleep never entered the namespace"
        rc, out, err = cli("--netns", f"pid:{proc.pid}", "range", "set", "21000", "30999")
        assert rc == 0, err
        assert "Ephemeral range is now 21000-30999 (10,000 ports)." in out
        assert netns.sysctl("net.ipv4.ip_local_port_range") == "21000\t30999"
        rc, out, err = cli("range", "--json", "--netns", f"pid:{proc.pid}")
        assert json.loads(out)["ephemeral"]["low"] == 21000
    finally:
        proc.kill()
        proc.wait()


def test_dry_run_prints_and_changes_nothing(cli, netns):
    before = ns_values(netns)
    rc, out, err = cli("range", "set", "20000", "30000", "--dry-run", "--netns", netns.name)
    assert rc == 0
    assert f"ip netns exec {netns.name} sysctl -w 'net.ipv4.ip_local_port_range=20000 30000'" in out
    assert "same parity" in err
    rc, out, err = cli("reserve", "add", "8080", "--dry-run", "--json", "--netns", netns.name)
    d = json.loads(out)
    assert d["dry_run"] and not d["changed"] and d["after"] is None
    assert d["commands"] == [f"ip netns exec {netns.name} sysctl -w net.ipv4.ip_local_reserved_ports=8080"]
    assert ns_values(netns) == before


def test_reserve_cli_round_trip(cli, netns):
    netns.sysctl("net.ipv4.ip_local_reserved_ports", "5000")
    rc, out, err = cli("reserve", "add", "8080,9000-9010", "--netns", netns.name)
    assert rc == 0, err
    assert "Reserved now: 5000,8080,9000-9010" in out
    rc, out, err = cli("reserve", "remove", "9005,7777", "--netns", netns.name)
    assert rc == 0 and "not reserved, so nothing to remove: 7777" in err
    rc, out, err = cli("reserve", "list", "--json", "--netns", netns.name)
    assert json.loads(out)["reserved"] == "5000,8080,9000-9004,9006-9010"
    assert netns.sysctl("net.ipv4.ip_local_reserved_ports") == "5000,8080,9000-9004,9006-9010"
    # adding what is already there: says so, and nothing else
    rc, out, err = cli("reserve", "add", "8080", "--netns", netns.name)
    assert rc == 0 and "8080 already reserved; nothing to change" in out + err
    assert "outside the ephemeral range" not in out + err


def test_ip_netns_exec_with_persist(netns, tmp_path):
    """Inside the namespace (as a container would run it): change, persist, read back."""
    env = dict(os.environ, PORTSCOPE_SYSCTL_DIR=str(tmp_path))
    (tmp_path / "90-portscope.conf").write_text("# keep me\nnet.core.somaxconn = 4096\n")
    p = netns.run(*PS, "range", "set", "20000", "29999", "--persist", env=env, check=False)
    assert p.returncode == 0, p.stderr
    assert f"Persisted in {tmp_path}/90-portscope.conf" in p.stdout
    p = netns.run(*PS, "reserve", "add", "25000", "--persist", env=env, check=False)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "90-portscope.conf").read_text() == (
        "# keep me\nnet.core.somaxconn = 4096\nnet.ipv4.ip_local_port_range = 20000 29999\n"
        "net.ipv4.ip_local_reserved_ports = 25000\n")
    assert ns_values(netns) == ("20000\t29999", "25000")
    # the file is what `sysctl -p` understands: load it into a second fresh state and compare
    netns.sysctl("net.ipv4.ip_local_port_range", "32768 60999")
    netns.sysctl("net.ipv4.ip_local_reserved_ports", "")
    q = netns.run("sysctl", "-p", str(tmp_path / "90-portscope.conf"), check=False)
    assert q.returncode == 0, q.stderr
    assert ns_values(netns) == ("20000\t29999", "25000")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["90-portscope.conf"]


def test_persist_with_netns_flag_is_refused(cli, netns, tmp_path, monkeypatch):
    monkeypatch.setenv("PORTSCOPE_SYSCTL_DIR", str(tmp_path))
    before = ns_values(netns)
    rc, out, err = cli("range", "set", "20000", "29999", "--persist", "--netns", netns.name)
    assert rc == 2 and "--netns" in one_line_error(err)
    assert ns_values(netns) == before and not list(tmp_path.iterdir())


def test_listener_warning_and_reserve_listeners(cli, netns):
    code = ("import socket,time; s=socket.socket(); s.bind(('0.0.0.0',25000)); s.listen();"
            "u=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('0.0.0.0',25001));"
            "print('ready', flush=True); time.sleep(30)")
    p = netns.popen(sys.executable, "-c", code, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        rc, out, err = cli("range", "set", "20000", "29999", "--dry-run", "--netns", netns.name)
        assert rc == 0 and "listening servers on 25000-25001" in err
        # the remedy acts on the same namespace, never on the host
        assert f"Reserve them: portscope --netns {netns.name} reserve add 25000-25001" in err
        rc, out, err = cli("range", "set", "20000", "29999", "--reserve-listeners", "--netns", netns.name, "--json")
        assert rc == 0, err
        d = json.loads(out)
        assert d["after"]["reserved"] == "25000-25001"
        assert ns_values(netns) == ("20000\t29999", "25000-25001")
    finally:
        p.kill()
        p.wait()


def test_windows_text_output(cli, monkeypatch):
    from test_host_backends import BACKENDS
    f = BACKENDS["windows-de"]()
    monkeypatch.setattr(phost, "host_facts", lambda netns=None: f)
    code, out, err = cli("range")
    assert code == 0, err
    assert "Ephemeral range: 1024-65534 (64,511 ports; default is 49152-65535)" in out
    assert "udp/ipv6  49152-65535 (16,384 ports)" in out
    assert "excluded tcp/ipv4  5357,50000-50059" in out
    assert "Privileged ports: none" in out
    code, out, err = cli("range", "set", "10000", "59999", "--dry-run", "--proto", "tcp")
    assert code == 0, err
    assert out.splitlines()[1:] == ["  netsh int ipv4 set dynamic tcp start=10000 num=50000",
                                    "  netsh int ipv6 set dynamic tcp start=10000 num=50000"]


def test_cli_modules_import_light():
    code = ("import sys, portscope.cli.range_cmd, portscope.cli.reserve;"
            "heavy = [m for m in ('portscope.sockets', 'portscope.settings', 'rich', 'psutil', 'numpy')"
            " if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
