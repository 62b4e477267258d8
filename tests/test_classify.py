"""`portscope port`: the facts about one port, checked against the kernel.

Live tests run in a private network namespace (the `netns` fixture) and compare with
what the kernel says: `ss` for sockets in use, a real bind() for privilege.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from portscope import classify as C
from portscope.remedies import reserve_add_command as reserve_command
from portscope import registry as R
from portscope.errors import BadInput
from portscope.host import HostFacts
from portscope.ports import PortRange, PortSet

CONTRACT_KEYS = {"port", "class", "services", "privileged", "in_ephemeral_range", "reserved", "in_use"}


def facts(low=32768, high=60999, reserved="", start=1024) -> HostFacts:
    return HostFacts(os="linux", ephemeral=PortRange(low, high), reserved=PortSet.parse(reserved),
                     unprivileged_port_start=start, os_default=PortRange(32768, 60999))


# --- pure logic, no host state --------------------------------------------------

def test_cap_net_bind_service_is_bit_10_of_capeff():
    assert C.has_cap_net_bind_service("Name:\tx\nCapEff:\t0000000000000400\n") is True
    assert C.has_cap_net_bind_service("CapEff:\t000001fffeffffff\n") is True
    assert C.has_cap_net_bind_service("CapEff:\t000001fffefffbff\n") is False  # root minus bit 10
    assert C.has_cap_net_bind_service("CapEff:\t0000000000000000\n") is False


def test_classify_from_given_facts():
    f = facts(low=20000, high=29999, reserved="25000,26000-26010", start=2000)
    pf = C.classify(1500, facts=f, in_use=False, cap=False)
    assert (pf.port_class, pf.privileged, pf.bind_allowed) == ("user", True, False)
    assert C.classify(1500, facts=f, in_use=False, cap=True).bind_allowed is True
    assert C.classify(2000, facts=f, in_use=False, cap=False).privileged is False
    assert C.classify(1999, facts=f, in_use=False, cap=False).privileged is True
    for port, in_range, reserved in ((19999, False, False), (20000, True, False), (25000, True, True),
                                     (26005, True, True), (29999, True, False), (30000, False, False)):
        pf = C.classify(port, facts=f, in_use=False)
        assert (pf.in_ephemeral_range, pf.reserved) == (in_range, reserved), port
    assert any("reserve add 20000 --persist" in n for n in C.classify(20000, facts=f, in_use=False).notes)
    assert not any("reserve add" in n for n in C.classify(25000, facts=f, in_use=False).notes)
    assert reserve_command(20000) == "portscope reserve add 20000 --persist"
    assert reserve_command(20000, "ns1") == "portscope --netns ns1 reserve add 20000"


def test_json_contract_and_services():
    pf = C.classify(80, facts=facts(), in_use=False)
    d = pf.to_json()
    assert CONTRACT_KEYS <= set(d)
    assert d["class"] == "system" and d["port"] == 80
    assert {"name": "http", "proto": "tcp", "description": "World Wide Web HTTP"} in d["services"]
    assert all(set(s) >= {"name", "proto", "description"} for s in d["services"])
    assert d["iana_status"]["tcp"] == "assigned"
    only_udp = C.classify(80, proto="udp", facts=facts(), in_use=False).to_json()
    assert {s["proto"] for s in only_udp["services"]} == {"udp"}
    assert C.classify(49152, facts=facts(), in_use=False).port_class == "dynamic"
    x11 = C.classify(6010, facts=facts(), in_use=False).to_json()["services"]
    assert {"name": "x11", "proto": "tcp", "description": "X Window System", "range": "6000-6063"} in x11


def test_name_lookup_and_errors():
    got = C.classify_name("x11", facts=facts(), in_use=False)
    assert [p.port for p in got] == list(range(6000, 6064))
    with pytest.raises(BadInput, match="did you mean postgresql"):
        C.classify_name("postgres", facts=facts(), in_use=False)
    with pytest.raises(BadInput):
        C.classify_name("nosuchservice", facts=facts(), in_use=False)
    with pytest.raises(BadInput):
        C.classify(65536, facts=facts(), in_use=False)
    with pytest.raises(BadInput):
        C.classify(80, proto="icmp", facts=facts(), in_use=False)


@pytest.mark.parametrize("args", [("port", "-1"), ("port", "65536"), ("port", "nosuchservice"),
                                  ("port", "99999999999999999999"), ("port", "80", "--netns", "no-such-ns-xyz")])
def test_bad_input_is_one_line_exit_2(cli, args):
    code, out, err = cli(*args)
    assert code == 2, (code, out, err)
    assert "Traceback" not in err and err.count("\n") == 1 and err.startswith("portscope: error:")


def test_cli_port_text_and_json(cli):
    code, out, _ = cli("port", "22", "--proto", "tcp")
    assert code == 0 and "ssh (tcp/udp/sctp)" in out and "privileged:" in out
    code, out, _ = cli("port", "postgresql", "--json")
    d = json.loads(out)
    assert code == 0 and d["service"] == "postgresql" and [p["port"] for p in d["ports"]] == [5432]
    assert CONTRACT_KEYS <= set(d["ports"][0])
    code, out, _ = cli("--json", "port", "x11", "--proto", "udp")
    assert code == 0 and len(json.loads(out)["ports"]) == 64


# --- live, inside a private network namespace -------------------------------------

HOLD = r"""
import socket, sys, time
port = int(sys.argv[1])
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM); t.bind(("0.0.0.0", port)); t.listen()
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.bind(("::", port))
c = socket.create_connection(("127.0.0.1", port))
a, _ = t.accept()
print("ready", flush=True)
time.sleep(60)
"""


def hold(ns, port):
    return ns.start(HOLD, str(port))


def ss_local_ports(ns, port) -> list[tuple[str, str]]:
    """(netid, state) of every socket whose local port is `port`, as ss sees them."""
    return sorted((f[0], f[1]) for f in ns.ss("-tuan", f"sport = :{port}"))


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) as ground truth")
def test_in_use_matches_ss_in_a_namespace(netns, cli):
    port = 45123
    code, out, _ = cli("port", str(port), "--netns", netns.name, "--json")
    assert code == 0 and json.loads(out)["in_use"] == [] and ss_local_ports(netns, port) == []
    p = hold(netns, port)
    try:
        code, out, err = cli("port", str(port), "--netns", netns.name, "--json")
        assert code == 0, err
        rows = json.loads(out)["in_use"]
        got = sorted((r["proto"], r["state"]) for r in rows)
        truth = ss_local_ports(netns, port)
        ss_names = {"ESTAB": "ESTABLISHED", "UNCONN": "CLOSE", "LISTEN": "LISTEN"}
        assert got == sorted((n, ss_names.get(s, s)) for n, s in truth)
        # listener (v4), the accepted server side (v4), and the UDP socket (v6)
        assert ("tcp", "LISTEN") in got and ("tcp", "ESTABLISHED") in got
        assert any(r["proto"] == "udp" and r["family"] == 6 for r in rows)
        assert all(r["local_port"] == port for r in rows)
        assert {r.get("pid") for r in rows if r["proto"] == "tcp" and r["state"] == "LISTEN"} == {p.pid}
        code, out, _ = cli("port", str(port), "--netns", netns.name, "--proto", "udp", "--json")
        assert {r["proto"] for r in json.loads(out)["in_use"]} == {"udp"}
        # the host's own namespace does not see the namespace's sockets
        host_inodes = {r["inode"] for r in C.classify(port).to_json()["in_use"]}
        assert not host_inodes & {r["inode"] for r in rows}
        code, out, _ = cli("port", str(port), "--netns", netns.name)
        assert "LISTEN" in out and f"pid {p.pid}" in out
    finally:
        p.kill()
        p.wait()


def test_range_and_reserved_follow_the_namespace(netns, cli):
    netns.sysctl("net.ipv4.ip_local_port_range", "20000 20999")
    netns.sysctl("net.ipv4.ip_local_reserved_ports", "20500,30000")
    want = {20499: (True, False), 20500: (True, True), 30000: (False, True), 21000: (False, False)}
    for port, (in_range, reserved) in want.items():
        code, out, _ = cli("port", str(port), "--netns", netns.name, "--json")
        d = json.loads(out)
        assert code == 0 and (d["in_ephemeral_range"], d["reserved"]) == (in_range, reserved), port
    code, out, _ = cli("port", "20499", "--netns", netns.name)
    assert f"portscope --netns {netns.name} reserve add 20499" in out


PRIV_PROBE = r"""
import json, os, socket, sys
from portscope import classify, registry
from portscope.host import facts
registry.default()
f = facts()
mode = sys.argv[1]
if mode == "nobody":           # a real unprivileged user: setuid clears every capability
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
out = {"uid": os.getuid(), "cap": classify.has_cap_net_bind_service()}
for port in map(int, sys.argv[2:]):
    pf = classify.classify(port, facts=f, in_use=False)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port)); ok = True
    except PermissionError:
        ok = False
    finally:
        s.close()
    out[port] = [pf.privileged, pf.bind_allowed, ok]
print(json.dumps(out))
"""


@pytest.mark.parametrize("who", ["root", "nobody", "root-without-cap"])
def test_privileged_answer_matches_a_real_bind(netns, who):
    netns.sysctl("net.ipv4.ip_unprivileged_port_start", "2000")
    ports = ["80", "1500", "1999", "2000", "2500"]
    if who == "root-without-cap":
        if shutil.which("setpriv") is None:
            pytest.skip("needs setpriv (util-linux) to drop CAP_NET_BIND_SERVICE")
        res = netns.run("setpriv", "--bounding-set=-net_bind_service", "--inh-caps=-net_bind_service",
                        sys.executable, "-c", PRIV_PROBE, "root", *ports)
    else:
        res = netns.python(PRIV_PROBE, who, *ports)
    d = json.loads(res.stdout)
    assert d["cap"] is (who == "root")
    for port in ports:
        privileged, allowed, bound = d[port]
        assert privileged is (int(port) < 2000)
        assert allowed is bound, (who, port, d[port])   # our answer is the kernel's answer
    if who != "root":
        assert d["1999"][2] is False and d["2000"][2] is True


def test_registry_lookups_do_not_need_host_state():
    # the port command's IANA part works from the shipped file alone
    reg = R.read_data()
    assert [s.name for s in reg.services_for_port(443, "tcp")] == ["https"]


def test_port_command_stays_light():
    """`portscope port 80` must not pull in the heavy parts of the package (rich,
    matplotlib, numpy, the simulator) nor the CSV parser: start-up is what users feel."""
    code = ("import sys\nfrom portscope.cli import main\n"
            "try:\n    main(['port', '80', '--json'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('rich', 'matplotlib', 'numpy', 'csv', 'portscope.simulate', 'psutil')"
            " if m in sys.modules]\nprint('HEAVY', heavy, file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert json.loads(r.stdout)["port"] == 80
    assert "HEAVY []" in r.stderr, r.stderr


def test_registry_loads_once_and_proto_filtered_names(cli):
    assert R.default() is R.default()
    code, _, err = cli("port", "nusdp-disc", "--proto", "tcp")   # registered for udp only
    assert code == 2 and "for tcp" in err
    code, out, _ = cli("port", "nusdp-disc", "--json")
    assert code == 0 and [p["port"] for p in json.loads(out)["ports"]] == [49001]
    code, out, _ = cli("port", "9", "--proto", "dccp", "--json")
    d = json.loads(out)
    assert code == 0 and d["services"] == [{"name": "discard", "proto": "dccp", "description": "Discard"}]
    assert d["in_use"] == []   # DCCP sockets are not listed: in_use covers TCP and UDP


BUSY = r"""
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
t = socket.socket(); t.bind(("127.0.0.1", port)); t.listen(64)
keep = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
keep += [t.accept()[0] for _ in range(n)]
print("ready", flush=True)
time.sleep(60)
"""


def test_busy_port_text_is_capped_json_is_complete(netns, cli):
    port, n = 45200, 30
    p = netns.popen(sys.executable, "-c", BUSY, str(port), str(n), stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        code, out, _ = cli("port", str(port), "--netns", netns.name, "--json", "--no-owners")
        rows = json.loads(out)["in_use"]
        assert code == 0 and len(rows) == n + 1 == len(ss_local_ports(netns, port))
        assert sorted({r["state"] for r in rows}) == ["ESTABLISHED", "LISTEN"]
        code, out, _ = cli("port", str(port), "--netns", netns.name, "--no-owners")
        assert code == 0 and f"... and {n + 1 - 20} more (" in out and "--json lists them all" in out
        assert out.count(f"127.0.0.1:{port}") == 20
    finally:
        p.kill()
        p.wait()
