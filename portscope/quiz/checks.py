"""Evaluate a question's `check` with the library, to prove its marked answer.

A check comes in one of two forms:

  {"kind": K, <args>, "values": [v1, ..., vn]}
      values[i] is what choice i claims (null: claims nothing of this kind). The
      library computes K(args); it must equal the value of the marked answer and
      differ from every other choice's value.
  {"kind": K, "each": [args1, ..., argsn], "expect": X}
      the library computes K(args_i) for each choice; exactly the marked answer
      must give X (default true).

Most kinds are pure computations over portscope.ports, host/*, registry and the
simulator's allocator models. Kinds in KERNEL_KINDS ask the real kernel and need
`netns`, a throwaway network namespace: they read its fresh defaults or try
writes in it (never run them against a namespace you care about).
"""
from __future__ import annotations

import random
import re

from .. import host, registry
from .. import netns as _netns
from ..errors import BadInput, PortscopeError
from ..host import HostFacts, bsd, linux, windows
from ..portinfo import describe_port
from ..ports import PortRange, PortSet, port_class
from ..privilege import PrivilegeRule
from ..simulate.allocators import make
from ..simulate.space import make_space
from . import Question

KERNEL_KINDS = frozenset({"netns_default", "sysctl_accepted", "reserved_after"})


class NeedsKernel(Exception):
    """The check reads or writes the kernel and no namespace was given."""


def _facts(os_name: str = "linux", unprivileged_port_start: int = 1024):
    r = linux.DEFAULT_RANGE
    return HostFacts(os=os_name, ephemeral=r, reserved=PortSet(),
                     unprivileged_port_start=unprivileged_port_start, os_default=r)


def _port_class(a, ns):
    return port_class(a["port"])


def _class_range(a, ns):
    ports = [p for p in range(65536) if port_class(p) == a["class"]]
    return str(PortRange(ports[0], ports[-1]))


def _range_size(a, ns):
    return PortRange(a["low"], a["high"]).size


def _in_range(a, ns):
    return a["port"] in PortRange(a["low"], a["high"])


def _same_parity(a, ns):
    return PortRange(a["low"], a["high"]).same_parity


def _os_default(a, ns):
    os_name = a["os"]
    if os_name == "linux":
        return str(linux.DEFAULT_RANGE)
    if os_name in ("darwin", "freebsd"):
        return str(bsd.OS_DEFAULT[os_name])
    if os_name == "windows":
        return str(windows.OS_DEFAULT)
    raise BadInput(f"no default range known for {os_name!r}")


def _privileged(a, ns):
    pf = describe_port(a["port"], facts=_facts(unprivileged_port_start=a["start"]), in_use=False, cap=False)
    return pf.privileged


def _who_may_bind(a, ns):
    """The platform rule (privilege.py): who may bind the port on a system like the one
    described. With the wildcard exemption (macOS 10.14+) the answer has three values,
    otherwise it is "needs privilege" yes/no."""
    rule = PrivilegeRule(a["os"], a.get("low", 0), a["start"], a.get("wildcard_free", False))
    return rule.who_may_bind(a["port"]) if rule.wildcard_free else rule.needs_privilege(a["port"])


def _time_wait(a, ns):
    return _facts(a["os"]).time_wait_seconds


def _max_rate(a, ns):
    # steady state: every port held for one TIME_WAIT, so rate * TW <= |range|
    return PortRange(a["low"], a["high"]).size // _facts(a["os"]).time_wait_seconds


def _connect_capacity(a, ns):
    """Ports one (source, destination) pair can count on: the simulator's model."""
    return make_space(PortRange(a["low"], a["high"]), a.get("reserved", "")).capacity("linux").min


def _first_parity(a, ns):
    """The parity the allocator model picks on an empty range, for 64 fresh sockets."""
    call = {"connect": "linux", "bind": "linux-bind"}[a["call"]]
    alloc = make(call, make_space(PortRange(a["low"], a["high"])), random.Random(a.get("seed", 1)))
    seen = set()
    for kid in range(64):
        port, _ = alloc.choose(kid, {}, 0.0, None)
        seen.add("even" if port % 2 == 0 else "odd")
    return seen.pop() if len(seen) == 1 else "mixed"


def _portset_count(a, ns):
    return len(PortSet.parse(a["text"]))


def _portset_valid(a, ns):
    try:
        PortSet.parse(a["text"])
    except BadInput:
        return False
    return True


def _windows_settable(a, ns):
    try:
        windows.check_settable(PortRange(a["start"], a["start"] + a["num"] - 1))
    except BadInput:
        return False
    return True


def _service_name(a, ns):
    names = sorted({s.name for s in registry.services_for_port(a["port"], a["proto"]) if s.name})
    return names[0] if len(names) == 1 else names


def _service_port(a, ns):
    ports = registry.ports_for_name(a["name"], a["proto"])
    return ports[0] if len(ports) == 1 else ports


# -- the real kernel, in a throwaway namespace ------------------------------

def _netns_default(a, ns):
    f = host.host_facts(ns)
    key = a["key"]
    if key == "ephemeral":
        return str(f.ephemeral)
    if key == "ephemeral_size":
        return f.ephemeral.size
    return getattr(f, key)


def _sysctl_accepted(a, ns):
    with _netns.entered(ns):
        try:
            linux.write_sysctl(a["key"].removeprefix("net.ipv4."), a["value"])
        except BadInput:   # the kernel answered EINVAL
            return False
    return True


def _reserved_after(a, ns):
    with _netns.entered(ns):
        for w in a["writes"]:
            linux.write_sysctl("ip_local_reserved_ports", w)
    return str(host.host_facts(ns).reserved)


KINDS = {
    "port_class": _port_class, "class_range": _class_range, "range_size": _range_size,
    "in_range": _in_range, "same_parity": _same_parity, "os_default": _os_default,
    "privileged": _privileged, "who_may_bind": _who_may_bind, "time_wait": _time_wait, "max_rate": _max_rate,
    "connect_capacity": _connect_capacity, "first_parity": _first_parity,
    "portset_count": _portset_count, "portset_valid": _portset_valid,
    "windows_settable": _windows_settable, "service_name": _service_name,
    "service_port": _service_port, "netns_default": _netns_default,
    "sysctl_accepted": _sysctl_accepted, "reserved_after": _reserved_after,
}


def evaluate(kind: str, args: dict, netns: str | None = None) -> object:
    """The library's answer for one check kind."""
    if kind not in KINDS:
        raise BadInput(f"unknown check kind {kind!r}")
    if kind in KERNEL_KINDS and netns is None:
        raise NeedsKernel(kind)
    return KINDS[kind](args, netns)


def _norm(text: str) -> str:
    # choices write 28,232 and 49152–65535; values are 28232 and 49152-65535
    return re.sub(r"(?<=\d),(?=\d{3}\b)", "", text).replace("\u2013", "-").replace("\u2014", "-").lower()


def mentions(choice: str, value: object) -> bool:
    """Does the choice's text say the value it claims? (Keeps text and values aligned.)"""
    if value is None or isinstance(value, bool):
        return True   # yes/no claims are worded freely
    text = _norm(choice)
    if isinstance(value, int):
        return re.search(rf"(?<![\d.]){value}(?![\d]|\.\d)", text) is not None
    return _norm(str(value)) in text


def verify(q: Question, netns: str | None = None) -> list[str]:
    """Problems with question q's check ([] when the library agrees with its answer).

    q is a Question (or anything with .check, .choices, .answer)."""
    chk = q.check
    if not chk:
        return []
    kind = chk["kind"]
    ans = q.answer - 1
    out = []
    try:
        if "each" in chk:
            expect = chk.get("expect", True)
            each = [evaluate(kind, a, netns) for a in chk["each"]]
            hits = [i + 1 for i, g in enumerate(each) if g == expect]
            if hits != [q.answer]:
                out.append(f"{kind}: choices giving {expect!r} are {hits}, marked answer is {q.answer}")
            return out
        args = {k: v for k, v in chk.items() if k not in ("kind", "values")}
        got = evaluate(kind, args, netns)
        values = chk["values"]
        if values[ans] != got:
            out.append(f"{kind}{args}: library says {got!r}, the marked answer claims {values[ans]!r}")
        for i, v in enumerate(values):
            if i != ans and v is not None and v == got:
                out.append(f"{kind}: choice {i + 1} also claims the library's value {got!r}")
            if not mentions(q.choices[i], v):
                out.append(f"choice {i + 1} ({q.choices[i]!r}) does not say its value {v!r}")
    except (PortscopeError, KeyError, TypeError) as e:
        out.append(f"{kind}: cannot evaluate: {e!r}")
    return out


__all__ = ["KINDS", "KERNEL_KINDS", "NeedsKernel", "evaluate", "mentions", "verify"]
