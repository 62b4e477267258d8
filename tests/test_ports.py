import pytest

from portscope.errors import BadInput
from portscope.ports import DYNAMIC, SYSTEM, USER, PortRange, PortSet, parse_port, port_class


@pytest.mark.parametrize("port,cls", [(0, SYSTEM), (1023, SYSTEM), (1024, USER), (49151, USER),
                                      (49152, DYNAMIC), (65535, DYNAMIC)])
def test_rfc6335_classes(port, cls):
    assert port_class(port) == cls


@pytest.mark.parametrize("bad", ["-1", "65536", "abc", "", "1.5", " "])
def test_parse_port_rejects(bad):
    with pytest.raises(BadInput):
        parse_port(bad)


def test_default_linux_range_size():
    assert PortRange(32768, 60999).size == 28232
    assert not PortRange(32768, 60999).same_parity
    assert PortRange(32768, 60998).same_parity


@pytest.mark.parametrize("text", ["32768\t60999", "32768 60999", "32768-60999", " 32768 - 60999 "])
def test_range_parse_forms(text):
    assert PortRange.parse(text) == PortRange(32768, 60999)


@pytest.mark.parametrize("bad", ["70000-80000", "100-50", "abc 5", "1-2-3", "", "-1", "5-"])
def test_range_parse_rejects(bad):
    with pytest.raises(BadInput):
        PortRange.parse(bad)


def test_portset_kernel_syntax_roundtrip():
    s = PortSet.parse("1,2-4,10-10")
    assert str(s) == "1-4,10"
    assert len(s) == 5
    assert 3 in s and 5 not in s and 10 in s
    assert PortSet.parse(" 8080 , 9000 - 9002 ") == PortSet.parse("8080,9000-9002")
    assert str(PortSet.parse("")) == "" and not PortSet.parse("")


@pytest.mark.parametrize("bad", ["1-2-3", "1,,2", "70000", "5-1", "a", "80 80", "9000 9001", "5-", "-5"])
def test_portset_rejects(bad):
    with pytest.raises(BadInput):
        PortSet.parse(bad)


def test_portset_algebra():
    a = PortSet.parse("10-20,30")
    assert str(a.difference(PortSet.parse("12-14,30"))) == "10-11,15-20"
    assert str(a.union(PortSet.parse("21-29"))) == "10-30"
    assert a.count_in(PortRange(15, 30)) == 7
    # cloudflare's example: range 10-21 with reserved 11,14-18,19 leaves 5 usable ports
    assert PortRange(10, 21).size - PortSet.parse("11,14-18,19").count_in(PortRange(10, 21)) == 5
