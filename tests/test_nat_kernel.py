"""Conntrack and SNAT as the kernel has them, against Debian's conntrack tools.

Every rule, flow and sysctl here lives in private namespaces these tests make and
remove: a single namespace with a NAT rule on loopback, or the lab topology (client ->
router with MASQUERADE to a small --to-ports range -> server) on veth pairs with
documentation addresses only.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from conftest import needs_netns

HAVE_CONNTRACK = shutil.which("conntrack") is not None and shutil.which("iptables") is not None
needs_tools = pytest.mark.skipif(not HAVE_CONNTRACK,
                                 reason="needs Debian's conntrack and iptables (scripts/test.sh installs them)")
PORTSCOPE = [sys.executable, "-m", "portscope"]

# flows on loopback through a SNAT rule (port 5001) and plain tracked flows (5000, UDP)
TRAFFIC = r"""
import socket, sys
keep = []
for port in (5000, 5001):
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("127.0.0.1", port)); l.listen(64); keep.append(l)
    for i in range(4):
        c = socket.create_connection(("127.0.0.1", port), timeout=5); a = l.accept()[0]
        if i % 2:
            c.close(); a.close()               # client closes first: TIME_WAIT in conntrack
        else:
            keep += [c, a]
for i in range(3):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.sendto(b"x", ("127.0.0.1", 5353)); keep.append(u)
u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u6.sendto(b"x", ("::1", 5353)); keep.append(u6)
print("ready", flush=True)
sys.stdin.read()
"""


def _tracked(ns):
    """A NAT table in the namespace turns conntrack on; one SNAT rule for port 5001.

    The range has more than 32 ports on purpose: in a round's last 32 attempts a new TCP
    SYN may evict a colliding TIME_WAIT entry whose sequence number it has passed (Linux
    6.5+; a coin toss with random ISNs), which would make the counts depend on chance."""
    ns.run("iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-p", "tcp", "--dport", "5001",
           "-j", "SNAT", "--to-source", "127.0.0.1:41000-41099")
    ns.run("ip6tables", "-t", "nat", "-A", "POSTROUTING", "-o", "nothere0", "-j", "MASQUERADE")


def _start(ns, code=TRAFFIC):
    p = ns.popen(sys.executable, "-c", code, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    assert line == "ready", p.stderr.read()
    return p


def _nat_json(nsname: str, *extra: str) -> dict:
    r = subprocess.run(PORTSCOPE + ["nat", "--json", "--netns", nsname, *extra],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def parse_conntrack_S(text: str) -> dict[str, int]:
    """`conntrack -S`: one line per CPU of name=value pairs -> sums."""
    names = {"chaintoolong": "chain_toolong"}
    out: dict[str, int] = {}
    for line in text.splitlines():
        for k, v in re.findall(r"(\w+)=(\d+)", line):
            if k == "cpu":
                continue
            k = names.get(k, k)
            out[k] = out.get(k, 0) + int(v)
    return out


LINE = re.compile(r"^(?P<proto>\w+)\s+(?P<num>\d+)\s+(?P<timeout>\d+)\s+(?:(?P<state>[A-Z_]+)\s+)?(?P<rest>.*)$")


def parse_conntrack_L(text: str) -> list[dict]:
    """`conntrack -L` lines -> the fields portscope's table has."""
    out = []
    for line in text.splitlines():
        m = LINE.match(line.strip())
        if not m or "=" not in line:
            continue
        kv = re.findall(r"(src|dst|sport|dport)=(\S+)", m["rest"])
        orig, reply = dict(kv[:4]), dict(kv[4:8])
        out.append({
            "proto": m["proto"], "timeout": int(m["timeout"]), "state": m["state"],
            "orig": (orig["src"], orig["dst"], int(orig["sport"]), int(orig["dport"])),
            "reply": (reply["src"], reply["dst"], int(reply["sport"]), int(reply["dport"])),
            "assured": "[ASSURED]" in line, "unreplied": "[UNREPLIED]" in line,
        })
    return out


@needs_netns
@needs_tools
def test_stats_equal_conntrack_S_and_C(netns):
    _tracked(netns)
    p = _start(netns)
    try:
        # invalid packets: SYN+FIN is a flag combination conntrack counts as `invalid`
        netns.python("import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)\n"
                     "import struct\nh=struct.pack('!HHIIBBHHH',40000,5000,1,1,5<<4,0x03,1024,0,0)\n"
                     "s.sendto(h,('127.0.0.1',0))")
        time.sleep(0.2)
        ours = _nat_json(netns.name)["conntrack"]
        s = parse_conntrack_S(netns.run("conntrack", "-S").stdout)
        count = int(netns.run("conntrack", "-C").stdout.strip())
    finally:
        p.kill()
    assert ours["available"] is True and ours["source"] == "ctnetlink"
    assert ours["entries"] == count and count >= 12
    for k, v in ours["stats"].items():
        assert v == s[k], (k, v, s[k])
    assert ours["stats"]["invalid"] >= 1          # the SYN+FIN packet: the sums are not all zero
    with open("/proc/sys/net/netfilter/nf_conntrack_max") as f:
        assert ours["max"] == int(f.read())        # global: the same number in every namespace
    assert ours["utilization"] == pytest.approx(count / ours["max"])


@needs_netns
@needs_tools
def test_procfs_fallback_sums_the_same(netns):
    """/proc/net/stat/nf_conntrack read inside the namespace gives the ctnetlink sums."""
    _tracked(netns)
    p = _start(netns)
    try:
        code = ("import json\nfrom portscope.nat import stats, ctnetlink\n"
                "a = stats.read_stats()\nb = stats._from_proc(stats.ConntrackStats(available=True))\n"
                "print(json.dumps([a.stats, b.stats, b.source]))")
        if not os.path.exists("/proc/net/stat/nf_conntrack"):
            pytest.skip("this kernel has no /proc/net/stat/nf_conntrack (CONFIG_NF_CONNTRACK_PROCFS off)")
        a, b, src = json.loads(netns.python(code, cwd=os.path.dirname(os.path.dirname(__file__))).stdout)
    finally:
        p.kill()
    assert src == "procfs"
    assert {k: b[k] for k in a} == a


@needs_netns
@needs_tools
def test_table_equals_conntrack_L_on_a_quiet_table(netns):
    _tracked(netns)
    p = _start(netns)
    try:
        code = ("import json\nfrom portscope.nat import read_table\nt = read_table()\n"
                "print(json.dumps([t.row(i) for i in range(len(t))]))")
        ours = json.loads(netns.python(code, cwd=os.path.dirname(os.path.dirname(__file__))).stdout)
        theirs = parse_conntrack_L(netns.run("conntrack", "-L").stdout)
    finally:
        p.kill()
    assert len(ours) == len(theirs) >= 12

    def key(e):
        return (e["proto"], e["orig"], e["reply"])

    mine = {(r["proto"], (r["orig"]["src"], r["orig"]["dst"], r["orig"]["sport"], r["orig"]["dport"]),
             (r["reply"]["src"], r["reply"]["dst"], r["reply"]["sport"], r["reply"]["dport"])): r for r in ours}
    assert set(mine) == {key(e) for e in theirs}
    for e in theirs:
        r = mine[key(e)]
        assert r["state"] == e["state"]
        assert abs(r["timeout"] - e["timeout"]) <= 2
        assert ("ASSURED" in r["status"]) is e["assured"]
        assert ("SEEN_REPLY" not in r["status"]) is e["unreplied"]
    snat = [r for r in ours if "SRC_NAT" in r["status"]]
    assert len(snat) == 4 and all(41000 <= r["reply"]["dport"] <= 41099 for r in snat)
    assert {r["family"] for r in ours} == {4, 6}
    assert {r["state"] for r in ours if r["proto"] == "tcp"} >= {"ESTABLISHED", "TIME_WAIT"}


@needs_netns
@needs_tools
def test_snat_on_loopback_counts_time_wait_against_the_rule_range(netns):
    _tracked(netns)
    p = _start(netns)
    try:
        d = _nat_json(netns.name)
    finally:
        p.kill()
    (snat,) = d["snat"]
    assert snat == {**snat, "proto": "tcp", "nat_ip": "127.0.0.1", "dst": "127.0.0.1", "dport": 5001,
                    "in_use": 4, "time_wait": 2, "capacity": 100, "range": "41000-41099", "range_from": "rule"}
    assert snat["utilization"] == pytest.approx(0.04)
    assert 100 <= snat["time_wait_timeout_max"] <= 120     # conntrack's TIME_WAIT is 120 s
    assert any(r["kind"] == "snat" and r["ports"] == "41000-41099" for r in d["rules"])


# ---- the lab topology ------------------------------------------------------------------

@needs_netns
@needs_tools
@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_lab_masquerade_to_ports_exhaustion_matches_the_kernel(proto):
    from portscope.nat.labnet import CLIENT, SERVER, SERVER_IP, SERVER_PORT, SnatLab
    n, attempts = 8, 20
    with SnatLab() as lab:
        lab.build((40000, 40000 + n - 1), protos=(proto,))
        srv = lab.popen(lab.server, SERVER, str(SERVER_PORT))
        cl = None
        try:
            assert srv.stdout.readline().strip() == "ready"
            cl = lab.popen(lab.client, CLIENT, proto, SERVER_IP, str(SERVER_PORT), str(attempts), "2.5")
            connected = int(cl.stdout.readline().split()[0])
            time.sleep(0.3)
            srv.stdin.write("\n")
            srv.stdin.flush()
            tcp_seen, udp_seen = map(int, srv.stdout.readline().split())
            d = _nat_json(lab.router)
            s = parse_conntrack_S(lab.run(lab.router, "conntrack", "-S").stdout)
        finally:
            for x in (cl, srv):
                if x is not None:
                    x.kill()
                    x.wait(10)
    k = tcp_seen if proto == "tcp" else udp_seen
    if proto == "tcp":
        assert connected == k
    assert k == n                                   # the kernel let exactly the range through
    (dest,) = d["snat"]
    assert (dest["proto"], dest["nat_ip"], dest["dst"], dest["dport"]) == (proto, "203.0.113.1", SERVER_IP, SERVER_PORT)
    assert dest["in_use"] == k and dest["capacity"] == n and dest["utilization"] == 1.0
    ids = {f["id"]: f for f in d["findings"]}
    assert ids["snat-exhaustion"]["severity"] == "critical"
    assert "--to-ports 40000-40015" in ids["snat-exhaustion"]["remedy"]
    assert d["conntrack"]["stats"]["insert_failed"] == s["insert_failed"] >= attempts - n
    assert d["conntrack"]["stats"]["drop"] == s["drop"]
    assert "conntrack-insert-failed" in ids
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert lab.router not in out                    # removed


# ---- permission -------------------------------------------------------------------------

@needs_netns
@pytest.mark.parametrize("who", ["nobody", "root-without-cap-net-admin"])
def test_no_cap_net_admin_is_exit_3_naming_it(netns, who, request):
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux) to drop privileges")
    if not os.path.exists("/proc/sys/net/netfilter/nf_conntrack_count"):
        pytest.skip("conntrack is not loaded on this kernel: nothing to be refused")
    portscope = PORTSCOPE
    if who == "nobody":
        drop = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all"]
        # nobody cannot reach a checkout in a private directory: the session's own runtime
        portscope = request.getfixturevalue("nobody_portscope")
    else:
        drop = ["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin"]
    r = netns.run(*drop, *portscope, "nat", check=False, cwd="/")
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("portscope: error:")
    assert "CAP_NET_ADMIN" in r.stderr and "Traceback" not in r.stderr


@needs_netns
@needs_tools
def test_nat_model_predicts_the_kernel_failing_before_the_range_is_full():
    """300 NAT ports, 330 UDP flows: the kernel tries at most 128 ports per round, so a
    flow can fail while ports are still free. The first unanswered flow's index must lie
    in the model's (simulate --algorithm nat) 1%..99% band, and both end with the range full."""
    import random

    from portscope.nat.labnet import CLIENT, SERVER, SERVER_IP, SERVER_PORT, SnatLab
    from portscope.simulate.alloc_nat import NatSnat
    from portscope.simulate.workload import make_space
    n, attempts = 300, 330
    space = make_space(f"40000-{40000 + n - 1}", "", "")
    firsts, fulls = [], []
    for seed in range(400):
        a, used, first = NatSnat(space, random.Random(seed)), {}, 0
        for i in range(attempts):
            p, _ = a.choose(0, used, 0.0, None)
            if p >= 0:
                used[p] = -1.0
            elif not first:
                first = i + 1
        firsts.append(first)
        fulls.append(len(used))
    firsts.sort()
    lo, hi = firsts[4], firsts[-4]
    assert 0 < lo < n                       # the model says: failures start before the range is full
    with SnatLab() as lab:
        lab.build((40000, 40000 + n - 1), protos=("udp",))
        srv = lab.popen(lab.server, SERVER, str(SERVER_PORT))
        cl = None
        try:
            assert srv.stdout.readline().strip() == "ready"
            cl = lab.popen(lab.client, CLIENT, "udp", SERVER_IP, str(SERVER_PORT), str(attempts), "1.5")
            answered, first = map(int, cl.stdout.readline().split())
            d = _nat_json(lab.router)
            s = parse_conntrack_S(lab.run(lab.router, "conntrack", "-S").stdout)
        finally:
            for x in (cl, srv):
                if x is not None:
                    x.kill()
                    x.wait(10)
    assert answered == n and max(fulls) == min(fulls) == n
    assert lo <= first <= hi, (first, lo, hi)
    (dest,) = d["snat"]
    assert dest["in_use"] == n and dest["capacity"] == n
    assert d["conntrack"]["stats"]["insert_failed"] == s["insert_failed"] == attempts - n


@needs_netns
@needs_tools
def test_lab_exhaust_snat_prediction_equals_kernel():
    r = subprocess.run(PORTSCOPE + ["lab", "exhaust", "--mode", "snat", "--range", "40000-40011", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["match"] is True and d["attempts"] == 20
    assert d["predicted"] == {"through": 12, "low": 12, "high": 12} and d["kernel"]["through"] == 12
    assert d["portscope"]["in_use"] == 12 and d["portscope"]["insert_failed"] == d["kernel"]["insert_failed"] > 0
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(n in left for n in d["namespaces"].values())
    r = subprocess.run(PORTSCOPE + ["lab", "exhaust", "--mode", "snat", "--family", "6"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "IPv4 documentation addresses" in r.stderr


@needs_netns
@needs_tools
def test_interval_sees_insert_failures_rise_while_syns_are_retransmitted():
    """Flows the NAT range cannot take keep failing at each SYN retransmission (1 s, 3 s):
    `nat --interval` sees insert_failed rise (a warning) and agrees with conntrack -S."""
    from portscope.nat.labnet import CLIENT, SERVER, SERVER_IP, SERVER_PORT, SnatLab
    with SnatLab() as lab:
        lab.build((40000, 40003), protos=("tcp",))
        srv = lab.popen(lab.server, SERVER, str(SERVER_PORT))
        cl = None
        try:
            assert srv.stdout.readline().strip() == "ready"
            cl = lab.popen(lab.client, CLIENT, "tcp", SERVER_IP, str(SERVER_PORT), "10", "5")
            time.sleep(0.5)
            d = _nat_json(lab.router, "--interval", "2")
            cl.stdout.readline()                        # the client gave up on the rest
            s = parse_conntrack_S(lab.run(lab.router, "conntrack", "-S").stdout)
        finally:
            for x in (cl, srv):
                if x is not None:
                    x.kill()
                    x.wait(10)
    assert d["interval"]["seconds"] == 2 and d["interval"]["insert_failed"] >= 6   # 6 flows x 1 retransmit
    (f,) = [f for f in d["findings"] if f["id"] == "conntrack-insert-failed"]
    assert f["severity"] == "warning" and "in the last 2 s" in f["message"]
    assert d["conntrack"]["stats"]["insert_failed"] <= s["insert_failed"]


# a mixed table: TCP (some closed: TIME_WAIT) and UDP source-NATed from 192.0.2.1 to
# 192.0.2.3, UDP in conntrack zone 7 and with a connmark (other layouts), UDP not NATed,
# original ports 700-702 (the 600-1023 default range), IPv6 UDP and ICMP echo
MIXED = r"""
import socket, struct, sys
keep = []
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("192.0.2.2", 5001)); l.listen(64); keep.append(l)
for i in range(6):
    c = socket.socket(); c.bind(("192.0.2.1", 0)); c.settimeout(5); c.connect(("192.0.2.2", 5001))
    a = l.accept()[0]
    if i % 2:
        c.close(); a.close()
    else:
        keep += [c, a]
def udp(fam, src, dst, port, n, sport=0):
    for i in range(n):
        u = socket.socket(fam, socket.SOCK_DGRAM); u.bind((src, sport + i if sport else 0))
        u.sendto(b"x", (dst, port)); keep.append(u)
for port in (5002, 5003, 5004, 5005):
    udp(socket.AF_INET, "192.0.2.1", "192.0.2.2", port, 5)
udp(socket.AF_INET, "192.0.2.1", "192.0.2.2", 5006, 3, sport=700)
udp(socket.AF_INET6, "2001:db8::1", "2001:db8::2", 5002, 4)
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s.bind(("192.0.2.1", 0)); keep.append(s)
for i in range(3):
    h = struct.pack("!BBHHH", 8, 0, 0, 100 + i, 1)
    c = sum(struct.unpack("!4H", h)); c = (c & 0xFFFF) + (c >> 16); c = ~c & 0xFFFF
    s.sendto(struct.pack("!BBHHH", 8, 0, c, 100 + i, 1), ("192.0.2.2", 0))
print("ready", flush=True)
sys.stdin.read()
"""

TALLY = ("import json\nfrom portscope.nat import count_snat, read_table, rules, snat\n"
         "rs = rules.read_rules().rules\nt = count_snat()\ntab = read_table()\n"
         "print(json.dumps({'new': [d.to_json() for d in t.destinations(rs)],\n"
         "  'old': [d.to_json() for d in snat.snat_destinations(tab, rs)],\n"
         "  'entries': t.entries, 'rows': t.rows, 'fast': t.fast, 'table': len(tab),\n"
         "  'snat_in_table': sum(1 for i in range(len(tab)) if tab.status[i] & 0x10)}))")


def _mixed(ns):
    for a in ("192.0.2.1/32", "192.0.2.2/32", "192.0.2.3/32"):
        ns.run("ip", "addr", "add", a, "dev", "lo")
    for a in ("2001:db8::1/128", "2001:db8::2/128", "2001:db8::3/128"):
        ns.run("ip", "-6", "addr", "add", a, "dev", "lo", "nodad")
    ipt = ("iptables", "-t")
    ns.run(*ipt, "nat", "-A", "POSTROUTING", "-s", "192.0.2.1", "-p", "tcp", "-j", "SNAT",
           "--to-source", "192.0.2.3:41000-41099")
    ns.run(*ipt, "nat", "-A", "POSTROUTING", "-s", "192.0.2.1", "-p", "udp", "--dport", "5005", "-j", "RETURN")
    ns.run(*ipt, "nat", "-A", "POSTROUTING", "-s", "192.0.2.1", "-p", "udp", "-j", "SNAT", "--to-source", "192.0.2.3")
    ns.run(*ipt, "nat", "-A", "POSTROUTING", "-s", "192.0.2.1", "-p", "icmp", "-j", "SNAT", "--to-source", "192.0.2.3")
    ns.run(*ipt, "raw", "-A", "OUTPUT", "-p", "udp", "--dport", "5003", "-j", "CT", "--zone", "7")
    ns.run(*ipt, "mangle", "-A", "OUTPUT", "-p", "udp", "--dport", "5004", "-j", "CONNMARK", "--set-mark", "5")
    ns.run("ip6tables", "-t", "nat", "-A", "POSTROUTING", "-s", "2001:db8::1", "-p", "udp", "-j", "SNAT",
           "--to-source", "[2001:db8::3]:43000-43099")


# ---- nat --all-netns -------------------------------------------------------------------

STABLE = ("proto", "nat_ip", "dst", "dport", "in_use", "time_wait", "capacity", "range", "range_from")


@needs_netns
@needs_tools
def test_all_netns_labels_each_namespace_as_nat_netns_reads_it(netns_factory):
    """Two namespaces with their own SNAT rule and flows: `nat --all-netns --json` has each
    one's rules and SNAT use, labelled by namespace, as `nat --netns NAME --json` reads them."""
    a, b = netns_factory(), netns_factory()
    _tracked(a)
    b.run("iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-p", "tcp", "--dport", "5001",
          "-j", "SNAT", "--to-source", "127.0.0.1:42000-42049")
    procs = [_start(a), _start(b)]
    try:
        r = subprocess.run(PORTSCOPE + ["nat", "--all-netns", "--json", "--top", "0"], capture_output=True, text=True,
                           timeout=600)
        alone = {ns.name: _nat_json(ns.name) for ns in (a, b)}
    finally:
        for p in procs:
            p.kill()
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["all_netns"] is True
    per = {n["netns"]: n for n in doc["namespaces"]}
    for ns, capacity in ((a, 100), (b, 50)):
        got, want = per[ns.name]["nat"], alone[ns.name]
        assert got["rules"] == want["rules"] and got["nat_ports"] == want["nat_ports"]
        assert [[d[k] for k in STABLE] for d in got["snat"]] == [[d[k] for k in STABLE] for d in want["snat"]]
        (row,) = [d for d in doc["snat"] if d["netns"] == ns.name]
        assert (row["in_use"], row["time_wait"], row["capacity"]) == (4, 2, capacity)
        assert row["netns_inode"] == os.stat(f"/run/netns/{ns.name}").st_ino
        assert row["container"] is None and row["pod"] is None
    assert doc["snat_total"] == len(doc["snat"]) >= 2
    utils = [d["utilization"] for d in doc["snat"]]
    assert utils == sorted(utils, reverse=True)


def test_all_netns_refuses_netns_and_interval(cli):
    for args in (("nat", "--all-netns", "--netns", "pid:1"), ("nat", "--all-netns", "--interval", "1")):
        code, out, err = cli(*args)
        assert code == 2 and out == "" and err.count("\n") == 1 and "--all-netns" in err, (args, err)


@needs_netns
@needs_tools
def test_streamed_tally_equals_the_table_path_and_conntrack_L(netns):
    """The tally `nat` and the exporter use (kernel-filtered dump, fixed-offset reads)
    gives what the full table and snat_destinations() give, and what `conntrack -L
    --src-nat` lists, on a real table with several layouts, families and protocols."""
    _mixed(netns)
    p = _start(netns, MIXED)
    try:
        got = json.loads(netns.python(TALLY, cwd=os.path.dirname(os.path.dirname(__file__))).stdout)
        listed = netns.run("conntrack", "-L", "--src-nat").stdout
        everything = netns.run("conntrack", "-L").stdout
    finally:
        p.kill()
    assert got["new"] == got["old"]
    assert got["rows"] == got["snat_in_table"] == len([ln for ln in listed.splitlines() if "=" in ln]) >= 30
    assert 0 < got["fast"] < got["rows"]              # read both ways: at fixed offsets and one by one
    release = tuple(int(x) for x in re.findall(r"\d+", os.uname().release)[:2])
    if release >= (5, 15):                            # the kernel filters by status bits
        assert got["entries"] == got["rows"] < got["table"]
    by = {(d["proto"], d["dst"], d["dport"]): d for d in got["new"]}
    truth: dict = {}
    for line in listed.splitlines():
        kv = re.findall(r"(src|dst|sport|dport)=(\S+)", line)
        if len(kv) < 8:
            continue                                  # ICMP: type/code/id, no ports
        reply = dict(kv[4:8])
        key = (line.split()[0], reply["src"], int(reply["sport"]))
        t = truth.setdefault(key, [set(), 0, reply["dst"]])
        t[0].add(int(reply["dport"]))
        t[1] += " TIME_WAIT " in line
    assert {k for k in by if k[0] != "icmp"} == set(truth)
    for key, (ports, tw, nat) in truth.items():
        assert (by[key]["in_use"], by[key]["time_wait"], by[key]["nat_ip"]) == (len(ports), tw, nat), key
    assert by[("tcp", "192.0.2.2", 5001)]["in_use"] == 6 and by[("tcp", "192.0.2.2", 5001)]["time_wait"] == 3
    assert by[("tcp", "192.0.2.2", 5001)]["range"] == "41000-41099"
    assert by[("udp", "192.0.2.2", 5006)]["range"] == "600-1023"
    assert by[("udp", "2001:db8::2", 5002)]["nat_ip"] == "2001:db8::3"
    assert ("udp", "192.0.2.2", 5005) not in by and "dport=5005" in everything
    assert "zone=7" in everything and "mark=5" in everything
