"""`portscope suggest`: every rule checked against the kernel in a private namespace,
and every suggested port actually bound afterwards."""
from __future__ import annotations

import json
import sys

import pytest

from portscope import registry as R
from portscope import suggest as S
from portscope.errors import BadInput
from portscope.host import HostFacts
from portscope.ports import PortRange, PortSet

BIND_ALL = r"""
import socket, sys
bad = []
for port in map(int, sys.argv[1:]):
    for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        for typ in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            s = socket.socket(fam, typ)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                s.bind((addr, port))
            except OSError as e:
                bad.append((port, fam, typ, e.errno))
            finally:
                s.close()
print(bad)
"""

HOLD = r"""
import socket, sys, time
t = socket.socket(); t.bind(("0.0.0.0", int(sys.argv[1]))); t.listen()
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.bind(("::", int(sys.argv[2])))
print("ready", flush=True)
time.sleep(60)
"""


def hold(ns, tcp_port, udp6_port):
    return ns.start(HOLD, str(tcp_port), str(udp6_port))


def ss_ports(ns) -> set[int]:
    return {int(f[4].rsplit(":", 1)[1]) for f in ns.ss("-tuan")}


def test_suggestions_follow_every_rule_and_bind(netns, cli):
    netns.sysctl("net.ipv4.ip_local_port_range", "45006 45999")   # eats the top of the search
    netns.sysctl("net.ipv4.ip_local_reserved_ports", "44995,44997")
    p = hold(netns, 44990, 44991)
    try:
        code, out, err = cli("suggest", "--range", "44980-45010", "--count", "40", "--proto", "tcp",
                             "--netns", netns.name, "--json")
        assert code == 0, err
        got = [s["port"] for s in json.loads(out)["ports"]]
        # ground truth computed independently: ss, the namespace's sysctls, the registry
        reg = R.default()
        bound = ss_ports(netns)
        reserved = PortSet.parse(netns.sysctl("net.ipv4.ip_local_reserved_ports"))
        lo, hi = map(int, netns.sysctl("net.ipv4.ip_local_port_range").split())
        want = [q for q in range(44980, 45011) if q not in bound and q not in reserved
                and not lo <= q <= hi and reg.status(q, "tcp") == R.UNASSIGNED]
        assert {44990, 44991} <= bound
        assert got == want and got, (got, want)
        assert netns.python(BIND_ALL, *map(str, got)).stdout.strip() == "[]"
        d = json.loads(out)
        assert all(len(s["reasons"]) >= 5 and s["safe"] for s in d["ports"])
        assert d["ephemeral_range"] == {"low": 45006, "high": 45999}
    finally:
        p.kill()
        p.wait()


def test_default_search_is_outside_range_unprivileged_unassigned_and_bindable(netns):
    res = S.suggest(5, ("tcp", "udp"), netns=netns.name, seed=7)
    ports = [s.port for s in res.ports]
    assert len(ports) == 5
    lo, hi = map(int, netns.sysctl("net.ipv4.ip_local_port_range").split())
    reg = R.default()
    for q in ports:
        assert 1024 <= q <= 49151 and not lo <= q <= hi
        assert reg.status(q, "tcp") == reg.status(q, "udp") == R.UNASSIGNED
    assert netns.python(BIND_ALL, *map(str, ports)).stdout.strip() == "[]"
    # the same seed in the same state gives the same answer; the text explains each port
    assert [s.port for s in S.suggest(5, ("tcp", "udp"), netns=netns.name, seed=7).ports] == ports
    assert any("outside the ephemeral range" in r for r in res.ports[0].reasons)


def test_allow_registered_and_dynamic(netns):
    res = S.suggest(1, ("tcp",), search=PortRange(5432, 5432), allow_registered=True, netns=netns.name)
    assert [s.port for s in res.ports] == [5432]
    assert any("postgresql" in r and "--allow-registered" in r for r in res.ports[0].reasons)
    assert S.suggest(1, ("tcp",), search=PortRange(5432, 5432), netns=netns.name).ports == ()
    netns.sysctl("net.ipv4.ip_local_port_range", "20000 29999")
    with pytest.raises(BadInput, match="allow-dynamic"):
        S.suggest(1, search=PortRange(62000, 62010), netns=netns.name)
    res = S.suggest(3, search=PortRange(62000, 62010), allow_dynamic=True, netns=netns.name)
    assert len(res.ports) == 3 and all(62000 <= s.port <= 62010 for s in res.ports)


def test_privileged_suggestions_need_privilege(netns, cli):
    netns.sysctl("net.ipv4.ip_unprivileged_port_start", "2000")
    code, out, _ = cli("suggest", "--privileged", "--allow-registered", "--range", "1500-2500", "-n", "3", "--netns", netns.name, "--json")
    ports = [s["port"] for s in json.loads(out)["ports"]]
    assert code == 0 and len(ports) == 3 and all(1500 <= q < 2000 for q in ports)
    # the kernel agrees: a process without CAP_NET_BIND_SERVICE is refused
    probe = ("import socket, sys\nfor p in sys.argv[1:]:\n  s = socket.socket()\n  try:\n"
             "    s.bind(('127.0.0.1', int(p))); print('ok')\n  except PermissionError: print('denied')\n")
    res = netns.run("setpriv", "--bounding-set=-net_bind_service", "--inh-caps=-net_bind_service",
                    sys.executable, "-c", probe, *map(str, ports))
    assert res.stdout.split() == ["denied"] * 3
    code, out, _ = cli("suggest", "-n", "2", "--netns", netns.name, "--json")
    assert all(s["port"] >= 2000 for s in json.loads(out)["ports"])
    netns.sysctl("net.ipv4.ip_unprivileged_port_start", "0")
    code, _, err = cli("suggest", "--privileged", "--netns", netns.name)
    assert code == 2 and "no privileged ports" in err


def test_insisting_on_a_port_inside_the_range_prints_the_reserve_command(netns, cli):
    netns.sysctl("net.ipv4.ip_local_port_range", "20000 29999")
    port = next(q for q in range(25000, 26000) if R.default().status(q, "tcp") == R.UNASSIGNED)
    code, out, _ = cli("suggest", "--port", str(port), "--netns", netns.name)
    cmd = f"portscope --netns {netns.name} reserve add {port}"
    assert code == 1 and cmd in out and "ephemeral range" in out
    code, out, _ = cli("suggest", "--port", str(port), "--netns", netns.name, "--json")
    assert json.loads(out)["ports"][0]["commands"] == [cmd]
    # run the printed command itself: the kernel then holds the port out of automatic assignment
    code, _, err = cli(*cmd.split()[1:])
    assert code == 0, err
    assert port in PortSet.parse(netns.sysctl("net.ipv4.ip_local_reserved_ports"))
    code, out, _ = cli("suggest", "--port", str(port), "--netns", netns.name, "--json")
    d = json.loads(out)["ports"][0]
    assert code == 0 and d["safe"] and d["commands"] == [] and d["problems"] == []
    assert any("reserved" in r for r in d["reasons"])
    # in use now: a problem, whatever else holds
    p = hold(netns, port, port + 1)
    try:
        code, out, _ = cli("suggest", "--port", str(port), "--netns", netns.name, "--json")
        d = json.loads(out)["ports"][0]
        assert code == 1 and not d["safe"] and any(x.startswith("in use now: tcp LISTEN ") and x.endswith(f":{port}") for x in d["problems"])
        assert [r["state"] for r in d["in_use"]] == ["LISTEN"]
    finally:
        p.kill()
        p.wait()


def test_registered_port_is_a_problem_unless_allowed(netns, cli):
    code, out, _ = cli("suggest", "--port", "5432", "--netns", netns.name, "--json")
    d = json.loads(out)["ports"][0]
    assert code == 1 and any("postgresql" in x for x in d["problems"])
    code, out, _ = cli("suggest", "--port", "5432", "--allow-registered", "--netns", netns.name, "--json")
    assert code == 0 and json.loads(out)["ports"][0]["safe"]


def test_trial_bind_sees_what_the_table_might_miss(netns):
    p = hold(netns, 44000, 44001)
    try:
        from portscope import netns as nsmod
        with nsmod.entered(netns.name):
            assert "44000" in (S.trial_bind(44000) or "")
            # the holder's UDP socket is dual-stack (:: without V6ONLY): IPv4 collides too
            assert "bind udp 0.0.0.0 port 44001" in (S.trial_bind(44001) or "")
            assert S.trial_bind(44002) is None
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize("args", [
    ("suggest", "--count", "0"), ("suggest", "--count", "abc"), ("suggest", "--count", "-1"),
    ("suggest", "--range", "1-2-3"), ("suggest", "--range", "70000-80000"), ("suggest", "--range", "50-40"),
    ("suggest", "--port", "65536"), ("suggest", "--port", "-1"), ("suggest", "--port", "http"),
    ("suggest", "--netns", "no-such-ns-xyz"),
])
def test_bad_input_is_one_line_exit_2(cli, args):
    code, out, err = cli(*args)
    assert code == 2, (code, out, err)
    assert "Traceback" not in err and err.strip().count("\n") == 0 and "error" in err.lower()


def test_no_port_found_is_exit_1_with_the_breakdown(netns, cli):
    netns.sysctl("net.ipv4.ip_local_port_range", "30000 39999")
    code, out, err = cli("suggest", "--range", "33000-33100", "--netns", netns.name)
    assert code == 1 and "no safe tcp port" in out
    assert "101 in the ephemeral range" in err


def test_search_range_rules():
    f = HostFacts(os="linux", ephemeral=PortRange(32768, 60999), reserved=PortSet(),
                  unprivileged_port_start=1024, os_default=PortRange(32768, 60999))
    assert S._search_range(False, False, 1024, None) == PortRange(1024, 49151)
    assert S._search_range(False, True, 1024, None) == PortRange(1024, 65535)
    assert S._search_range(True, False, 1024, None) == PortRange(1, 1023)
    assert S._search_range(False, False, 3000, None) == PortRange(3000, 49151)
    assert S._search_range(False, False, 0, PortRange(500, 600)) == PortRange(500, 600)
    with pytest.raises(BadInput):
        S.suggest(0, facts=f)
    with pytest.raises(BadInput):
        S.suggest(1, ("icmp",), facts=f)


@pytest.mark.root                 # --persist plans a write under /etc/sysctl.d: root only
def test_printed_host_command_is_accepted_by_reserve(cli):
    from portscope.remedies import reserve_add_command as reserve_command

    cmd = reserve_command(25000)
    assert cmd == "portscope reserve add 25000 --persist"
    # --dry-run: the real reserve command parses it and plans the write, changing nothing
    code, out, err = cli(*cmd.split()[1:], "--dry-run")
    assert code == 0, err
    assert "25000" in out
