"""Who may bind a low port, per platform (privilege.py), from recorded host output; and
on Linux, against what the kernel does for an unprivileged user in a private namespace."""
from __future__ import annotations

import json
import random

import pytest

from portscope import portinfo
from portscope.host import bsd
from portscope.privilege import ANY, ROOT, WILDCARD, rule
from portscope.quiz import checks, live
from portscope import quiz
from test_host_backends import BACKENDS, sample

MOJAVE, HIGH_SIERRA = BACKENDS["darwin"], BACKENDS["darwin-10.13"]


def test_rule_per_platform():
    assert rule(MOJAVE()).who_may_bind(80) == WILDCARD
    assert rule(MOJAVE()).who_may_bind(1024) == ANY
    assert rule(HIGH_SIERRA()).who_may_bind(80) == ROOT
    assert rule(BACKENDS["freebsd"]()).who_may_bind(80) == ROOT
    assert rule(BACKENDS["windows-en"]()).who_may_bind(80) == ANY
    linux = rule(BACKENDS["linux-live"]())
    assert linux.who == "root or CAP_NET_BIND_SERVICE" and not linux.wildcard_free
    # the wildcard exemption is macOS 10.14+ only
    assert rule(MOJAVE()).needs_privilege(80) and not rule(MOJAVE()).needs_privilege(80, wildcard=True)
    assert rule(HIGH_SIERRA()).needs_privilege(80, wildcard=True)


def test_freebsd_window_has_a_low_end():
    text = (sample("freebsd_sysctl_portrange.txt")
            .replace("reservedlow: 0", "reservedlow: 100"))
    f = bsd.facts_from_sysctl(text, "freebsd")
    assert f.privileged_low == 100
    r = rule(f)
    assert not r.needs_privilege(99) and r.needs_privilege(100) and r.needs_privilege(1023)
    assert not portinfo.describe_port(99, facts=f, in_use=False, cap=False).privileged
    assert portinfo.describe_port(100, facts=f, in_use=False, cap=False).privileged


@pytest.mark.parametrize("name,privileged,who,must,must_not", [
    ("darwin", True, WILDCARD, ["wildcard address", "specific address needs root", "macOS 10.14"],
     ["CAP_NET_BIND_SERVICE", "ip_unprivileged_port_start"]),
    ("darwin-10.13", True, ROOT, ["binding needs root", "this process is not root"],
     ["CAP_NET_BIND_SERVICE", "wildcard"]),
    ("freebsd", True, ROOT, ["reservedlow", "binding needs root"], ["CAP_NET_BIND_SERVICE"]),
    ("linux-live", True, ROOT, ["CAP_NET_BIND_SERVICE", "ip_unprivileged_port_start=1024"], ["wildcard"]),
    ("windows-en", False, ANY, [], ["root", "CAP_NET_BIND_SERVICE"]),
])
def test_port_80_is_described_in_the_platforms_own_terms(name, privileged, who, must, must_not):
    f = BACKENDS[name]()
    if name == "linux-live":
        f = f.replace(unprivileged_port_start=1024)
    pf = portinfo.describe_port(80, facts=f, in_use=False, cap=False)
    assert pf.privileged is privileged and pf.who_may_bind == who
    assert pf.to_json()["who_may_bind"] == who
    notes = " ".join(pf.notes)
    for w in must:
        assert w in notes, (name, notes)
    for w in must_not:
        assert w not in notes, (name, notes)


@pytest.mark.parametrize("name", ["darwin", "darwin-10.13", "freebsd", "windows-en", "linux-live"])
def test_live_privileged_question_per_platform(name):
    f = BACKENDS[name]()
    seen = set()
    for seed in range(40):
        q = live.privileged_question(f, random.Random(seed))
        assert quiz.question_problems(q.to_json(), ["privileged"]) == []
        assert checks.verify(q) == [], (name, q.question)
        for other in range(1, len(q.choices) + 1):      # the check is not vacuous
            if other != q.answer:
                assert checks.verify(quiz.Question(**{**q.__dict__, "answer": other}))
        text = q.question + " " + q.explanation + " " + " ".join(q.choices)
        assert ("CAP_NET_BIND_SERVICE" in q.question) is (f.os == "linux")
        if f.os != "linux":   # named only to say it is Linux's, never as the rule here
            assert "CAP_NET_BIND_SERVICE" not in text or "Linux capability" in text
        assert q.host_facts and q.source.startswith("this host: ")
        seen.add(q.answer)
    if name == "darwin":
        # ports below 1024 give "wildcard only", 1024 and up "any address"
        assert seen == {1, 2}
    if name == "windows-en":
        assert seen == {2}


def test_macos_question_names_the_version_fact():
    q = live.privileged_question(MOJAVE(), random.Random(1))
    (h,) = q.host_facts
    assert h["command"] == "sysctl kern.osrelease" and h["value"] == "18.7.0"
    assert "macOS 10.14 or later" in q.question


UNPRIV_BIND = r"""
import json, os, socket
os.setgroups([]); os.setgid(65534); os.setuid(65534)
out = {}
for addr in ("0.0.0.0", "127.0.0.1"):
    s = socket.socket()
    try:
        s.bind((addr, 80)); out[addr] = True
    except PermissionError:
        out[addr] = False
    finally:
        s.close()
print(json.dumps(out))
"""


def test_linux_has_no_wildcard_exemption(netns):
    """The macOS 10.14 rule is not Linux's: an unprivileged user is refused port 80 on the
    wildcard address too, as the Linux rule says."""
    d = json.loads(netns.python(UNPRIV_BIND).stdout)
    from portscope.host import facts
    r = rule(facts(netns.name))
    assert d == {"0.0.0.0": not r.needs_privilege(80, wildcard=True),
                 "127.0.0.1": not r.needs_privilege(80)} == {"0.0.0.0": False, "127.0.0.1": False}


@pytest.mark.parametrize("name,priv_line,range_line", [
    ("darwin", "yes: below 1024 (IPPORT_RESERVED): since macOS 10.14 any user may bind it on the wildcard address",
     "any user may bind them on the wildcard address (macOS 10.14+)"),
    ("darwin-10.13", "yes: below 1024 (the fixed IPPORT_RESERVED boundary 1024): binding needs root",
     "Privileged ports: 0-1023 (binding needs root)"),
    ("windows-en", "no: anyone may bind it", "Privileged ports: none"),
])
def test_port_and_range_text_on_other_systems(cli, monkeypatch, name, priv_line, range_line):
    """`portscope port 80` and `portscope range` fed with a recorded macOS/Windows host say that
    host's rule, not Linux's (issue 18: port N on macOS inherited the CAP_NET_BIND_SERVICE claim)."""
    import portscope.host as phost
    from portscope import portinfo
    f = BACKENDS[name]()
    monkeypatch.setattr(phost, "host_facts", lambda netns=None: f)      # what `range` reads
    monkeypatch.setattr(portinfo, "read_facts", lambda netns=None: f)   # what `port` reads
    code, out, err = cli("port", "80")
    assert code == 0, err
    flat = " ".join(out.split())
    assert priv_line in flat, flat
    assert "CAP_NET_BIND_SERVICE" not in out and "ip_unprivileged_port_start" not in out
    code, out, err = cli("port", "80", "--json")
    assert json.loads(out)["who_may_bind"] == rule(f).who_may_bind(80)
    code, out, err = cli("range")
    flat = " ".join(out.split())
    assert range_line in flat, flat
    assert f"TIME_WAIT: {f.time_wait_seconds} s ({f.time_wait_source})" in flat
