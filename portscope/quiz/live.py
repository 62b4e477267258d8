"""Questions generated from this host (or one network namespace), with the library.

Their answers come from the same code `portscope range`, `portscope port` and
`portscope conns` use, so they are right on any machine. The ids are fixed
(LIVE_IDS), whatever the host looks like, so a seed picks the same questions
everywhere; only their content follows the host. Each question draws its random
parts (which port, which listener, the distractors, where the answer sits) from
its own generator seeded by (seed, id), or by its id alone when generate() gets
no seed (so a listing made without --seed can be the same on every run on one
host); skipping one question never changes another. A generator that cannot read
what it needs is skipped, with a note, rather than failing the quiz.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Iterable

from .. import host, registry, remedies
from ..errors import PortscopeError
from ..host import HostFacts
from ..ports import PortRange
from ..privilege import ANY, ROOT, WILDCARD, rule
from ..sockets import snapshot
from ..sockets.table import PROTO_NAMES, TCP_CLOSE, TCP_LISTEN
from . import Question

LIVE_IDS = ("live-range", "live-range-size", "live-privileged", "live-service")

# ranges other systems use: the wrong answers for "which range does this host use?"
OTHER_RANGES = ("32768-60999", "49152-65535", "10000-65535", "1025-5000", "1024-65535")
# well-known ports whose IANA names make plausible wrong answers (and the fallback)
COMMON_PORTS = (21, 22, 23, 25, 53, 80, 110, 143, 443, 631, 3306, 5432)
# candidates for "is port P privileged here?"; the host's own boundary is added
PRIV_CANDIDATES = (22, 80, 443, 1023, 1024, 3000, 8080)
OS_NAMES = {"linux": "Linux", "darwin": "macOS", "freebsd": "FreeBSD", "windows": "Windows"}


@dataclass(frozen=True)
class Generated:
    """Questions generated from this host's facts, with what was skipped and why."""

    questions: tuple[Question, ...]
    notes: tuple[str, ...]          # generators skipped, fallbacks taken


def _where(netns: str | None) -> str:
    """The place as a noun: "this host", "network namespace NAME"."""
    return f"network namespace {netns}" if netns else "this host"


def _at(netns: str | None) -> str:
    """The place after a preposition: "on this host", "in network namespace NAME"."""
    return f"in network namespace {netns}" if netns else "on this host"


def _cmd(netns: str | None, args: str) -> str:
    """The portscope command that shows the same thing, in the same namespace."""
    return remedies.portscope(netns, args)


def _in_ns(netns: str | None, cmd: str) -> str:
    """A shell command run in the same namespace (the learner's way to check a value)."""
    return remedies.shell(netns) + cmd


def _proc(name: str) -> str:
    return f"cat /proc/sys/net/ipv4/{name}"


def host_fact(facts: HostFacts, key: str, netns: str | None = None) -> dict:
    """{fact, value, command}: one value a live question was built from, and the command
    that shows it on this host (command None: the value is a fixed constant, not a setting)."""
    os_name = facts.os
    r = facts.ephemeral
    if key == "range":
        if os_name == "linux":
            return {"fact": "net.ipv4.ip_local_port_range", "value": f"{r.low} {r.high}",
                    "command": _in_ns(netns, _proc("ip_local_port_range"))}
        if os_name in ("darwin", "freebsd"):
            return {"fact": "net.inet.ip.portrange.first/last", "value": f"{r.low} {r.high}",
                    "command": "sysctl net.inet.ip.portrange.first net.inet.ip.portrange.last"}
        return {"fact": "TCP/IPv4 dynamic port range", "value": f"start {r.low}, {r.size} ports",
                "command": "netsh int ipv4 show dynamicport tcp"}
    if key == "reserved":
        if os_name == "linux":
            return {"fact": "net.ipv4.ip_local_reserved_ports", "value": str(facts.reserved),
                    "command": _in_ns(netns, _proc("ip_local_reserved_ports"))}
        if os_name == "windows":
            return {"fact": "TCP/IPv4 excluded port ranges", "value": str(facts.reserved),
                    "command": "netsh int ipv4 show excludedportrange protocol=tcp"}
        return {"fact": "reserved ports", "value": "none (BSD has no reserved-ports list)", "command": None}
    if key == "privileged":
        start = facts.unprivileged_port_start
        if os_name == "linux":
            fixed = "fixed" in str(facts.sources.get("ip_unprivileged_port_start", ""))
            return {"fact": "net.ipv4.ip_unprivileged_port_start", "value": str(start),
                    "command": None if fixed else _in_ns(netns, _proc("ip_unprivileged_port_start"))}
        if os_name == "freebsd":
            if "reservedhigh" in facts.sources:
                return {"fact": "net.inet.ip.portrange.reservedlow/reservedhigh",
                        "value": f"{facts.privileged_low} {start - 1 if start else 0}",
                        "command": "sysctl net.inet.ip.portrange.reservedlow net.inet.ip.portrange.reservedhigh"}
            return {"fact": "IPPORT_RESERVED", "value": str(start), "command": None}
        if os_name == "darwin":
            return {"fact": "kern.osrelease (Darwin 18 = macOS 10.14)",
                    "value": facts.os_release or "not read (assumed 18 or later)",
                    "command": "sysctl kern.osrelease"}
        return {"fact": "privileged ports", "value": "none", "command": None}
    raise KeyError(key)


def source_line(host_facts: Iterable[dict]) -> str:
    """The host facts in one line: what was read, and how to read it again."""
    parts = []
    for h in host_facts:
        if h["command"]:
            parts.append(f"`{h['command']}` shows {h['value'] or '(empty)'}")
        else:
            parts.append(f"{h['fact']} = {h['value']} (a constant, not a setting)")
    return "this host: " + "; ".join(parts)


def _rng(seed: int | None, qid: str) -> random.Random:
    """A question's own generator: (seed, id), or the id alone when no seed is given."""
    return random.Random(f"live:{qid}" if seed is None else f"live:{seed}:{qid}")


def _place(rng: random.Random, right: str, wrong: list[str]) -> tuple[tuple[str, ...], int]:
    """Put the right choice among the wrong ones at a seeded position."""
    pos = rng.randrange(len(wrong) + 1)
    choices = wrong[:pos] + [right] + wrong[pos:]
    return tuple(choices), pos + 1


def range_question(facts: HostFacts, rng: random.Random, netns: str | None = None) -> Question:
    """Which range does connect() draw from here? (the true range among other common ones)"""
    actual = str(facts.ephemeral)
    others = [r for r in OTHER_RANGES if r != actual]
    wrong = rng.sample(others, 3)
    choices, answer = _place(rng, actual, wrong)
    src = "net.ipv4.ip_local_port_range" if facts.os == "linux" else "the system's dynamic port settings"
    hf = (host_fact(facts, "range", netns),)
    return Question(
        id="live-range", topic="ranges", difficulty="easy", live=True,
        question=f"Which ephemeral port range does {_where(netns)} hand out right now?",
        choices=choices, answer=answer,
        explanation=(f"{_where(netns).capitalize()} uses {actual} ({facts.ephemeral.size:,} ports), read from {src}. "
                     f"The {OS_NAMES.get(facts.os, facts.os)} default is {facts.os_default}"
                     + (", so it has been changed here." if facts.ephemeral != facts.os_default else ".")
                     + f" `{_cmd(netns, 'range')}` shows it with the reserved list."),
        ref=_cmd(netns, "range"), source=source_line(hf), host_facts=hf)


def range_size_question(facts: HostFacts, rng: random.Random, netns: str | None = None) -> Question:
    """How many ports does the range hold here?"""
    r: PortRange = facts.ephemeral
    size = r.size
    wrong_values = [v for v in dict.fromkeys((size - 1, size + 1, r.high, size * 2)) if v != size and v > 0][:3]
    choices, answer = _place(rng, f"{size:,}", [f"{v:,}" for v in wrong_values])
    values = [int(c.replace(",", "")) for c in choices]
    reserved_in = facts.reserved.count_in(r)
    expl = f"Both ends count: {r.high} - {r.low} + 1 = {size:,}."
    if reserved_in:
        expl += (f" {reserved_in:,} of them are in the reserved list, so connect() can hand out "
                 f"{size - reserved_in:,} per destination.")
    hf = (host_fact(facts, "range", netns), host_fact(facts, "reserved", netns))
    return Question(
        id="live-range-size", topic="ranges", difficulty="medium", live=True,
        question=f"The ephemeral range of {_where(netns)} is {r}. How many ports does it hold?",
        choices=choices, answer=answer, explanation=expl,
        check={"kind": "range_size", "low": r.low, "high": r.high, "values": values},
        source=source_line(hf), host_facts=hf)


def privileged_question(facts: HostFacts, rng: random.Random, netns: str | None = None) -> Question:
    """Worded in the host's own terms: capabilities only on Linux, the wildcard-address
    exemption on macOS 10.14+, no privileged ports on Windows (privilege.py)."""
    prule = rule(facts)
    start = facts.unprivileged_port_start
    cands = sorted({p for p in PRIV_CANDIDATES + (start - 1, start) if 1 <= p <= 65535})
    port = rng.choice(cands)
    hf = (host_fact(facts, "privileged", netns),)
    # where the rule itself is written down (the host facts say which values applied)
    rule_ref = {"linux": "Linux Documentation/networking/ip-sysctl.rst (ip_unprivileged_port_start)",
                "darwin": ("macOS 10.14 rule: github/homebrew-bootstrap PR 93, apple/container PR 2269 "
                           "(docs/quiz.md)") if prule.wildcard_free else None}.get(facts.os)
    common: dict[str, Any] = dict(id="live-privileged", topic="privileged", difficulty="easy", live=True,
                  source=source_line(hf), host_facts=hf, ref=rule_ref)
    shows = f"`{_cmd(netns, f'port {port}')}` shows it."
    if prule.wildcard_free:
        # macOS 10.14+: three outcomes, so the choices name who may bind and where
        who = prule.who_may_bind(port)
        choices = (f"{ANY.capitalize()}: an ordinary user may bind it on any address",
                   f"{WILDCARD.capitalize()}: an ordinary user may bind it on 0.0.0.0 or ::, "
                   "but binding a specific address needs root",
                   f"{ROOT.capitalize()}: only root may bind it, whatever the address",
                   "Only UDP sockets may bind it without root")
        answer = {ANY: 1, WILDCARD: 2, ROOT: 3}[who]
        why = (f"{port} is below IPPORT_RESERVED ({start}); since macOS 10.14 (Darwin 18) the check "
               "is skipped for the wildcard address, so any user may listen on *:{port} but not on "
               "127.0.0.1:{port}".replace("{port}", str(port)) if who == WILDCARD
               else f"{port} is not below IPPORT_RESERVED ({start}), so any user may bind it anywhere")
        return Question(
            question=f"{_at(netns).capitalize()} (macOS 10.14 or later), who may bind TCP port {port}?",
            choices=choices, answer=answer,
            explanation=f"{why}. macOS has no CAP_NET_BIND_SERVICE (a Linux capability). {shows}",
            check={"kind": "who_may_bind", "os": facts.os, "port": port, "low": prule.low, "start": start,
                   "wildcard_free": True, "values": [ANY, WILDCARD, ROOT, None]},
            **common)
    priv = prule.needs_privilege(port)
    choices = ("Yes: it is a privileged port here", "No: any user may bind it here",
               "Only for UDP sockets", "Only if it lies inside the ephemeral range")
    if facts.os == "linux":
        ask = "does binding port {p} need root (or CAP_NET_BIND_SERVICE)?"
        why = f"{port} is {'below' if priv else 'not below'} ip_unprivileged_port_start={start}"
        tail = "The boundary applies to TCP, UDP and SCTP alike, and has nothing to do with the ephemeral range."
    elif facts.os == "windows":
        ask = "does binding port {p} need Administrator rights?"
        why = "Windows has no privileged port numbers"
        tail = "Windows keeps ports from automatic use with excluded port ranges instead (netsh)."
    else:
        ask = "does binding port {p} need root?"
        why = (f"{port} is {'inside' if priv else 'outside'} the privileged window {prule.boundary}"
               if facts.os == "freebsd" else
               f"{port} is {'below' if priv else 'not below'} {prule.boundary}")
        tail = "CAP_NET_BIND_SERVICE is a Linux capability; on this system a privileged port takes root."
    return Question(
        question=f"{_at(netns).capitalize()}, " + ask.format(p=port),
        choices=choices, answer=1 if priv else 2,
        explanation=(f"{why}, so binding it {'needs' if priv else 'does not need'} privilege. {tail} {shows}"),
        check={"kind": "who_may_bind", "os": facts.os, "port": port, "low": prule.low, "start": start,
               "wildcard_free": False, "values": [True, False, None, None]},
        **common)


def _one_name(reg, port: int, proto: str):
    """The single IANA service name assigned on port/proto, or None."""
    rows = [s for s in reg.services_for_port(port, proto) if s.name and s.status == "assigned"]
    names = {s.name for s in rows}
    return (rows[0], next(iter(names))) if len(names) == 1 else (None, None)


def listening(netns: str | None = None, facts: HostFacts | None = None) -> list[tuple[str, int]]:
    """(proto, port) of every TCP listener and unconnected bound UDP socket, sorted."""
    t = snapshot(("tcp", "udp"), states=("LISTEN", "CLOSE"), netns=netns, facts=facts, classify=False)
    out = set()
    for i in range(len(t)):
        proto = PROTO_NAMES[t.proto[i]]
        st = t.state[i]
        # UDP reports unconnected sockets as CLOSE (07); TCP CLOSE sockets are not listeners
        if (proto == "tcp" and st == TCP_LISTEN) or (proto == "udp" and st == TCP_CLOSE and t.remote_port[i] == 0):
            out.add((proto, t.local_port[i]))
    return sorted(out)


def service_question(facts: HostFacts, rng: random.Random, netns: str | None = None,
                     listeners: list[tuple[str, int]] | None = None) -> tuple[Question, str | None]:
    """Which service does IANA register on a port listening here (a common port when none
    is registered)? With the note saying which fallback was taken, if any."""
    reg = registry.default()
    if listeners is None:
        listeners = listening(netns, facts)
    named = [(proto, port) for proto, port in listeners if _one_name(reg, port, proto)[1]]
    note = None
    if named:
        proto, port = rng.choice(named)
        lead = f"{_at(netns).capitalize()}, a {proto.upper()} socket is listening on port {port} right now."
    else:
        proto, port = "tcp", rng.choice(COMMON_PORTS)
        note = f"nothing {_at(netns)} listens on a port IANA names; asked about tcp/{port} instead"
        lead = f"Nothing {_at(netns)} listens on a registered port right now, so from the registry:"
    row, name = _one_name(reg, port, proto)
    hf: tuple[dict[str, Any], ...] = ({"fact": f"IANA service name of {proto}/{port}", "value": name,
           "command": f"{_cmd(netns, f'port {port} --proto {proto}')}"},)
    if named:
        opt = "-ltn" if proto == "tcp" else "-lun"
        hf = ({"fact": f"a {proto.upper()} socket bound to port {port}", "value": "a listening socket",
               "command": _in_ns(netns, f"ss -H {opt} 'sport = :{port}'")},) + hf
    pool = sorted({n for p in COMMON_PORTS if (n := _one_name(reg, p, "tcp")[1]) and n != name})
    wrong = rng.sample(pool, 3)
    choices, answer = _place(rng, name, wrong)
    values = list(choices)
    desc = f" ({row.description})" if row.description else ""
    return Question(
        id="live-service", topic="well-known", difficulty="medium", live=True,
        question=f"{lead} Which service does IANA register on {proto.upper()} port {port}?",
        choices=choices, answer=answer,
        explanation=(f"IANA registers {proto}/{port} as {name}{desc}. The registry says what a port is "
                     "meant for; the program really bound to it may be something else: "
                     f"`{_cmd(netns, f'port {port}')}` shows both."),
        check={"kind": "service_name", "port": port, "proto": proto, "values": values},
        ref="IANA service names and port numbers registry",
        source=source_line(hf), host_facts=hf), note


def generate(seed: int | None = None, netns: str | None = None, facts: HostFacts | None = None) -> Generated:
    """The live questions for this host (or `netns`). `seed` fixes their random parts;
    without one (None) each question is seeded by its id, so listing them twice on the
    same host gives the same questions, choices and answers."""
    questions, notes = [], []
    if facts is None:
        try:
            facts = host.host_facts(netns)
        except (PortscopeError, OSError) as e:
            return Generated((), (f"live questions skipped: cannot read the host's port settings: {e}",))
    for qid, make in zip(LIVE_IDS, (range_question, range_size_question, privileged_question)):
        questions.append(make(facts, _rng(seed, qid), netns))
    try:
        q, note = service_question(facts, _rng(seed, "live-service"), netns)
        questions.append(q)
        if note:
            notes.append(note)
    except (PortscopeError, OSError) as e:
        notes.append(f"live-service skipped: cannot read the socket table or the registry: {e}")
    return Generated(tuple(questions), tuple(notes))
