"""Property-based tests (Hypothesis) of every parser that takes user or kernel text: random and
adversarial inputs give a value or one portscope error (BadInput, SystemReadError, ...), never
another exception; and where a parser has an inverse, the round trip holds.

Adversarial alphabets: digits of other scripts (Arabic-Indic, Devanagari, full-width,
superscripts: str.isdigit() is true for all of them), signs, hex and underscore forms, blanks of
every kind, NUL, separators, huge numbers, and near-valid inputs built from valid ones."""
from __future__ import annotations

import os
import string

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from portscope.errors import PortscopeError

settings.register_profile("portscope", max_examples=100, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile("portscope")

ODD_DIGITS = "٠١٢٣٤٥٦٧٨٩०१२३४५६७८९０１２３４５６７８９²³¹"
NOISE = " \t\n\r\x0b\x0c\x00\u00a0\u2003-+,:;./_xXeE*$#"
TOKEN = st.one_of(
    st.integers(-10**6, 10**20).map(str),
    st.integers(0, 65535).map(str),
    st.text(alphabet=string.digits + ODD_DIGITS, min_size=1, max_size=8),
    st.sampled_from(["0x50", "+80", "-5", "1_000", "1e3", "inf", "nan", "", " ", "٤٠٠٠٠", "40000²", "65536",
                     "0", "00080", "9" * 60]),
)
# text made of tokens joined by separators: near-valid far more often than st.text() alone
JOINED = st.lists(st.tuples(TOKEN, st.sampled_from(["", "-", ",", " ", "\t", " - ", ",,", "--", ":", "\n"])),
                  max_size=6).map(lambda xs: "".join(a + b for a, b in xs))
TEXT = st.one_of(st.text(max_size=40), st.text(alphabet=string.digits + ODD_DIGITS + NOISE, max_size=40), JOINED)


def value_or_portscope_error(f, *args):
    """Call f; a portscope error is a clean refusal, anything else fails the test."""
    try:
        return f(*args)
    except PortscopeError as e:
        assert str(e) and "\n" not in str(e).strip(), repr(e)
        return None


# ------------------------------------------------------------------ numbers, ports, lists, ranges

@given(TEXT)
@example("٤٠٠٠٠")
@example("²")
def test_numparse(text):
    from portscope.numparse import is_digits, parse_real, parse_whole
    v = value_or_portscope_error(parse_whole, text, "--x", 0, 10**9)
    if v is not None:
        assert 0 <= v <= 10**9 and text.strip().lstrip("+-").isascii()
    r = value_or_portscope_error(parse_real, text, "--x", 0.0, 1e9)
    if r is not None:
        assert 0.0 <= r <= 1e9
    assert is_digits(text) == (text != "" and all(c in string.digits for c in text) and len(text) <= 40)


@given(TEXT)
def test_port_parsers(text):
    from portscope.ports import PortRange, PortSet, parse_port
    p = value_or_portscope_error(parse_port, text)
    if p is not None:
        assert 0 <= p <= 65535 and str(p) == text.strip().lstrip("0") or p == 0
        assert all(c in string.digits for c in text.strip())
    r = value_or_portscope_error(PortRange.parse, text)
    if r is not None:
        assert PortRange.parse(str(r)) == r
    s = value_or_portscope_error(PortSet.parse, text)
    if s is not None:
        assert PortSet.parse(str(s)) == s


@given(st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 200)), max_size=20))
def test_portset_round_trip(pairs):
    from portscope.ports import PortRange, PortSet
    ps = PortSet(PortRange(a, min(65535, a + n)) for a, n in pairs)
    assert PortSet.parse(str(ps)) == ps
    assert len(ps) == sum(1 for _ in ps) or len(ps) > 10**5


@given(TEXT, TEXT)
def test_range_set_and_reserve_input_checks(low, high):
    from portscope.host._common import check_range, parse_ports
    from portscope.host._common import parse_number as parse_int
    r = value_or_portscope_error(check_range, low, high)
    if r is not None:
        assert 1 <= r.low <= r.high <= 65535
    value_or_portscope_error(parse_ports, low)
    value_or_portscope_error(parse_int, high, "LOW")


@given(TEXT)
@example("")
@example("   ")
def test_netns_spec(text):
    from portscope.netns import check_spec
    v = value_or_portscope_error(check_spec, text)
    if v is not None:
        assert v.strip() == v and v and "/" not in v


# ------------------------------------------------------------------ kernel and command output

@given(TEXT)
def test_procfs_sysctl_values(text):
    from portscope.host import linux
    r = value_or_portscope_error(linux.parse_range, text)
    if r is not None:
        assert 0 <= r.low <= r.high <= 65535
    value_or_portscope_error(linux.parse_reserved, text)
    value_or_portscope_error(linux.parse_sysctl_int, "ip_unprivileged_port_start", text)


HEX = "0123456789ABCDEF"
PROC_LINE = st.builds(
    lambda sl, la, lp, ra, rp, stt, rest: f"{sl}: {la}:{lp} {ra}:{rp} {stt} {rest}",
    st.integers(0, 99999).map(str), st.text(HEX, min_size=0, max_size=34), st.text(HEX + ODD_DIGITS, max_size=6),
    st.text(HEX, max_size=34), st.text(HEX, max_size=6), st.text(HEX + "Z", max_size=3),
    st.lists(st.text(string.digits + ODD_DIGITS + ":-", max_size=12), max_size=12).map(" ".join))


@given(st.lists(st.one_of(PROC_LINE, st.text(max_size=80)), max_size=8), st.sampled_from([4, 6]),
       st.sampled_from(["tcp", "udp"]))
def test_proc_net_tables(lines, family, proto):
    from portscope.sockets import procfs
    from portscope.sockets.table import PROTO_TCP, PROTO_UDP, SocketTable
    text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" \
        + "\n".join(lines)
    sink = procfs._Sink(SocketTable(backend="procfs"), None, None)
    procfs.parse_inet(text, PROTO_TCP if proto == "tcp" else PROTO_UDP, family, sink)
    t = sink.t
    assert len(t.proto) + sink.skipped <= len(text.splitlines()) - 1     # each line kept or counted, once
    assert all(0 <= p <= 65535 for p in t.local_port)


@given(st.lists(st.one_of(st.text(max_size=60), st.builds(
    lambda k, a, b: f"net.inet.ip.portrange.{k}: {a}" + (f" -> {b}" if b else ""),
    st.sampled_from(["first", "last", "hifirst", "hilast", "lowfirst", "lowlast", "reservedhigh", "bogus"]),
    TOKEN, st.one_of(st.just(""), TOKEN))), max_size=8), st.sampled_from(["freebsd", "darwin"]))
def test_bsd_sysctl_output(lines, osname):
    from portscope.host import bsd
    text = "\n".join(lines)
    value_or_portscope_error(bsd.parse_sysctl, text)
    f = value_or_portscope_error(bsd.facts_from_sysctl, text, osname)
    if f is not None:
        assert 0 <= f.ephemeral.low <= f.ephemeral.high <= 65535


NETSH_DYN = st.builds(lambda a, b, lab: f"\nProtocol tcp Dynamic Port Range\n---\n{lab[0]} : {a}\n{lab[1]} : {b}\n",
                      TOKEN, TOKEN, st.sampled_from([("Start Port", "Number of Ports"), ("Port de début", "Nombre"),
                                                     ("起始端口", "端口数")]))
NETSH_EXCL = st.lists(st.builds(lambda a, b, star: f"  {a}  {b}  {star}", TOKEN, TOKEN, st.sampled_from(["", "*", "**"])),
                      max_size=6).map(lambda rows: "Start Port    End Port\n----------    --------\n" + "\n".join(rows)
                                      + "\n\n* - Administered port exclusions.\n")


@given(st.one_of(NETSH_DYN, st.text(max_size=80)), st.one_of(NETSH_EXCL, st.text(max_size=80)))
def test_netsh_output(dyn, excl):
    from portscope.host import windows
    r = value_or_portscope_error(windows.parse_dynamicport, dyn)
    if r is not None:
        assert 0 <= r.low <= r.high <= 65535
    value_or_portscope_error(windows.parse_excluded, excl)


# ------------------------------------------------------------------ filters, names, answers

@given(TEXT)
def test_conns_filters(text):
    from portscope.sockets import state_codes
    from portscope.sockets.filters import parse_net
    value_or_portscope_error(parse_net, text, "--src")
    value_or_portscope_error(state_codes, [text])


@given(TEXT)
def test_quiz_inputs(text):
    from portscope import quiz
    from portscope.quiz.runner import parse_answers
    bank = quiz.load()
    value_or_portscope_error(quiz.parse_count, text)
    value_or_portscope_error(quiz.parse_seed, text)
    value_or_portscope_error(quiz.parse_difficulty, text)
    value_or_portscope_error(quiz.parse_topic, text, bank)
    got = value_or_portscope_error(parse_answers, text, bank.questions[:3])
    if got is not None:
        assert len(got) == 3 and all(1 <= a <= 9 for a in got)


@given(TEXT)
def test_listen_address(text):
    from portscope.webconfig import parse_listen
    v = value_or_portscope_error(parse_listen, text)
    if v is not None:
        assert 0 <= v[1] <= 65535


# ------------------------------------------------------------------ files: web config, simulate config

YAMLISH = st.one_of(
    st.text(max_size=120),
    st.builds(lambda user, h: f"basic_auth_users:\n  {user}: {h}\n",
              st.text(string.ascii_letters + ODD_DIGITS + ":'\"{}[] ", max_size=12),
              st.one_of(st.text(max_size=70), st.builds(lambda c, body: f"'$2b${c}${body}'",
                                                        st.text(string.digits + ODD_DIGITS, min_size=0, max_size=3),
                                                        st.text("./" + string.ascii_letters + string.digits + "!",
                                                                max_size=60)))),
    st.builds(lambda k, v: f"tls_server_config:\n  {k}: {v}\n",
              st.sampled_from(["cert_file", "key_file", "min_version", "client_auth_type", "bogus"]),
              st.text(max_size=20)),
)


@given(YAMLISH)
def test_web_config_files(tmp_path_factory, text):
    from portscope import webconfig
    d = tmp_path_factory.mktemp("web")
    path = os.path.join(d, "web.yml")
    with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:
        try:
            f.write(text)
        except UnicodeEncodeError:
            assume(False)
    cfg = value_or_portscope_error(webconfig.load, path)
    if cfg is not None:
        for user, h in cfg.users.items():
            assert webconfig.bcrypt_problem(h.decode()) is None


SIM_KEYS = ["range", "reserved", "listeners", "algorithm", "destinations", "sources", "connects", "rate",
            "arrivals", "lifetime", "duration", "time_wait", "tw_reuse", "tw_reuse_delay", "loopback",
            "socket_range", "udp_hash_size", "seed", "interval", "bogus"]
SIM_VALUE = st.one_of(TOKEN, st.sampled_from(["40000-40099", "5/s", "1e308/s", "exp:2", "uniform:3-1", "inf",
                                              "linux", "udp", "poisson", "true", "1.5", "-1", "nan", "0"]),
                      st.text(max_size=12))


@given(st.dictionaries(st.sampled_from(SIM_KEYS), SIM_VALUE, max_size=6), st.sampled_from(["yaml", "toml"]))
def test_simulate_config_files(tmp_path_factory, doc, kind):
    """File -> config.load -> the CLI's typing -> Workload: the whole path a --config takes,
    short of running the simulation."""
    from portscope.simulate.config import DEFAULTS
    from portscope.simulate.config import typed as _typed
    from portscope.simulate import config
    from portscope.simulate.workload import workload
    d = tmp_path_factory.mktemp("sim")
    path = os.path.join(d, f"w.{kind}")
    if kind == "yaml":
        body = "".join(f"{k}: '{str(v).replace(chr(39), chr(39) * 2)}'\n" for k, v in doc.items())
    else:
        body = "".join(f"{k} = {_toml_str(v)}\n" for k, v in doc.items())
    with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:
        try:
            f.write(body)
        except UnicodeEncodeError:
            assume(False)

    def build():
        opts = dict(DEFAULTS)
        opts.update(config.load(path))
        return workload(**_typed(opts))

    w = value_or_portscope_error(build)
    if w is not None:
        assert w.destinations >= 1 and w.sources >= 1


def _toml_str(v: str) -> str:
    return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" for c in v
                         if ord(c) < 0xD800 or ord(c) > 0xDFFF) + '"'


@given(TEXT)
@example("1e308/s")
@example("٥/s")
def test_rate_and_lifetime(text):
    from portscope.simulate.workload import Lifetime, parse_rate
    r = value_or_portscope_error(parse_rate, text)
    if r is not None:
        assert r > 0 and r < float("inf")
    value_or_portscope_error(Lifetime.parse, text)
