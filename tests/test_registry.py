"""The offline IANA registry: the shipped file against Debian's copy, the CSV path
against a recorded IANA sample, look-ups both ways, the lazy and the full paths agree."""
from __future__ import annotations

import gzip
import os
import subprocess
import sys

import pytest

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


def test_lazy_lookups_agree_with_full_parse():
    """The str.find fast path must give exactly what a scan of every row gives."""
    reg = R.read_data()
    full = reg.services  # materialise independently
    by_port: dict[int, list] = {}
    for s in full:
        if s.low is not None:
            for p in range(s.low, s.high + 1):
                by_port.setdefault(p, []).append(s)
    probe = list(range(0, 1100)) + list(range(5990, 6080)) + [5432, 8080, 49150, 49151, 65535]
    fresh = R.read_data()  # a registry whose rows were never materialised
    for p in probe:
        assert sorted(fresh.rows_for_port(p), key=repr) == sorted(by_port.get(p, []), key=repr), p
    for name in ("http", "ssh", "x11", "CAIlic", "ircu", "discard"):
        want = sorted((s for s in full if s.name.lower() == name.lower()), key=repr)
        assert sorted(R.read_data().rows_for_name(name), key=repr) == want


def test_taken_ports_matches_status():
    reg = R.default()
    tcp = reg.taken_ports("tcp")
    for p in (0, 1, 4, 22, 80, 1021, 5432, 6010, 8080, 40000, 49151, 60000):
        assert bool(tcp[p]) == (reg.status(p, "tcp") != R.UNASSIGNED), p


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
    ftp = sorted((s.protos, s.description) for s in rows if s.name == "ftp")
    assert ftp == [(("sctp",), "FTP"), (("tcp", "udp"), "File Transfer Protocol [Control]")]


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


@needs_debian
def test_build_from_debian_reproduces_shipped_file(tmp_path):
    import hashlib

    shipped_from = R.default().meta["source_sha256"]
    if hashlib.sha256(open(DEBIAN, "rb").read()).hexdigest()[:16] != shipped_from:
        pytest.skip(f"{DEBIAN} is not the copy the shipped file was built from ({shipped_from})")
    out = tmp_path / "reg.tsv.gz"
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "build_registry.py"), "--services", DEBIAN,
                    "-o", str(out)], check=True, capture_output=True)
    with gzip.open(out, "rt") as a, gzip.open(R.DATA_FILE, "rt") as b:
        built, shipped = a.read().split("\n"), b.read().split("\n")
    assert built[1:] == shipped[1:]
    # the header's source_date is the file's mtime, which a copy may not keep
    strip = lambda h: " ".join(w for w in h.split() if not w.startswith("source_date="))  # noqa: E731
    assert strip(built[0]) == strip(shipped[0])


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
