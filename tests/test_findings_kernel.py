"""Every finding fires in a namespace built to trigger it and stays silent on a clean one;
where the remedy is a command, running it inside the namespace makes the finding go away."""
from __future__ import annotations

import re
import shlex
import subprocess

import pytest

from conftest import DESTS, analyze_ns, host_sysctls


@pytest.fixture
def ns_driver(netns, driver):
    return netns, driver


def ids(res):
    return {f.id for f in res.findings}


def finding(res, fid):
    [f] = [f for f in res.findings if f.id == fid]
    assert f.severity in ("critical", "warning", "info") and f.message and f.remedy
    if res.netns:                   # every finding of every test here: the remedy targets it
        assert_remedy_targets(f.remedy, res.netns)
    return f


def ns_prefix(netns: str) -> str:
    if netns.startswith("pid:"):
        return f"nsenter --net=/proc/{netns[4:]}/ns/net "
    return f"ip netns exec {netns} "


def assert_remedy_targets(remedy: str, netns: str) -> None:
    """A remedy shown for a namespace changes that namespace, never the host: every sysctl
    and ss runs through the namespace prefix, every portscope command names it, and nothing
    suggests --persist (refused with --netns: a drop-in under /etc/sysctl.d reaches the host)."""
    prefix = ns_prefix(netns)
    for cmd in ("sysctl -w", "ss -tanp"):
        for m in re.finditer(re.escape(cmd), remedy):
            assert remedy[:m.start()].endswith(prefix), (cmd, remedy)
    for m in re.finditer(r"portscope (\S+ \S+)", remedy):
        assert m.group(1) == f"--netns {netns}", remedy
    assert "--persist" not in remedy, remedy


def apply_remedy(ns, f):
    """Run the remedy's command exactly as printed (the part before the '#' comment), from
    the host, without a shell: it must reach the namespace, and the host must not change."""
    assert_remedy_targets(f.remedy, ns.name)
    cmd = f.remedy.split("  #")[0]
    argv = shlex.split(cmd)
    assert argv[:4] == ["ip", "netns", "exec", ns.name] and argv[4] == "sysctl", cmd
    before = host_sysctls()
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30)
    assert host_sysctls() == before


def test_clean_namespace_has_no_findings(ns_driver):
    ns, drive = ns_driver
    drive(op="listen", port=5001, serve=True)
    drive(op="listen", port=8080)
    assert drive(op="open", dests=DESTS[:1], n=10)["opened"] == [10]
    assert drive(op="open", dests=[["127.0.0.1", 0]], mode="udp", n=3)["opened"] == [3]
    res = analyze_ns(ns, process=True)
    # in_use counts ports, not sockets: TCP and UDP draw from one range, so a UDP port may
    # equal a TCP client's (about 1 run in 1,000 with the default range). Count as ss sees.
    tcp = [int(r[3].rsplit(":", 1)[1]) for r in ns.ss("-tn", "dport", "=", ":5001")]
    udp = [int(r[3].rsplit(":", 1)[1]) for r in ns.ss("-uan")]
    assert len(tcp) == 10 and len(udp) == 3
    assert res.global_.in_use == len(set(tcp) | set(udp))
    assert res.findings == ()


@pytest.mark.parametrize("n,fid,sev", [(17, "destination-high", "warning"), (20, "destination-critical", "critical")])
def test_destination_thresholds(ns_driver, n, fid, sev):
    ns, drive = ns_driver
    ns.sysctl("net.ipv4.ip_local_port_range", "40000 40019")
    drive(op="listen", port=5001)
    assert drive(op="open", dests=DESTS[:1], n=n)["opened"] == [n]
    res = analyze_ns(ns)
    assert finding(res, fid).severity == sev
    assert ({"destination-high", "destination-critical"} - {fid}).isdisjoint(ids(res))
    assert "127.0.0.1:5001" in finding(res, fid).message


def test_listener_in_range_and_its_remedy(ns_driver):
    ns, drive = ns_driver
    drive(op="listen", port=45000)
    res = analyze_ns(ns)
    f = finding(res, "listener-in-range")
    assert f.evidence["ports"] == [45000]
    apply_remedy(ns, f)
    assert ns.sysctl("net.ipv4.ip_local_reserved_ports") == "45000"
    assert "listener-in-range" not in ids(analyze_ns(ns))


def test_listener_remedy_portscope_form_targets_the_namespace(ns_driver, cli):
    """The remedy's portscope alternative, run through the real CLI, changes the namespace."""
    ns, drive = ns_driver
    drive(op="listen", port=45001)
    f = finding(analyze_ns(ns), "listener-in-range")
    m = re.search(r"# or: (portscope [^;]+);", f.remedy)
    assert m, f.remedy
    argv = shlex.split(m.group(1))
    assert argv[1:3] == ["--netns", ns.name] and "--persist" not in argv
    before = host_sysctls()
    code, out, err = cli(*argv[1:])
    assert code == 0, err
    assert ns.sysctl("net.ipv4.ip_local_reserved_ports") == "45001" and host_sysctls() == before
    assert "listener-in-range" not in ids(analyze_ns(ns))


def test_remedies_in_a_pid_namespace_use_nsenter(ns_driver):
    ns, drive = ns_driver
    ns.sysctl("net.ipv4.ip_local_port_range", "40000 40099")
    ns.sysctl("net.ipv4.tcp_tw_reuse", "0")
    drive(op="listen", port=40050)
    drive(op="listen", port=5001, serve=True)
    assert drive(op="churn", dests=DESTS[:1], n=40)["opened"] == [40]
    from portscope.host import facts as host_facts
    from portscope.pressure import analyze, read_sockets
    spec = f"pid:{drive.p.pid}"
    f = host_facts(spec)
    res = analyze(f, read_sockets(f, spec), process=True)
    assert {"listener-in-range", "range-small", "time-wait-dominant"} <= ids(res)
    for x in res.findings:
        assert_remedy_targets(x.remedy, spec)
    fx = finding(res, "listener-in-range").remedy.split("  #")[0]
    assert fx.startswith(f"nsenter --net=/proc/{drive.p.pid}/ns/net sysctl -w ")
    before = host_sysctls()
    subprocess.run(shlex.split(fx), check=True, capture_output=True, timeout=30)
    assert ns.sysctl("net.ipv4.ip_local_reserved_ports") == "40050" and host_sysctls() == before


def test_range_same_parity_and_its_remedy(ns_driver):
    ns, _ = ns_driver
    ns.sysctl("net.ipv4.ip_local_port_range", "32768 61000")
    f = finding(analyze_ns(ns), "range-same-parity")
    # the cost, stated: connect() searches one port fewer than the range holds
    assert "28233 ports" in f.message and "28232" in f.message and "one port still free" in f.message
    assert f.evidence["connect_window"] == 28232
    apply_remedy(ns, f)
    low, high = map(int, ns.sysctl("net.ipv4.ip_local_port_range").split())
    assert (low - high) % 2 == 1
    assert analyze_ns(ns).findings == ()


def test_range_small_and_its_remedy(ns_driver):
    ns, _ = ns_driver
    ns.sysctl("net.ipv4.ip_local_port_range", "40000 40999")
    f = finding(analyze_ns(ns), "range-small")
    assert f.evidence == {"size": 1000, "default_size": 28232, "usable": 1000}
    apply_remedy(ns, f)
    assert ns.sysctl("net.ipv4.ip_local_port_range").split() == ["32768", "60999"]
    assert analyze_ns(ns).findings == ()


def test_time_wait_dominant(ns_driver):
    ns, drive = ns_driver
    ns.sysctl("net.ipv4.ip_local_port_range", "40000 40099")
    ns.sysctl("net.ipv4.tcp_tw_reuse", "0")
    drive(op="listen", port=5001, serve=True)
    assert drive(op="churn", dests=DESTS[:1], n=30)["opened"] == [30]
    # ground truth from ss, taken before and after (now and then the kernel shows one fewer
    # than we closed, or shows the last one a moment later)
    def shown():
        return len(ns.run("ss", "-tanH", "state", "time-wait").stdout.splitlines())
    before = shown()
    res = analyze_ns(ns)
    assert before <= res.global_.time_wait <= shown() and before >= 25
    f = finding(res, "time-wait-dominant")
    assert "sysctl -w net.ipv4.tcp_tw_reuse=1" in f.remedy
    assert_remedy_targets(f.remedy, ns.name)
    ns.sysctl("net.ipv4.tcp_tw_reuse", "1")
    f = finding(analyze_ns(ns), "time-wait-dominant")      # still true, but that knob is done
    assert "tcp_tw_reuse" not in f.remedy


def test_bind_before_connect(ns_driver):
    ns, drive = ns_driver
    drive(op="listen", port=5001)
    assert drive(op="open", dests=DESTS[:1], mode="bind", n=5)["opened"] == [5]
    res = analyze_ns(ns)
    f = finding(res, "bind-before-connect")
    assert f.severity == "info" and "IP_BIND_ADDRESS_NO_PORT" in f.remedy
    assert ids(res) == {"bind-before-connect"}


def test_bind_address_no_port_is_not_flagged(ns_driver):
    ns, drive = ns_driver
    drive(op="listen", port=5001)
    assert drive(op="open", dests=DESTS[:1], mode="nobind", n=5)["opened"] == [5]
    assert analyze_ns(ns).findings == ()


def test_pool_warning_from_bind_before_connect(ns_driver):
    ns, drive = ns_driver
    ns.sysctl("net.ipv4.ip_local_port_range", "40000 40019")
    drive(op="listen", port=5001)
    drive(op="open", dests=DESTS[:1], mode="bind", n=17)
    res = analyze_ns(ns)
    assert finding(res, "pool-warning").evidence["held"] == 17
    assert finding(res, "bind-before-connect").severity == "warning"


def test_udp_pool(ns_driver):
    ns, drive = ns_driver
    ns.sysctl("net.ipv4.ip_local_port_range", "40000 40099")
    assert drive(op="open", dests=[["127.0.0.1", 0]], mode="udp", n=15)["opened"] == [15]
    f = finding(analyze_ns(ns), "udp-pool")
    assert f.evidence == {"udp": 15, "capacity": 100}


def test_process_dominant_only_with_process(ns_driver):
    ns, drive = ns_driver
    ns.sysctl("net.ipv4.ip_local_port_range", "40000 40099")
    drive(op="listen", port=5001)
    assert drive(op="open", dests=DESTS[:1], n=30)["opened"] == [30]
    res = analyze_ns(ns, process=True)
    f = finding(res, "process-dominant")
    assert f.evidence["pid"] == drive.p.pid          # `ip netns exec` execs: same pid
    assert f.evidence["in_use"] == 30 and "python" in (f.evidence["command"] or "")
    assert f.evidence["ports"] == 30 and "30 of the 100 usable ports (30.0%)" in f.message
    assert_remedy_targets(f.remedy, ns.name)
    assert "process-dominant" not in ids(analyze_ns(ns))


def test_process_dominant_counts_ports_not_sockets(ns_driver):
    """connect() shares ports across destinations: 30 sockets to 2 destinations in a
    20-port range hold at most 20 ports; the finding compares ports with ports."""
    ns, drive = ns_driver
    ns.sysctl("net.ipv4.ip_local_port_range", "40000 40019")
    for _, p in DESTS:
        drive(op="listen", port=p)
    assert drive(op="open", dests=DESTS, n=30)["opened"] == [15, 15]
    ss = ns.run("ss", "-Htn", "state", "established", "( dport = :5001 or dport = :5002 )").stdout
    ports = {ln.split()[2].rsplit(":", 1)[1] for ln in ss.splitlines() if ln.strip()}
    f = finding(analyze_ns(ns, process=True), "process-dominant")
    assert f.evidence["in_use"] == 30 and f.evidence["ports"] == len(ports) <= 20
    assert f"owns 30 of 30 client sockets (100.0%), holding {len(ports)} of the 20 usable ports" in f.message
    pcts = [float(x) for x in re.findall(r"([0-9.]+)%", f.message)]
    assert pcts and max(pcts) <= 100.0


def test_pool_empty_when_everything_is_reserved(ns_driver):
    ns, drive = ns_driver
    ns.sysctl("net.ipv4.ip_local_port_range", "40000 40019")
    ns.sysctl("net.ipv4.ip_local_reserved_ports", "40000-40019")
    drive(op="listen", port=5001)
    res = analyze_ns(ns)
    assert res.global_.capacity == 0 and res.new_destination_capacity() == 0
    assert finding(res, "pool-empty").severity == "critical"
    out = drive(op="open", dests=DESTS[:1], n=1)            # the kernel agrees
    assert out["opened"] == [0] and out["error"] == "EADDRNOTAVAIL"
