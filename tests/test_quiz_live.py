"""Questions generated from the host: compared with sysctl and ss, on this host and in
private namespaces set up to differ from the defaults."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from portscope import quiz
from portscope.errors import SystemReadError
from portscope.quiz import checks, live

TOPICS = [t.id for t in quiz.load().topics]


def by_id(gen) -> dict:
    return {q.id: q for q in gen.questions}


def right(q) -> str:
    return q.choices[q.answer - 1]


@pytest.mark.live
def test_live_questions_on_this_host_match_sysctl():
    out = subprocess.run(["sysctl", "-n", "net.ipv4.ip_local_port_range",
                          "net.ipv4.ip_unprivileged_port_start"], capture_output=True, text=True, check=True)
    (low, high), start = out.stdout.split("\n")[0].split(), int(out.stdout.split("\n")[1])
    for seed in range(6):
        qs = by_id(live.generate(seed))
        assert right(qs["live-range"]) == f"{low}-{high}"
        assert int(right(qs["live-range-size"]).replace(",", "")) == int(high) - int(low) + 1
        p = int(re.search(r"binding port (\d+)", qs["live-privileged"].question).group(1))
        assert (qs["live-privileged"].answer == 1) == (p < start)
        assert qs["live-privileged"].question.startswith(f"On this host, does binding port {p} need root")
        assert "`portscope range` shows it" in qs["live-range"].explanation
        assert qs["live-range"].ref == "portscope range"


@pytest.mark.parametrize("seed", range(12))
def test_live_questions_are_well_formed_and_checked(seed):
    gen = live.generate(seed)
    assert tuple(q.id for q in gen.questions) == live.LIVE_IDS
    for q in gen.questions:
        assert q.live
        assert quiz.question_problems(q.to_json(), TOPICS) == [], q.id
        assert checks.verify(q) == [], q.id


def test_live_is_reproducible_per_seed():
    assert live.generate(3) == live.generate(3)
    ports = {re.search(r"port (\d+)", by_id(live.generate(s))["live-privileged"].question).group(1)
             for s in range(20)}
    assert len(ports) >= 3   # the seed really varies the question


GENERATE_JSON = ("import json, sys; from portscope.quiz import live; "
                 "print(json.dumps([q.to_json() for q in live.generate({seed}).questions]))")


def test_live_without_a_seed_is_the_same_in_every_process():
    # `quiz --list` lists the live questions without a seed: the same host must list the
    # same questions, distractors and answer positions every time, whatever the process
    runs = {subprocess.run([sys.executable, "-c", GENERATE_JSON.format(seed=None)], check=True,
                           capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": str(h)}).stdout
            for h in (1, 2, 3)}
    assert len(runs) == 1
    assert live.generate(None) == live.generate(None) == live.generate()
    assert [q["id"] for q in json.loads(runs.pop())] == list(live.LIVE_IDS)


LISTENER = """
import socket, sys, time
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", 22)); t.listen(8)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 53))
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.connect(("127.0.0.1", 9))  # connected: not a listener
print("ready", flush=True)
time.sleep(60)
"""


def test_live_questions_in_a_changed_namespace(netns):
    netns.sysctl("net.ipv4.ip_unprivileged_port_start", "500")
    netns.sysctl("net.ipv4.ip_local_port_range", "40000 40999")
    netns.sysctl("net.ipv4.ip_local_reserved_ports", "40000-40009")
    p = netns.popen(sys.executable, "-c", LISTENER,
                    stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        ss = netns.run("ss", "-Htuln").stdout
        assert re.search(r"tcp\s+LISTEN.*:22\s", ss) and re.search(r"udp\s+UNCONN.*127\.0\.0\.1:53\s", ss)
        assert live.listening(netns.name) == [("tcp", 22), ("udp", 53)]
        asked = set()
        for seed in range(10):
            gen = live.generate(seed, netns=netns.name)
            assert gen.notes == ()
            qs = by_id(gen)
            assert right(qs["live-range"]) == "40000-40999"
            assert f"network namespace {netns.name}" in qs["live-range"].question
            # the commands shown run in the same namespace
            assert f"`portscope --netns {netns.name} range` shows it" in qs["live-range"].explanation
            assert qs["live-range"].ref == f"portscope --netns {netns.name} range"
            for q in gen.questions:
                assert not re.search(r"`portscope (range|port)\b", q.explanation), q.explanation
            assert right(qs["live-range-size"]) == "1,000"
            assert "10 of them are in the reserved list" in qs["live-range-size"].explanation
            assert "990 per destination" in qs["live-range-size"].explanation
            p_port = int(re.search(r"binding port (\d+)", qs["live-privileged"].question).group(1))
            assert (qs["live-privileged"].answer == 1) == (p_port < 500)
            assert qs["live-privileged"].question.startswith(f"In network namespace {netns.name}, does binding port")
            assert f"`portscope --netns {netns.name} port {p_port}` shows it" in qs["live-privileged"].explanation
            svc = qs["live-service"]
            m = re.fullmatch(rf"In network namespace {netns.name}, a (TCP|UDP) socket is listening on port (\d+) "
                             r"right now\. Which service does IANA register on \1 port \2\?", svc.question)
            assert m, svc.question
            proto, port = m.group(1).lower(), int(m.group(2))
            assert f"`portscope --netns {netns.name} port {port}` shows both" in svc.explanation
            assert right(svc) == {("tcp", 22): "ssh", ("udp", 53): "domain"}[(proto, port)]
            asked.add((proto, port))
            for q in gen.questions:
                assert checks.verify(q) == [], q.id
        assert asked == {("tcp", 22), ("udp", 53)}   # the seed picks among the listeners
    finally:
        p.kill()
        p.wait(timeout=10)


def test_live_service_falls_back_when_nothing_listens(netns):
    assert live.listening(netns.name) == []
    gen = live.generate(1, netns=netns.name)
    qs = by_id(gen)
    assert tuple(qs) == live.LIVE_IDS
    svc = qs["live-service"]
    assert svc.question.startswith(f"Nothing in network namespace {netns.name} listens on a registered port")
    assert svc.check["port"] in live.COMMON_PORTS
    assert checks.verify(svc) == []
    assert gen.notes == (f"nothing in network namespace {netns.name} listens on a port IANA names; "
                         f"asked about tcp/{svc.check['port']} instead",)
    # a fresh namespace has the kernel defaults
    assert right(qs["live-range"]) == "32768-60999"


def test_live_survives_an_unreadable_socket_table(monkeypatch):
    def boom(*a, **k):
        raise SystemReadError("cannot read /proc/net/tcp")
    monkeypatch.setattr(live, "listening", boom)
    gen = live.generate(2)
    assert [q.id for q in gen.questions] == ["live-range", "live-range-size", "live-privileged"]
    assert "live-service skipped" in gen.notes[0]


def test_live_skips_everything_when_facts_fail(monkeypatch):
    import portscope.host as host

    def boom(netns=None):
        raise SystemReadError("/proc/sys/net/ipv4/ip_local_port_range is missing")
    monkeypatch.setattr(host, "host_facts", boom)
    gen = live.generate(2)
    assert gen.questions == () and "cannot read" in gen.notes[0]


def _run_fact(cmd: str) -> str:
    """Run a host-fact command the way a learner would paste it (portscope from this venv)."""
    if cmd.startswith("portscope ") or " portscope " in cmd:
        cmd = cmd.replace("portscope ", os.path.join(os.path.dirname(sys.executable), "portscope") + " ", 1)
    r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (cmd, r.stderr)
    return r.stdout


def _assert_facts_hold(gen):
    """Every live question names what it was built from, and running the named command
    on the machine shows that value: the learner can verify the question."""
    checked = 0
    for q in gen.questions:
        assert q.source and q.source.startswith("this host: ") and q.host_facts, q.id
        for h in q.host_facts:
            assert set(h) == {"fact", "value", "command"}
            if h["command"] is None:
                continue
            out = _run_fact(h["command"])
            if h["command"].endswith(("cat /proc/sys/net/ipv4/ip_local_port_range",
                                      "cat /proc/sys/net/ipv4/ip_unprivileged_port_start",
                                      "cat /proc/sys/net/ipv4/ip_local_reserved_ports")):
                assert " ".join(out.split()) == h["value"], (h, out)
            elif " ss " in f" {h['command']}":
                assert out.strip(), h          # the listener the question names is there
            else:                              # portscope port P --proto X names the service
                assert h["value"] in out, (h, out)
            assert f"`{h['command']}` shows" in q.source
            checked += 1
    return checked


def test_live_host_facts_can_be_checked_on_this_host():
    assert _assert_facts_hold(live.generate(3)) >= 4


def test_live_host_facts_in_a_namespace(netns):
    netns.sysctl("net.ipv4.ip_unprivileged_port_start", "500")
    netns.sysctl("net.ipv4.ip_local_port_range", "40000 40999")
    netns.sysctl("net.ipv4.ip_local_reserved_ports", "40000-40009,40500")
    p = netns.popen(sys.executable, "-c", LISTENER, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        gen = live.generate(4, netns=netns.name)
        qs = by_id(gen)
        facts = {h["fact"]: h for q in gen.questions for h in q.host_facts}
        assert facts["net.ipv4.ip_local_port_range"]["value"] == "40000 40999"
        assert facts["net.ipv4.ip_local_reserved_ports"]["value"] == "40000-40009,40500"
        assert facts["net.ipv4.ip_unprivileged_port_start"]["value"] == "500"
        # the commands run in the namespace, not on the host (whose values differ)
        for q in gen.questions:
            for h in q.host_facts:
                assert h["command"].startswith(f"ip netns exec {netns.name} ") or \
                    h["command"].startswith(f"portscope --netns {netns.name} "), h
        assert _assert_facts_hold(gen) >= 5
        assert "Built from" not in qs["live-range"].explanation   # the source is its own field
    finally:
        p.kill()
        p.wait(timeout=10)
