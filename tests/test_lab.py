"""`portscope lab exhaust` against the real kernel, each run inside its own lab namespace.

Ground truth is the kernel itself: how many connect()/bind() calls succeeded before it
refused, the errno it refused with, and `ss` run inside the namespace at that moment.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import ENTRY, Netns, host_sysctls, needs_netns
from portscope import lab
from portscope.errors import BadInput
from portscope.ports import PortRange, PortSet

RANGE = PortRange(40000, 40099)          # 100 ports, ends of different parity


def ss_in(ns: str, *args: str) -> list[list[str]]:
    return Netns(ns).ss("-n", *args)


def client_ports(rows: list[list[str]], dst: str) -> list[int]:
    """Local ports of established client sockets toward dst (state recvq sendq local peer)."""
    return [int(r[3].rsplit(":", 1)[1]) for r in rows if r[0] == "ESTAB" and r[4] == dst]


def run(plan: lab.Plan, at_refusal=None) -> lab.LabResult:
    """run_exhaust, calling at_refusal(namespace, step) while the refused state is live."""
    seen = {}

    def ready(name):
        seen["ns"] = name

    def step(s):
        if s.phase == "refused" and at_refusal:
            at_refusal(seen["ns"], s)

    res = lab.run_exhaust(plan, on_step=step, on_ready=ready)
    assert res.namespace not in lab.lab_namespaces()
    return res


def live_pressure(ns: str, proto: str):
    from portscope import pressure
    from portscope.host import facts
    from portscope.sockets import snapshot
    hf = facts(ns)
    return pressure.analyze(hf, snapshot((proto,), families=(4,), netns=ns, facts=hf))


# ------------------------------------------------------------------ no root needed

@pytest.mark.parametrize("kw, msg", [
    (dict(mode="bogus"), "unknown mode"),
    (dict(destinations=0), "--destinations"),
    (dict(destinations=65), "--destinations"),
    (dict(max_connects=0), "--max-connects"),
    (dict(timeout=0), "--timeout"),
    (dict(hold=-1), "--hold"),
    (dict(tw_reuse=3), "--tw-reuse"),
    (dict(listeners_in_range=100), "--listeners-in-range"),
    (dict(listeners_in_range=-1), "--listeners-in-range"),
    (dict(family=5), "--family"),
    (dict(range=PortRange(500, 600)), "1024"),
    (dict(range=PortRange(5000, 5000)), "at least 2"),
])
def test_plan_rejects_bad_input(kw, msg):
    with pytest.raises(BadInput, match=msg):
        lab.Plan(**kw).validate()


def test_listen_port_stays_outside_the_range():
    # ranges start at 1024 or above, so port 80 never takes one of their ports
    assert lab.Plan().listen_port == 80
    assert lab.Plan(range=PortRange(1024, 65535)).listen_port == 80


@pytest.mark.live                 # `ip netns list` shows that nothing was created
def test_cli_bad_input_is_one_line_exit_2(cli):
    before = lab_namespaces_safe()
    for args in (["--range", "100-200"], ["--range", "nope"], ["-k", "0"], ["--reserve", "1-2-3"]):
        code, out, err = cli("lab", "exhaust", *args)
        assert code == 2, (args, code, out, err)
        assert len(err.strip().splitlines()) == 1 and err.startswith("portscope: error: "), err
    code, out, err = cli("lab", "exhaust", "--mode", "bogus")   # click's own usage error
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [err.strip()] and "Invalid value for '--mode'" in err
    assert lab_namespaces_safe() == before           # nothing was created


def lab_namespaces_safe() -> list[str]:
    try:
        return lab.lab_namespaces()
    except FileNotFoundError:   # no `ip`
        return []


@needs_netns
def test_not_root_exits_3_with_one_line(nobody_portscope):
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *nobody_portscope,
                        "lab", "exhaust"], capture_output=True, text=True, timeout=60,
                       cwd="/", env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert r.returncode == 3, r
    assert r.stderr.strip() == ("portscope: error: lab exhaust needs root: it creates a private "
                                "network namespace (try sudo)")


# ------------------------------------------------------------------ the four modes, live

@needs_netns
def test_connect_each_destination_exhausts_independently_at_capacity():
    checks = []

    def at_refusal(ns, s):
        rows = ss_in(ns, "-t")
        dsts = [f"127.0.0.{2 + j}:80" for j in range(2)]
        per = {d: client_ports(rows, d) for d in dsts}
        r = live_pressure(ns, "tcp")
        util = {f"{d.dst}:{d.dport}": d.utilization for d in r.destinations}
        checks.append((s.destination, per, util))

    res = run(lab.Plan(range=RANGE, destinations=2, mode="connect"), at_refusal)
    assert res.stop_reason == "refused"
    assert [d.opened for d in res.destinations] == [RANGE.size, RANGE.size]
    assert [d.predicted for d in res.destinations] == [RANGE.size, RANGE.size]
    assert all(d.errno_name == "EADDRNOTAVAIL" and d.call == "connect" for d in res.destinations)
    assert all(d.utilization_at_refusal == 1.0 for d in res.destinations)
    assert res.match is True

    # when the first destination refused, ss saw exactly the range toward it
    first, per, util = checks[0]
    assert first == "127.0.0.2:80"
    assert sorted(per["127.0.0.2:80"]) == list(range(RANGE.low, RANGE.high + 1))
    assert util["127.0.0.2:80"] == 1.0
    # when the second refused: the same 100 ports again (shared across destinations), and
    # analyze() on the live table says 100% for both
    _, per, util = checks[1]
    assert sorted(per["127.0.0.3:80"]) == list(range(RANGE.low, RANGE.high + 1))
    assert len(per["127.0.0.2:80"]) == RANGE.size
    assert util == {"127.0.0.2:80": 1.0, "127.0.0.3:80": 1.0}


@needs_netns
def test_bind_connect_exhausts_the_global_pool():
    seen = []

    def at_refusal(ns, s):
        rows = ss_in(ns, "-t")
        seen.append(sum(len(client_ports(rows, f"127.0.0.{2 + j}:80")) for j in range(3)))

    res = run(lab.Plan(range=RANGE, destinations=3, mode="bind-connect"), at_refusal)
    assert res.global_start.global_capacity == RANGE.size
    assert res.opened_total == RANGE.size                    # N in total, not per destination
    assert [d.opened for d in res.destinations] == [RANGE.size, 0, 0]
    assert [d.predicted for d in res.destinations] == [RANGE.size, 0, 0]
    assert all(d.errno_name == "EADDRINUSE" and d.call == "bind" for d in res.destinations)
    assert res.global_end.global_utilization == 1.0
    assert seen == [RANGE.size] * 3
    assert res.match is True


@needs_netns
def test_bind_connect_with_reserved_ports_loses_exactly_those():
    reserved = PortSet.parse("40010-40019,40050")
    res = run(lab.Plan(range=RANGE, destinations=2, mode="bind-connect", reserved=reserved))
    assert res.global_start.global_capacity == RANGE.size - 11
    assert res.opened_total == RANGE.size - 11
    assert res.match is True


@needs_netns
def test_bind_no_port_is_per_destination_again():
    res = run(lab.Plan(range=RANGE, destinations=2, mode="bind-no-port"))
    assert [d.opened for d in res.destinations] == [RANGE.size, RANGE.size]
    assert [d.predicted for d in res.destinations] == [RANGE.size, RANGE.size]
    assert all(d.errno_name == "EADDRNOTAVAIL" and d.call == "connect" for d in res.destinations)
    assert all(d.utilization_at_refusal == 1.0 for d in res.destinations)
    assert res.match is True


@needs_netns
@pytest.mark.parametrize("mode", ["connect", "bind-connect"])
def test_equal_parity_range_predicts_the_guaranteed_count_and_the_possible_extra(mode):
    # 11 ports with equal-parity ends: connect() and bind(0) scan a 10-port window whose
    # start moves, so the kernel gives 10 or 11; portscope says "10, or 11"
    rng = PortRange(40000, 40010)
    res = run(lab.Plan(range=rng, destinations=3, mode=mode))
    first = res.destinations[0]
    assert (first.predicted, first.slack) == (10, 1) and first.opened in (10, 11)
    assert all(d.predicted <= d.opened <= d.predicted + d.slack for d in res.destinations)
    assert res.match is True
    if mode == "bind-connect":   # one pool for every destination: 10 or 11 in all
        assert sum(d.opened for d in res.destinations) in (10, 11)


@needs_netns
def test_udp_connect_exhausts_globally_with_eagain():
    seen = []

    def at_refusal(ns, s):
        rows = ss_in(ns, "-u", "-a")
        ports = {int(r[3].rsplit(":", 1)[1]) for r in rows if r[4].startswith("127.0.0.")}
        seen.append(ports)

    res = run(lab.Plan(range=RANGE, destinations=2, mode="udp"), at_refusal)
    assert [d.opened for d in res.destinations] == [RANGE.size, 0]
    assert [d.predicted for d in res.destinations] == [RANGE.size, 0]
    assert all(d.errno_name == "EAGAIN" for d in res.destinations)
    assert seen[0] == set(range(RANGE.low, RANGE.high + 1))
    assert res.global_end.global_utilization == 1.0
    assert res.match is True


# ------------------------------------------------------------------ bounds

@needs_netns
def test_max_connects_and_timeout_bound_the_run():
    res = run(lab.Plan(range=RANGE, destinations=1, max_connects=30))
    assert res.stop_reason == "max-connects"
    assert res.opened_total == 30
    assert res.destinations[0].errno is None and res.match is None
    res = run(lab.Plan(range=PortRange(30000, 60999), destinations=1, timeout=0.3))
    assert res.stop_reason == "timeout"
    assert 0 < res.opened_total < 31000
    assert res.elapsed_s < 20   # set-up and predictions included


# ------------------------------------------------------------------ CLI

@needs_netns
def test_cli_json_and_text(cli):
    code, out, err = cli("lab", "exhaust", "--mode", "bind-no-port", "-k", "2", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["mode"] == "bind-no-port" and d["match"] is True and d["stop_reason"] == "refused"
    assert [x["opened"] for x in d["destinations"]] == [100, 100]
    assert {x["errno_name"] for x in d["destinations"]} == {"EADDRNOTAVAIL"}
    assert d["namespace"] not in lab.lab_namespaces()
    phases = [s["phase"] for s in d["steps"] if s["destination"] == "127.0.0.2:80"]
    assert phases == ["start", "25%", "50%", "75%", "refused"]

    code, out, err = cli("lab", "exhaust", "--mode", "udp", "--range", "41000-41049", "-k", "2")
    assert code == 0, err
    assert "predicted: capacity" in out and "kernel: opened" in out
    assert "127.0.0.2:80: portscope predicted 50, the kernel opened 50 then EAGAIN on connect(): as predicted" in out
    assert "127.0.0.3:80: portscope predicted 0, the kernel opened 0 then EAGAIN on connect(): as predicted" in out
    assert "removed lab namespace" in out


# ------------------------------------------------------------------ clean-up on signals

def _start(*args: str) -> tuple[subprocess.Popen, str]:
    # a shell's background job inherits SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: give the child the default disposition, as a terminal would
    p = subprocess.Popen([*ENTRY, "lab", "exhaust", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    first = p.stdout.readline()
    assert first.startswith("lab namespace pslab-"), (first, p.stderr.read() if p.poll() is not None else "")
    return p, first.split()[2].rstrip(":")


def _wait_for_line(p: subprocess.Popen, needle: str, limit: float = 30) -> None:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        line = p.stdout.readline()
        if needle in line:
            return
        if not line and p.poll() is not None:
            break
    raise AssertionError(f"{needle!r} never printed")


@needs_netns
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_while_holding_removes_the_namespace(sig):
    p, ns = _start("--hold", "60")
    try:
        _wait_for_line(p, "holding for")
        assert ns in lab.lab_namespaces()
        p.send_signal(sig)
        rc = p.wait(timeout=20)
        err = p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
    assert rc == 130, err
    assert f"interrupted: removed lab namespace {ns}" in err
    assert "Traceback" not in err
    assert ns not in lab.lab_namespaces()


@needs_netns
def test_ctrl_c_in_the_middle_of_filling_removes_the_namespace():
    # the full default range to one destination takes seconds: interrupt after the 25% step
    p, ns = _start("--range", "32768-60999", "-k", "1", "--max-connects", "19000")
    try:
        _wait_for_line(p, " 25% ")
        assert ns in lab.lab_namespaces()
        p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=30)
        err = p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
    assert rc == 130, err
    assert ns not in lab.lab_namespaces()


@needs_netns
def test_clean_removes_only_namespaces_no_live_lab_holds(cli):
    """Liveness is the lab's flock, not the pid in the name: a namespace named after a live
    pid (ours: a reused pid looks the same) but unlocked is stale; a locked one is kept."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"{lab.NS_PREFIX}-{dead.pid}-t{os.urandom(2).hex()}"
    reused = f"{lab.NS_PREFIX}-{os.getpid()}-t{os.urandom(2).hex()}"
    live = f"{lab.NS_PREFIX}-{os.getpid()}-t{os.urandom(2).hex()}"
    lock = lab._take_lock(live, wait=True)
    try:
        for n in (stale, reused, live):
            subprocess.run(["ip", "netns", "add", n], check=True)
        code, out, err = cli("lab", "clean", "--json")
        assert code == 0, err
        assert {stale, reused} <= set(json.loads(out)["removed"])
        assert stale not in lab.lab_namespaces() and reused not in lab.lab_namespaces()
        assert live in lab.lab_namespaces()
    finally:
        lab._release_lock(live, lock)
        for n in (stale, reused, live):
            subprocess.run(["ip", "netns", "delete", n], capture_output=True)


@needs_netns
def test_clean_right_after_sigkill_removes_the_lab():
    """Issue 12: `timeout -s KILL` then an immediate `lab clean` used to find nothing."""
    p, ns = _start("--range", "40000-40999", "--hold", "30")
    try:
        _wait_for_line(p, "holding for")
        code = subprocess.run([*ENTRY, "lab", "clean", "--json"], capture_output=True, text=True, timeout=60)
        assert ns not in json.loads(code.stdout)["removed"]          # alive: kept
        assert ns in lab.lab_namespaces()
        p.kill()
        p.wait(timeout=10)
        r = subprocess.run([*ENTRY, "lab", "clean", "--json"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert ns in json.loads(r.stdout)["removed"]
        assert ns not in lab.lab_namespaces()
        assert not os.path.exists(lab._lock_path(ns))
    finally:
        if p.poll() is None:
            p.kill()
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


@needs_netns
@pytest.mark.parametrize("mode, parity", [("connect", 0), ("bind-connect", 1)])
def test_first_half_uses_the_documented_parity(mode, parity):
    # facts.md section 1: connect() tries ports of LOW's parity first (even for 40000),
    # bind(0) the other parity first; so at the 50% step every port has the same parity
    seen = {}

    def step(s):
        if s.phase == "50%":
            rows = ss_in(seen["ns"], "-t")
            seen["ports"] = client_ports(rows, s.destination)

    lab.run_exhaust(lab.Plan(range=RANGE, destinations=1, mode=mode), on_step=step,
                    on_ready=lambda n: seen.update(ns=n))
    assert len(seen["ports"]) == RANGE.size // 2
    assert {p % 2 for p in seen["ports"]} == {parity}


@needs_netns
def test_connect_close_time_wait_still_holds_the_ports():
    # the client closes first, so each port sits in TIME_WAIT (60 s) and still counts;
    # tcp_tw_reuse=0 so that loopback reuse (the default 2) cannot hand it back early
    seen = []

    def at_refusal(ns, s):
        rows = ss_in(ns, "-t", "-a")
        seen.append([int(r[3].rsplit(":", 1)[1]) for r in rows
                     if r[0] == "TIME-WAIT" and r[4] == s.destination])

    res = run(lab.Plan(range=RANGE, destinations=2, mode="connect-close", tw_reuse=0), at_refusal)
    assert [d.opened for d in res.destinations] == [RANGE.size, RANGE.size]
    assert [d.predicted for d in res.destinations] == [RANGE.size, RANGE.size]
    assert all(d.errno_name == "EADDRNOTAVAIL" for d in res.destinations)
    assert [sorted(p) for p in seen] == [list(range(RANGE.low, RANGE.high + 1))] * 2
    refused = [s for s in res.steps if s.phase == "refused"]
    assert [s.predicted.time_wait for s in refused] == [RANGE.size, RANGE.size]
    assert res.match is True


@needs_netns
@pytest.mark.parametrize("mode, per_dest", [("connect", True), ("bind-connect", False),
                                            ("udp", False)])
def test_servers_inside_the_range_take_exactly_their_ports(mode, per_dest):
    plan = lab.Plan(range=RANGE, destinations=2, mode=mode, listeners_in_range=7)
    assert len(plan.in_range_ports()) == 7
    res = run(plan)
    n = RANGE.size - 7
    # the kernel: explicitly bound ports are never handed out by connect() or bind(0)
    assert [d.opened for d in res.destinations] == ([n, n] if per_dest else [n, 0])
    # portscope, for the first destination (and for the pool)
    assert res.destinations[0].predicted == n
    assert res.global_start.global_in_use == 7
    if not per_dest:
        assert res.match is True


@needs_netns
def test_servers_inside_the_range_prediction_for_a_fresh_destination():
    res = run(lab.Plan(range=RANGE, destinations=2, mode="connect", listeners_in_range=7))
    assert [d.opened for d in res.destinations] == [93, 93]
    assert [d.predicted for d in res.destinations] == [93, 93]


@needs_netns
@pytest.mark.parametrize("mode, per_dest, err", [("connect", True, "EADDRNOTAVAIL"),
                                                 ("bind-connect", False, "EADDRINUSE"),
                                                 ("bind-no-port", True, "EADDRNOTAVAIL"),
                                                 ("udp", False, "EAGAIN")])
def test_ipv6_same_range_same_rules(mode, per_dest, err):
    # IPv6 draws from the same ip_local_port_range; destinations differ by port on [::1]
    seen = []

    def at_refusal(ns, s):
        rows = ss_in(ns, "-6", "-u" if mode == "udp" else "-t", "-a")
        seen.append(len([r for r in rows if r[4] == s.destination and r[0] == "ESTAB"]))

    res = run(lab.Plan(range=RANGE, destinations=2, mode=mode, family=6), at_refusal)
    n = RANGE.size
    assert [(d.dst, d.dport) for d in res.destinations] == [("::1", 80), ("::1", 81)]
    assert [d.opened for d in res.destinations] == ([n, n] if per_dest else [n, 0])
    assert [d.predicted for d in res.destinations] == ([n, n] if per_dest else [n, 0])
    assert {d.errno_name for d in res.destinations} == {err}
    assert seen == ([n, n] if per_dest else [n, 0])
    assert res.match is True


@needs_netns
def test_the_host_is_never_touched():
    home = os.stat("/proc/thread-self/ns/net").st_ino
    before = host_sysctls()
    run(lab.Plan(range=PortRange(41000, 41009), destinations=1, mode="connect-close",
                 reserved=PortSet.parse("41003"), tw_reuse=0, listeners_in_range=2))
    assert os.stat("/proc/thread-self/ns/net").st_ino == home   # the thread came back
    assert host_sysctls() == before
    assert before["net/ipv4/ip_local_port_range"].split() != ["41000", "41009"]


@needs_netns
def test_portscope_pressure_in_another_process_sees_100_percent_per_destination():
    # the wording: at exhaustion `pressure` reports 100% for each destination
    p, ns = _start("-k", "2", "--hold", "60")
    try:
        _wait_for_line(p, "holding for")
        r = subprocess.run([*ENTRY, "pressure", "--netns", ns, "--json"], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        d = json.loads(r.stdout)
        got = {(x["dst"], x["dport"]): (x["in_use"], x["capacity"], x["utilization"])
               for x in d["destinations"]}
        assert got == {("127.0.0.2", 80): (100, 100, 1.0), ("127.0.0.3", 80): (100, 100, 1.0)}
        assert d["global"]["utilization"] == 1.0
        p.send_signal(signal.SIGINT)
        p.wait(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
        subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
    assert ns not in lab.lab_namespaces()


@needs_netns
def test_a_wrong_prediction_is_reported_and_exits_1(cli, monkeypatch):
    # a model that is off by one: the kernel's count must expose it
    real = lab.portscope_predictor

    def off_by_one(plan, ns):
        predict = real(plan, ns)

        def p(dst, port):
            x = predict(dst, port)
            return lab.Prediction(x.capacity - 1, x.in_use, x.utilization, x.global_in_use,
                                  x.global_capacity, x.global_utilization, x.time_wait)
        return p

    monkeypatch.setattr(lab, "portscope_predictor", off_by_one)
    code, out, err = cli("lab", "exhaust", "-k", "1")
    assert code == 1, (out, err)
    assert "127.0.0.2:80: portscope predicted 99, the kernel opened 100 then EADDRNOTAVAIL on connect(): MISMATCH" in out
    assert "removed lab namespace" in out
