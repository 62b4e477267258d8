"""The hand-written frozen value types (portscope.value.Frozen) behave as the frozen
dataclasses they replaced: equality and hashing over the compared fields, FrozenError
(an AttributeError) on assignment, the dataclass repr, replace() that runs the checks
again, copy and pickle; and numparse's str-method checks accept exactly what its old
patterns did."""
from __future__ import annotations

import copy
import dataclasses
import pickle
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portscope import numparse
from portscope.errors import BadInput
from portscope.host import FileWrite, HostFacts, NamedRange, NamedSet, Plan, Result, SocketFacts, Step
from portscope.netns import Namespace
from portscope.findings import Finding
from portscope.portinfo import PortFacts, describe_port
from portscope.ports import PortRange, PortSet
from portscope.pressure import Destination, GlobalUse, ProcessUse, PressureResult, analyze
from portscope.privilege import PrivilegeRule
from portscope.registry import Service
from portscope.sockets.table import SocketTable
from portscope.value import Frozen, FrozenError


def _facts(**kw) -> HostFacts:
    base = dict(os="linux", ephemeral=PortRange(32768, 60999), reserved=PortSet.parse("8080"),
                unprivileged_port_start=1024, os_default=PortRange(32768, 60999),
                ranges=(NamedRange("default", PortRange(32768, 60999)),), sources={"range": "/proc"})
    return HostFacts(**{**base, **kw})


def _examples() -> list[Frozen]:
    f = _facts()
    step = Step("net.ipv4.ip_local_port_range", "1 2", "3 4", ("sysctl", "-w"), ("sysctl", "-w"))
    plan = Plan("linux", "range set", None, f, (step,), FileWrite("/x", None, "k = v\n"), ("w",), ("n",))
    return [PortRange(1, 2), f, NamedRange("hi", PortRange(3, 4), "tcp", 4),
            NamedSet("tcp/ipv4", PortSet.parse("1-3"), "tcp", 4), step, plan, Result(plan, f, {"k": "v"}, "/x"),
            SocketFacts({80: "tcp"}, frozenset({1}), "netlink"), Namespace("blue"),
            PrivilegeRule("linux", 0, 1024, False), Service("http", 80, 80, ("tcp",), "assigned", "WWW"),
            describe_port(80, facts=f, in_use=False, cap=False), *_pressure_examples()]


def _pressure_examples() -> list[Frozen]:
    """`pressure`'s results: an analysis (its small range has ends of equal parity: findings with
    evidence), a destination with the forecast fields set, a process."""
    res = analyze(_facts(ephemeral=PortRange(40000, 40100)), SocketTable(backend="test"))
    d = Destination("tcp", "10.0.0.1", "10.0.0.2", 80, 5, 1, 100, 0.05, bind_held=2, rate_per_s=1.5,
                    sustainable_rate_per_s=None, seconds_to_exhaustion=12.0, steady_state_in_use=9,
                    steady_state_time_wait=90)
    assert res.findings and res.findings[0].evidence
    return [res, res.global_, res.findings[0], d, ProcessUse(42, "curl", 3, ports=2),
            res.replace(destinations=(d,), destinations_total=1, processes=(ProcessUse(None, None, 1),))]


def _as_dataclass(v: Frozen):
    """The same fields as a frozen dataclass of the same name (what the type was before)."""
    skip = type(v)._uncompared
    cls = dataclasses.make_dataclass(type(v).__name__, [(n, object, dataclasses.field(compare=n not in skip))
                                                        for n in v.__slots__], frozen=True)
    return cls(**v.fields())


@pytest.mark.parametrize("v", _examples(), ids=lambda v: type(v).__name__)
def test_behaves_like_the_frozen_dataclass(v):
    ref = _as_dataclass(v)
    assert repr(v) == repr(ref)
    same = copy.copy(v)
    assert same == v and not (same != v) and same is not v
    assert copy.deepcopy(v) == v
    assert pickle.loads(pickle.dumps(v)) == v
    if all(isinstance(x, (int, float, str, tuple, frozenset, type(None), Frozen, PortSet, bool))
           for n, x in v.fields().items() if n not in type(v)._uncompared):
        assert hash(v) == hash(same)
    name = v.__slots__[0]
    with pytest.raises(FrozenError):
        setattr(v, name, None)
    with pytest.raises(AttributeError):
        delattr(v, name)
    with pytest.raises(AttributeError):
        v.not_a_field = 1          # __slots__: no instance dict either
    assert v != object() and v != ref      # only instances of the same class compare equal


def test_replace_changes_one_field_and_checks_again():
    f = _facts()
    g = f.replace(netns="blue", ephemeral=PortRange(40000, 40100))
    assert (g.netns, g.ephemeral, g.reserved, g.sources) == ("blue", PortRange(40000, 40100), f.reserved, f.sources)
    assert f.netns is None                       # the original is untouched
    assert f.__replace__(netns="blue") == f.replace(netns="blue")     # copy.replace on 3.13+
    with pytest.raises(TypeError, match="no field 'colour'"):
        f.replace(colour="red")
    with pytest.raises(BadInput):
        PortRange(10, 20).replace(low=30)        # __init__'s checks run again
    pf = describe_port(80, facts=f, in_use=False, cap=False)
    assert pf.replace(netns="blue").to_json() == {**pf.to_json(), "netns": "blue"}


def test_sources_are_not_compared():
    a, b = _facts(), _facts(sources={"range": "elsewhere"})
    assert a == b and hash(a) == hash(b)
    assert a != _facts(tcp_tw_reuse=2)


def test_port_range_orders_by_low_then_high():
    rs = [PortRange(5, 9), PortRange(1, 3), PortRange(1, 2), PortRange(4, 4)]
    assert sorted(rs) == [PortRange(1, 2), PortRange(1, 3), PortRange(4, 4), PortRange(5, 9)]
    assert PortRange(1, 2) < PortRange(1, 3) <= PortRange(1, 3) < PortRange(2, 2)
    assert PortRange(2, 2) > PortRange(1, 9) and PortRange(2, 2) >= PortRange(2, 2)
    with pytest.raises(TypeError):
        _ = PortRange(1, 2) < (1, 2)
    assert len({PortRange(1, 2), PortRange(1, 2), PortRange(2, 3)}) == 2


def test_defaults_are_not_shared_between_instances():
    a, b = HostFacts("linux", PortRange(1, 2), PortSet(), 1024, PortRange(1, 2)), \
        HostFacts("linux", PortRange(1, 2), PortSet(), 1024, PortRange(1, 2))
    a.sources["x"] = "y"
    assert b.sources == {}


_OLD_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_OLD_WHOLE = re.compile(r"[+-]?[0-9]+", re.ASCII)
TEXT = st.text(alphabet="0123456789+- \n\t._e٤²١０a", max_size=8)


@given(TEXT)
def test_numparse_checks_accept_what_the_old_patterns_did(s):
    assert numparse.is_digits(s) == (_OLD_DIGITS.fullmatch(s) is not None)
    assert numparse.is_whole(s) == (_OLD_WHOLE.fullmatch(s) is not None)


def test_pressure_results_replace_compare_and_serialise_as_before():
    """replace() (what analyze(), truncate() and forecast() build results with) keeps every
    other field; a finding's evidence is not compared; the JSON keys keep the field order."""
    res = analyze(_facts(ephemeral=PortRange(40000, 40100)), SocketTable(backend="test"))
    d = Destination("udp", "::1", "::1", 53, 3, 0, 10, 0.3)
    assert (d.bind_held, d.rate_per_s, d.steady_state_time_wait) == (0, None, None)     # the old defaults
    fd = d.replace(rate_per_s=2.0, seconds_to_exhaustion=4.5)
    assert fd.to_json(forecast=True) == {**d.to_json(forecast=True), "rate_per_s": 2.0, "seconds_to_exhaustion": 4.5}
    assert fd != d and fd.replace(rate_per_s=None, seconds_to_exhaustion=None) == d
    assert hash(fd.replace(rate_per_s=None, seconds_to_exhaustion=None)) == hash(d)
    r2 = res.replace(destinations=(d,), destinations_total=1)
    assert (r2.worst, res.worst, r2.global_) == (d, None, res.global_) and r2.findings == res.findings
    assert r2.to_json() == {**res.to_json(), "destinations": [d.to_json()], "destinations_total": 1}
    assert list(res.global_.to_json()) == list(GlobalUse.__slots__)
    f = res.findings[0]
    assert f.replace(evidence={"other": 1}) == f and f.replace(message="x") != f
    bare = Finding("a", "info", "m", "r")
    assert bare.evidence == {} and bare.evidence is not Finding("a", "info", "m", "r").evidence
    assert bare == Finding("a", "info", "m", "r", {"x": 1}) and hash(bare) == hash(Finding("a", "info", "m", "r", {}))
    with pytest.raises(FrozenError):
        res.findings = ()
    with pytest.raises(TypeError):
        hash(res)                  # it holds dicts (others), as the frozen dataclass did
    assert isinstance(res, PressureResult) and copy.deepcopy(res).to_json() == res.to_json()
