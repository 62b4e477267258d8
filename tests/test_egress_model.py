"""The NAT budget arithmetic of `pressure --egress` (portscope.egress.budget) and the
analysis of given flows, without the kernel."""
from __future__ import annotations



import pytest

from portscope import egress
from portscope.errors import BadInput


@pytest.mark.parametrize("cloud, k, per_dest, hold", [
    ("aws-nat-gateway", 1, 55_000, 60.0),
    ("aws-nat-gateway", 8, 440_000, 60.0),
    ("azure-nat-gateway", 2, 100_000, 60.0),
    ("azure-nat-gateway", 16, 800_000, 60.0),
    ("azure-lb", 4, 1_024, 60.0),          # per VM: frontend IPs do not multiply the VM's allocation
    ("gcp-cloud-nat", 3, 64, 120.0),        # minPortsPerVm, per VM; TIME_WAIT timeout 120 s
])
def test_presets(cloud, k, per_dest, hold):
    b = egress.budget(cloud=cloud, nat_addresses=k)
    assert (b.per_destination, b.nat_addresses, b.hold_seconds, b.cloud) == (per_dest, k, hold, cloud)
    assert b.source.startswith(cloud) and "https://" in b.source


def test_overrides():
    assert egress.budget(nat_budget=1024, cloud="gcp-cloud-nat").per_destination == 1024
    assert egress.budget(nat_budget=100, nat_addresses=3).per_destination == 300
    assert egress.budget(nat_budget=100, cloud="aws-nat-gateway", nat_addresses=2).per_destination == 200
    assert egress.budget(cloud="gcp-cloud-nat", hold=30).hold_seconds == 30


@pytest.mark.parametrize("kw", [{}, {"nat_budget": 0}, {"cloud": "aws-nat-gateway", "nat_addresses": 9},
                                {"cloud": "azure-nat-gateway", "nat_addresses": 17},
                                {"nat_budget": 5, "nat_addresses": 0}, {"nat_budget": 5, "hold": -1},
                                {"cloud": "oracle"}])
def test_bad_budgets(kw):
    with pytest.raises(BadInput):
        egress.budget(**kw)


class _NS:
    def __init__(self, spec, current=False):
        self.spec, self.current, self.container, self.pod, self.inode = spec, current, None, None, 1


def test_analysis_sums_namespaces_and_judges_the_budget():
    a, b = egress.NsFlows(), egress.NsFlows()
    a.live[("tcp", "203.0.113.5", 443)] = 70
    b.live[("tcp", "203.0.113.5", 443)] = 20
    b.closed[("tcp", "203.0.113.5", 443)] = 5
    b.live[("udp", "198.51.100.53", 53)] = 3
    res = egress.analyze([(_NS("a"), a), (_NS(None, True), b)], egress.budget(nat_budget=100), top=1)
    (d,) = res.destinations
    assert (d.flows, d.live, d.closed_held, d.utilization) == (95, 90, 5, 0.95)
    assert [(s.netns, s.flows) for s in d.top_sources] == [("a", 70), (None, 20)]
    assert res.others == {"destinations": 1, "flows": 3} and res.destinations_total == 2
    (f,) = res.findings
    assert f.id == "egress-nat-budget" and f.severity == "critical"
    doc = res.to_json()
    assert set(doc) >= {"egress", "budget", "findings"}
    assert set(doc["budget"]) >= {"per_destination", "nat_addresses", "source"}


def test_warning_band_and_quiet_below():
    f = egress.NsFlows()
    f.live[("tcp", "203.0.113.5", 443)] = 85
    res = egress.analyze([(_NS("x"), f)], egress.budget(nat_budget=100))
    assert [x.severity for x in res.findings] == ["warning"]
    f.live[("tcp", "203.0.113.5", 443)] = 79
    assert not egress.analyze([(_NS("x"), f)], egress.budget(nat_budget=100)).findings


def test_nat_bound_destinations():
    cache: dict = {}
    import socket
    nb = egress._nat_bound
    assert nb(socket.inet_aton("203.0.113.5"), False, cache) == "203.0.113.5"
    assert nb(socket.inet_aton("127.0.0.1"), True, cache) is None
    assert nb(socket.inet_aton("10.1.2.3"), False, cache) is None
    assert nb(socket.inet_aton("10.1.2.3"), True, {}) == "10.1.2.3"
    mapped = socket.inet_pton(socket.AF_INET6, "::ffff:198.51.100.9")
    assert nb(mapped, False, cache) == "198.51.100.9"
    assert nb(socket.inet_pton(socket.AF_INET6, "fe80::1"), True, cache) is None

