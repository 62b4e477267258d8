"""The offline IANA registry: the shipped file against Debian's copy and a recorded IANA
sample (statuses: Reserved/Unassigned), the CSV and merge paths of the build script,
look-ups both ways, the lazy and the full paths agree."""
from __future__ import annotations

import gzip
import os
import subprocess
import sys

import pytest

from conftest import PYTHON_M
from portscope import registry as R
from portscope.errors import BadInput, SystemReadError

HERE = os.path.dirname(__file__)
SAMPLE = os.path.join(HERE, "fixtures", "iana_sample.csv")
DEBIAN = "/usr/share/wireshark/services"
ROOT = os.path.dirname(HERE)
needs_debian = pytest.mark.skipif(not os.path.exists(DEBIAN),
                                  reason=f"{DEBIAN} missing (Debian package libwireshark-data)")


def debian_tuples() -> set[tuple[str, str, str]]:
    """(name, port, proto) from the Debian file, read independently of registry.py."""
    out = set()
    with open(DEBIAN) as f:
        for line in f:
            fields = line.split("#", 1)[0].split()
            if len(fields) >= 2:
                port, *protos = fields[1].split("/")
                for name in [fields[0], *fields[2:]]:
                    out.update((name, port, p) for p in protos)
    return out


@needs_debian
def test_shipped_registry_holds_every_debian_tuple():
    want = debian_tuples()
    have = R.default().tuples()
    assert len(want) > 11000  # the merged 9/tcp/udp/sctp/dccp lines counted per protocol
    assert want <= have, sorted(want - have)[:10]
    assert len(have) >= len(want)


def test_shipped_registry_covers_all_four_protocols_and_ranges():
    reg = R.default()
    protos = {p for s in reg.services for p in s.protos}
    assert set(R.PROTOCOLS) <= protos
    assert any(s.is_range for s in reg.services)
    assert reg.meta.get("rows") == str(len(reg))
    # the data file stays small: it ships in the wheel
    assert os.path.getsize(R.DATA_FILE) < 400_000


def test_port_to_services_well_known():
    reg = R.default()
    http = {(s.name, p) for s in reg.services_for_port(80) for p in s.protos}
    assert ("http", "tcp") in http and ("http", "udp") in http
    assert {s.name for s in reg.services_for_port(22, "sctp")} == {"ssh"}
    assert [s.name for s in reg.services_for_port(9, "dccp")] == ["discard"]
    assert reg.services_for_port(22, "dccp") == []


def test_port_inside_a_range_row():
    reg = R.default()
    x11 = reg.services_for_port(6010, "tcp")
    assert [(s.name, s.low, s.high) for s in x11] == [("x11", 6000, 6063)]
    assert reg.status(6063, "udp") == R.ASSIGNED
    assert "x11" not in {s.name for s in reg.services_for_port(6064)}
    assert "x11" not in {s.name for s in reg.services_for_port(5999)}


def test_name_to_ports_both_ways_and_case():
    reg = R.default()
    assert reg.ports_for_name("postgresql") == [5432]
    assert reg.ports_for_name("POSTGRESQL") == [5432]
    assert reg.ports_for_name("x11", "tcp") == list(range(6000, 6064))
    assert reg.ports_for_name("XSIP-network") == reg.ports_for_name("xsip-network") != []
    assert reg.ports_for_name("nosuchservice") == []
    assert "postgresql" in reg.close_names("postgresq")


def test_name_lookup_where_lower_casing_moves_offsets():
    """"İ".lower() is two characters: the offsets of a lower-cased copy no longer match, so
    name look-ups fall back to the full index (and still find every row)."""
    reg = R.Registry("#portscope-iana v1\n1\ttcp\tA\tİx\tfoo\n2\ttcp\tA\tb\tbar\n")
    assert reg._lowered() is None
    assert [s.low for s in reg.rows_for_name("B")] == [2]
    assert [s.low for s in reg.rows_for_name("İX")] == [1]


def test_lazy_lookups_agree_with_full_parse():
    """The str.find fast path must give exactly what a scan of every row gives."""
    reg = R.read_data()
    full = reg.services  # materialise independently
    by_port: dict[int, list] = {}
    for s in full:
        if s.low is not None:
            for p in range(s.low, s.high + 1):
                by_port.setdefault(p, []).append(s)
    probe = (list(range(0, 1100)) + list(range(5990, 6080)) + [5432, 8080, 8448, 48653, 48654, 48700, 48999,
                                                                49000, 49150, 49151, 65535])
    fresh = R.read_data()  # a registry whose rows were never materialised
    for p in probe:
        assert sorted(fresh.rows_for_port(p), key=repr) == sorted(by_port.get(p, []), key=repr), p
    for name in ("http", "ssh", "x11", "CAIlic", "ircu", "discard", "SWYP", "matrix-fed"):
        want = sorted((s for s in full if s.name.lower() == name.lower()), key=repr)
        assert sorted(R.read_data().rows_for_name(name), key=repr) == want, name
    assert R.read_data().range_rows() == tuple(s for s in full if s.is_range)
    # the shipped text has non-ASCII ("swÿp") but lower-cases in place: the str.find path stays on
    assert R.read_data()._lowered() is not None


def test_shipped_file_is_member_indexed_and_reads_as_one_text():
    """gzip.open and zcat read the members as one text; the look-up reads the first and one block."""
    with gzip.open(R.DATA_FILE, "rt", encoding="utf-8") as f:
        text = f.read()
    assert R.gunzip(open(R.DATA_FILE, "rb").read()).decode("utf-8") == text
    zcat = subprocess.run(["gzip", "-dc", R.DATA_FILE], capture_output=True, check=True).stdout.decode("utf-8")
    assert zcat == text
    assert f" {R.MEMBERS_KEY}=" in text.split("\n", 1)[0]
    lazy = R.read_data()
    assert lazy.services_for_port(80) and set(lazy._blocks) == {0}       # one port: one block gunzipped
    lazy.status(49999, "udp")
    assert set(lazy._blocks) == {0, 49999 // R.BLOCK_PORTS}
    assert lazy._text == "\n" + text.split("\n", 1)[1]                     # every member, in order
    full = R.decode(text)
    assert full.meta == lazy.meta and full.range_rows() == lazy.range_rows()


def test_member_indexed_lookups_equal_the_full_parse():
    """Every port a row names, each block's edges and every 97th port (every 7th of them for
    each transport and status)."""
    lazy, full = R.read_data(), R.decode(R.gunzip(open(R.DATA_FILE, "rb").read()).decode("utf-8"))
    ports = {p for s in full.services if s.low is not None for p in (s.low, s.high)}
    ports |= {k * R.BLOCK_PORTS + d for k in range(64) for d in (-1, 0, 1)} - {-1}
    ports |= set(range(0, 65536, 97)) | {65535}
    for i, p in enumerate(sorted(ports)):
        assert lazy.rows_for_port(p) == full.rows_for_port(p), p
        if i % 7 == 0:
            for proto in R.PROTOCOLS:
                assert lazy.rows_for_port(p, proto) == full.rows_for_port(p, proto), (p, proto)
                assert lazy.status(p, proto) == full.status(p, proto), (p, proto)
    assert lazy.services == full.services


def test_every_port_lookup_equals_a_scan_of_every_row():
    """rows_for_port finds the range rows by a binary search on their low port, then reads
    only those rows' high port: the rows of a plain scan of every parsed row (single-port rows
    first, then ranges, each in file order) at every range row's edges and next to them, and
    every 61st port."""
    reg, rows = R.read_data(), R.read_data().services
    want: list[list] = [[] for _ in range(65536)]
    for s in rows:
        if s.low is not None and not s.is_range:
            want[s.low].append(s)
    for s in rows:
        if s.is_range:
            for p in range(s.low, s.high + 1):
                want[p].append(s)
    ports = {e + d for s in rows if s.is_range for e in (s.low, s.high) for d in (-1, 0, 1)}
    for p in sorted((ports | set(range(0, 65536, 61))) & set(range(65536))):
        assert reg.rows_for_port(p) == want[p], p


def test_port_summary_is_the_services_and_statuses_asked_one_by_one():
    """port_summary (one look-up of a port's rows, what `port N` shows) against
    services_for_port and status asked separately, with and without a transport."""
    reg, ref = R.read_data(), R.read_data()
    for port in [0, 7, 22, 80, 443, 1023, 1024, 5060, 6000, 6063, 8080, 49151, 49152, 65535]:
        for proto in (None, *R.PROTOCOLS):
            services, status = reg.port_summary(port, proto, R.PROTOCOLS)
            assert services == ref.services_for_port(port, proto), (port, proto)
            assert status == {p: ref.status(port, p) for p in R.PROTOCOLS}, (port, proto)


def test_write_data_round_trip_and_single_member_files_still_read(tmp_path):
    rows = [R.Service("a", 7, 7, ("tcp",), R.ASSIGNED, "A"), R.Service("", 1000, 1100, (), R.RESERVED, "r"),
            R.Service("b", 1024, 1024, ("udp",), R.ASSIGNED, ""), R.Service("c", 65535, 65535, ("tcp",), R.ASSIGNED),
            R.Service("d", None, None, ("tcp",), R.ASSIGNED, "no port")]
    out = tmp_path / "reg.tsv.gz"
    R.write_data(rows, str(out), {"rows": "5"})
    with gzip.open(out, "rt") as f:
        head, body = f.read().split("\n", 1)
    assert body == R.encode(rows).split("\n", 1)[1]
    reg = R.read_data(str(out))
    assert reg._offsets is not None and reg.meta["rows"] == "5"
    assert [s.name for s in reg.rows_for_port(1024)] == ["b", ""] and reg.services_for_port(65535)[0].name == "c"
    assert reg.ports_for_name("d") == [] and reg.rows_for_name("d") == [rows[-1]]
    assert sorted(reg.services, key=repr) == sorted(rows, key=repr)
    single = tmp_path / "one.tsv.gz"
    single.write_bytes(gzip.compress(R.encode(rows, {"rows": "5"}).encode("utf-8")))
    old = R.read_data(str(single))
    assert old._offsets is None
    assert [old.rows_for_port(p) for p in (7, 1000, 1024, 65535)] == [reg.rows_for_port(p) for p in (7, 1000, 1024, 65535)]


def test_truncated_member_is_one_error_line(tmp_path):
    data = open(R.DATA_FILE, "rb").read()
    bad = tmp_path / "cut.tsv.gz"
    bad.write_bytes(data[:-50])                   # the last member (rows without a port) cut short
    reg = R.read_data(str(bad))
    assert reg.services_for_port(80)             # the other blocks still read
    with pytest.raises(SystemReadError, match="unreadable"):
        reg.rows_for_name("no-such-service-name-x")


def test_taken_ports_matches_status():
    reg = R.default()
    tcp = reg.taken_ports("tcp")
    for p in (0, 1, 4, 22, 80, 1021, 5432, 6010, 8080, 40000, 49151, 60000):
        assert bool(tcp[p]) == (reg.status(p, "tcp") != R.UNASSIGNED), p


def test_shipped_registry_says_reserved_and_unassigned_like_iana():
    """The shipped file is built from the IANA CSV, so Reserved rows are there (Debian's copy has none)."""
    reg = R.default()
    for proto in ("tcp", "udp"):
        assert reg.status(0, proto) == R.RESERVED
        assert reg.status(1023, proto) == R.RESERVED
        assert reg.status(1024, proto) == R.RESERVED
    for proto in R.PROTOCOLS:  # ",49151,,IANA Reserved": no transport named, so every one
        assert reg.status(49151, proto) == R.RESERVED, proto
    assert [(s.status, s.description) for s in reg.rows_for_port(49151)] == [(R.RESERVED, "IANA Reserved")]
    # an Unassigned row, and a port inside an Unassigned range row
    assert reg.status(4, "tcp") == R.UNASSIGNED and reg.rows_for_port(4, "tcp")[0].description == "Unassigned"
    assert reg.status(48700, "udp") == R.UNASSIGNED
    assert [s.port_text() for s in reg.rows_for_port(48700)] == ["48654-48999"]
    # no row at all for a transport: unassigned
    assert reg.rows_for_port(4, "sctp") == [] and reg.status(4, "sctp") == R.UNASSIGNED
    # assignments still win, and a name never comes from a Reserved row
    assert reg.status(80, "tcp") == R.ASSIGNED and reg.status(1021, "dccp") == R.ASSIGNED
    assert reg.services_for_port(0) == [] and reg.services_for_port(1024) == []


def test_shipped_registry_records_its_sources():
    meta = R.default().meta
    assert meta["source"] == "iana-csv+debian-wireshark-services"
    assert len(meta["csv_sha256"]) == 16 and len(meta["services_sha256"]) == 16
    assert meta["csv_date"] >= "2023-01-01"          # the newest date inside the CSV
    assert meta["csv_origin"].startswith("pypi:")      # the package the CSV was taken from
    assert int(meta["services_added"]) >= 0
    counts = {st: sum(1 for s in R.default().services if s.status == st)
              for st in (R.ASSIGNED, R.RESERVED, R.UNASSIGNED)}
    assert counts[R.RESERVED] > 500 and counts[R.UNASSIGNED] > 500 and counts[R.ASSIGNED] > 6000


def test_shipped_registry_holds_the_recorded_iana_rows():
    """Every row of the recorded IANA sample (verbatim from an IANA CSV) is in the shipped file."""
    with open(SAMPLE) as f:
        sample = R.parse_iana_csv(f.read(), SAMPLE)
    reg = R.default()
    by_key: dict = {}
    for s in reg.services:
        by_key.setdefault((s.name, s.low, s.high, s.status, s.description), set()).update(s.protos or ("",))
    for s in sample:
        have = by_key.get((s.name, s.low, s.high, s.status, s.description))
        assert have is not None, s
        assert set(s.protos or ("",)) <= have, (s, have)


def _cli_port(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*PYTHON_M, "port", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="host facts from procfs")
def test_port_command_shows_reserved_and_unassigned_text_and_json():
    import json

    for port, want in ((0, {"tcp": "reserved", "udp": "reserved"}),
                       (1024, {"tcp": "reserved", "udp": "reserved"}),
                       (49151, dict.fromkeys(R.PROTOCOLS, "reserved")),
                       (48700, dict.fromkeys(R.PROTOCOLS, "unassigned"))):
        r = _cli_port(str(port), "--json", "--no-owners")
        assert r.returncode == 0, r.stderr
        d = json.loads(r.stdout)
        assert d["port"] == port and d["services"] == []
        assert {p: d["iana_status"][p] for p in want} == want, d["iana_status"]
        t = _cli_port(str(port), "--no-owners")
        assert t.returncode == 0, t.stderr
        iana = next(ln for ln in t.stdout.splitlines() if ln.strip().startswith("IANA:"))
        for p, st in want.items():
            assert f"{p} {st}" in iana, iana


# --- the IANA CSV path, from a recorded sample -------------------------------------

def csv_registry(path=SAMPLE) -> R.Registry:
    with open(path) as f:
        return R.Registry.of(R.parse_iana_csv(f.read(), path))


def test_csv_statuses_ranges_and_blank_protocols():
    reg = csv_registry()
    assert reg.status(0, "tcp") == R.RESERVED
    assert reg.status(4, "udp") == R.UNASSIGNED
    assert reg.status(24, "tcp") == R.RESERVED         # "any private mail system"
    assert reg.status(51, "sctp") == R.RESERVED        # blank protocol: every transport
    assert reg.status(48700, "tcp") == R.UNASSIGNED    # inside the 48654-48999 range row
    assert [s.port_text() for s in reg.rows_for_port(48700)] == ["48654-48999"]
    assert reg.status(49000, "tcp") == R.ASSIGNED and reg.status(49000, "udp") == R.RESERVED
    assert reg.status(49151, "dccp") == R.RESERVED
    assert [s.name for s in reg.services_for_port(9, "dccp")] == ["discard"]
    # service-name-only rows: found by name, no port
    assert reg.rows_for_name("webex", "udp")[0].low is None
    assert reg.ports_for_name("webex") == []
    # multi-line quoted notes and doubled quotes survive
    assert {s.name for s in reg.services_for_port(63, "tcp")} == {"whoispp", "whois++"}
    assert '"whois++"' in reg.rows_for_name("whoispp")[0].description


def test_csv_merges_protocols_like_debian():
    rows = R.parse_iana_csv(open(SAMPLE).read())
    discard = [s for s in rows if s.name == "discard"]
    assert [s.protos for s in discard] == [("tcp", "udp", "sctp", "dccp")]
    # one row per name and port; sctp's "FTP" is not a part of the first description, so it is kept after it
    ftp = [(s.protos, s.description) for s in rows if s.name == "ftp"]
    assert ftp == [(("tcp", "udp", "sctp"), "File Transfer Protocol [Control]; sctp: FTP")]
    # ...but a description that is a part of the first one adds nothing
    text = ("Service Name,Port Number,Transport Protocol,Description\n"
            "ssh,22,tcp,The Secure Shell (SSH) Protocol\nssh,22,udp,The Secure Shell (SSH) Protocol\n"
            "ssh,22,sctp,SSH\n,15,tcp,Unassigned [was netstat]\n,15,udp,Unassigned\n"
            "foo,7000,,Foo\nfoo,7000,tcp,Foo\n")
    got = {(s.name, s.port_text(), s.protos, s.description) for s in R.parse_iana_csv(text)}
    assert got == {("ssh", "22", ("tcp", "udp", "sctp"), "The Secure Shell (SSH) Protocol"),
                   ("", "15", ("tcp",), "Unassigned [was netstat]"), ("", "15", ("udp",), "Unassigned"),
                   ("foo", "7000", (), "Foo")}


def test_csv_accepts_old_column_11_name(tmp_path):
    text = open(SAMPLE).read().replace("Unauthorized Use Reported", "Known Unauthorized Uses", 1)
    p = tmp_path / "old.csv"
    p.write_text(text)
    assert csv_registry(str(p)).tuples() == csv_registry().tuples()


def test_csv_rejects_other_files(tmp_path):
    with pytest.raises(SystemReadError):
        R.parse_iana_csv("a,b,c\n1,2,3\n", "x.csv")
    with pytest.raises(SystemReadError):
        R.parse_iana_csv("Service Name,Port Number,Transport Protocol,Description\nx,70000,tcp,y\n")
    with pytest.raises(SystemReadError):
        R.parse_services("foo 80\n")


def test_build_script_csv_and_services_round_trip(tmp_path):
    out = tmp_path / "reg.tsv.gz"
    py = sys.executable
    r = subprocess.run([py, os.path.join(ROOT, "scripts", "build_registry.py"), "--csv", SAMPLE, "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    built = R.read_data(str(out))
    assert built.meta["source"] == "iana-csv"
    assert built.tuples() == csv_registry().tuples()
    assert built.status(48700, "tcp") == R.UNASSIGNED and built.status(0, "udp") == R.RESERVED
    # reproducible: same input, same bytes
    first = out.read_bytes()
    subprocess.run([py, os.path.join(ROOT, "scripts", "build_registry.py"), "--csv", SAMPLE, "-o", str(out)],
                   check=True, capture_output=True)
    assert out.read_bytes() == first
    bad = subprocess.run([py, os.path.join(ROOT, "scripts", "build_registry.py"), "--csv", str(tmp_path / "none.csv"),
                          "-o", str(out)], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def _header_without(h: str, *prefixes: str) -> str:
    return " ".join(w for w in h.split() if not w.startswith(prefixes))


@needs_debian
def test_build_reproduces_shipped_file(tmp_path):
    """Rebuilding from the same IANA CSV and Debian file gives the shipped rows, byte for byte.

    The CSV does not ship with the repository (docs/port.md says how to fetch the exact
    copy): point PORTSCOPE_IANA_CSV at it to run this.
    """
    import hashlib

    meta = R.default().meta
    csv_path = os.environ.get("PORTSCOPE_IANA_CSV")
    if not csv_path or not os.path.exists(csv_path):
        pytest.skip("set PORTSCOPE_IANA_CSV to the IANA CSV the shipped file was built from (docs/port.md)")
    sha = lambda p: hashlib.sha256(open(p, "rb").read()).hexdigest()[:16]  # noqa: E731
    if sha(csv_path) != meta["csv_sha256"]:
        pytest.skip(f"{csv_path} is not the CSV the shipped file was built from ({meta['csv_sha256']})")
    if sha(DEBIAN) != meta["services_sha256"]:
        pytest.skip(f"{DEBIAN} is not the copy the shipped file was built from ({meta['services_sha256']})")
    out = tmp_path / "reg.tsv.gz"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "build_registry.py"), "--csv", csv_path,
                        "--services", DEBIAN, "--csv-origin", meta["csv_origin"], "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with gzip.open(out, "rt") as a, gzip.open(R.DATA_FILE, "rt") as b:
        built, shipped = a.read().split("\n"), b.read().split("\n")
    assert built[1:] == shipped[1:]
    # services_date is the file's mtime (a copy may not keep it); services_origin comes from dpkg
    assert _header_without(built[0], "services_date=", "services_origin=") == \
        _header_without(shipped[0], "services_date=", "services_origin=")


def test_merge_keeps_every_csv_row_and_adds_what_the_services_file_lacks(tmp_path):
    services = tmp_path / "services"
    services.write_text("discard\t\t9/tcp/udp\t# Discard\n"              # in the CSV already
                        "later-svc\t48700/tcp\t# assigned after the CSV was taken\n"
                        "ftp\t\t21/dccp\t# a transport the CSV lacks\n")
    with open(SAMPLE) as f:
        base = R.parse_iana_csv(f.read(), SAMPLE)
    rows, added = R.merge_services(base, R.parse_services(services.read_text()))
    assert added == 2 and rows[:len(base)] == base
    reg = R.Registry.of(rows)
    assert [s.protos for s in reg.rows_for_name("discard")] == [("tcp", "udp", "sctp", "dccp")]
    assert reg.status(48700, "tcp") == R.ASSIGNED and reg.status(48700, "udp") == R.UNASSIGNED
    assert {s.name for s in reg.services_for_port(48700, "tcp")} == {"later-svc"}
    assert reg.status(21, "dccp") == R.ASSIGNED
    assert reg.status(0, "tcp") == R.RESERVED  # the CSV's statuses survive the merge


@needs_debian
def test_build_script_merges_csv_and_debian(tmp_path):
    out = tmp_path / "reg.tsv.gz"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "build_registry.py"), "--csv", SAMPLE,
                        "--services", DEBIAN, "--csv-origin", "test:sample", "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    built = R.read_data(str(out))
    assert built.meta["source"] == "iana-csv+debian-wireshark-services"
    assert built.meta["csv_origin"] == "test:sample" and built.meta["csv_date"] == "2022-02-07"
    assert built.meta["rows"] == str(len(built))
    want = debian_tuples()
    have = built.tuples()
    assert want <= have and csv_registry().tuples() <= have
    assert len(have) >= len(want)
    assert built.status(0, "tcp") == R.RESERVED and built.status(49151, "sctp") == R.RESERVED
    assert built.status(1, "tcp") == R.ASSIGNED
    bad = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "build_registry.py"), "--csv", SAMPLE,
                          "--csv-origin", "two words", "-o", str(out)], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_csv_with_crlf_line_ends_parses_the_same(tmp_path):
    """IANA serves the CSV with CRLF line ends and LF inside quoted fields."""
    text = open(SAMPLE, newline="").read()
    crlf = tmp_path / "crlf.csv"
    # rows end in CRLF; the quoted multi-line notes keep their bare LF
    import csv
    import io

    buf = io.StringIO(newline="")
    csv.writer(buf, lineterminator="\r\n").writerows(csv.reader(io.StringIO(text)))
    crlf.write_bytes(buf.getvalue().encode())
    out = tmp_path / "reg.tsv.gz"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "build_registry.py"), "--csv", str(crlf),
                        "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert R.read_data(str(out)).services == csv_registry().services


def test_damaged_data_file_is_one_clear_error(tmp_path):
    p = tmp_path / "bad.gz"
    p.write_bytes(b"not gzip")
    with pytest.raises(SystemReadError):
        R.read_data(str(p))
    with pytest.raises(SystemReadError):
        R.read_data(str(tmp_path / "missing.gz"))
    with pytest.raises(SystemReadError):
        R.decode("#portscope-iana v1\n80\ttcp\tZ\thttp\tbad status\n").rows_for_port(80)


def test_protocol_check():
    assert R.check_proto("TCP") == "tcp"
    with pytest.raises(BadInput):
        R.check_proto("icmp")
