"""The IANA Service Name and Transport Protocol Port Number Registry, offline.

The snapshot ships as `data/iana-services.tsv.gz` (built by scripts/build_registry.py
from the IANA CSV or from Debian's libwireshark-data copy). It is read once, on the
first look-up, and kept as text: `portscope port 80` pays for one gunzip (~2 ms) and
a str.find, and never parses the other ~6k rows; bulk users parse them all once.

Data file: one header line `#portscope-iana v1 <key=value ...>`, then one line per
row, tab-separated:  PORT[-HIGH]  PROTOS  STATUS  NAME  DESCRIPTION
sorted range rows first, then by port, then rows without a port (see `encode`).
PROTOS is "tcp/udp/..." or empty (IANA rows that name no transport); PORT is empty
for service-name-only rows; STATUS is A (assigned), R (reserved) or U (unassigned).
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from typing import Iterable

from .errors import BadInput, SystemReadError

PROTOCOLS = ("tcp", "udp", "sctp", "dccp")
ASSIGNED, RESERVED, UNASSIGNED = "assigned", "reserved", "unassigned"
_STATUS_CODE = {ASSIGNED: "A", RESERVED: "R", UNASSIGNED: "U"}
_CODE_STATUS = {v: k for k, v in _STATUS_CODE.items()}

DATA_FILE = os.path.join(os.path.dirname(__file__), "data", "iana-services.tsv.gz")
FORMAT_TAG = "#portscope-iana v1"
# the IANA CSV renamed column 11; both spellings occur in the wild
_CSV_COLUMN_11 = ("Unauthorized Use Reported", "Known Unauthorized Uses")


@dataclass(frozen=True, slots=True)
class Service:
    """One registry row: a name on a port (or port range) for some transports."""

    name: str                  # "" for unnamed rows (Unassigned, Reserved, "any private ...")
    low: int | None            # None: a service name registered without a port
    high: int | None
    protos: tuple[str, ...]    # () when IANA names no transport (applies to all)
    status: str                # ASSIGNED | RESERVED | UNASSIGNED
    description: str = ""

    @property
    def is_range(self) -> bool:
        return self.low is not None and self.high != self.low

    def covers(self, port: int, proto: str | None = None) -> bool:
        if self.low is None or not self.low <= port <= self.high:
            return False
        return proto is None or not self.protos or proto in self.protos

    def port_text(self) -> str:
        if self.low is None:
            return ""
        return str(self.low) if self.high == self.low else f"{self.low}-{self.high}"


class Registry:
    """Look-ups both ways over the encoded registry text (see the module docstring).

    Rows stay as text until asked for: the file is sorted (range rows first, then by
    port), so the rows of one port are one contiguous block found with str.find,
    and `portscope port 80` never builds the other ~6k rows. Bulk users (suggest,
    tuples) call `services`, which parses everything once.
    """

    def __init__(self, text: str, source: str = "<registry>"):
        lines_start = text.find("\n") + 1
        head = text[:lines_start].strip()
        if not head.startswith(FORMAT_TAG):
            raise SystemReadError(f"{source}: not a portscope registry file")
        self.meta = dict(kv.split("=", 1) for kv in head[len(FORMAT_TAG):].split() if "=" in kv)
        self.source = source
        self._text = "\n" + text[lines_start:]   # every row now starts right after a "\n"
        self._lower = self._text.lower() if self._text.isascii() else None
        self._services: tuple[Service, ...] | None = None
        self._ranges: tuple[Service, ...] | None = None
        self._by_name: dict[str, list[Service]] | None = None
        self._taken: dict[str, bytes] = {}

    @classmethod
    def of(cls, services: Iterable[Service], meta: dict | None = None) -> "Registry":
        return cls(encode(services, meta))

    def _parse(self, line: str) -> Service:
        try:
            port, protos, st, name, desc = line.split("\t")
            if not port:
                low = high = None
            elif "-" in port:
                a, b = port.split("-")
                low, high = int(a), int(b)
            else:
                low = high = int(port)
            return Service(name, low, high, tuple(protos.split("/")) if protos else (),
                           _CODE_STATUS[st], desc)
        except (ValueError, KeyError):
            raise SystemReadError(f"{self.source}: malformed line {line!r}")

    def _block(self, prefix: str) -> list[Service]:
        """The contiguous rows whose line starts with `prefix`."""
        text, out = self._text, []
        i = text.find("\n" + prefix)
        while i >= 0 and text.startswith(prefix, i + 1):
            j = text.find("\n", i + 1)
            out.append(self._parse(text[i + 1:j if j >= 0 else len(text)]))
            i = j
        return out

    @property
    def services(self) -> tuple[Service, ...]:
        if self._services is None:
            self._services = tuple(self._parse(ln) for ln in self._text.split("\n") if ln)
        return self._services

    def __len__(self) -> int:
        return len(self.services)

    # port -> services
    def range_rows(self) -> tuple[Service, ...]:
        if self._ranges is None:
            rows, text, i = [], self._text, 0
            while True:  # range rows sort first: read until the first single port
                j = text.find("\n", i + 1)
                line = text[i + 1:j if j >= 0 else len(text)]
                tab = line.find("\t")
                if not line or "-" not in line[:tab]:
                    break
                rows.append(self._parse(line))
                if j < 0:
                    break
                i = j
            self._ranges = tuple(rows)
        return self._ranges

    def rows_for_port(self, port: int, proto: str | None = None) -> list[Service]:
        """Every row covering `port` (any status), single-port rows first, then ranges."""
        out = [s for s in self._block(f"{port}\t") if s.covers(port, proto)]
        out.extend(s for s in self.range_rows() if s.covers(port, proto))
        return out

    def services_for_port(self, port: int, proto: str | None = None) -> list[Service]:
        """The named, assigned services on `port` (optionally for one transport)."""
        return [s for s in self.rows_for_port(port, proto) if s.status == ASSIGNED and s.name]

    def status(self, port: int, proto: str) -> str:
        """IANA status of `port` for `proto`: assigned, reserved or unassigned.

        A port no row mentions is unassigned (the Debian copy lists only assignments).
        """
        return _status_of(self.rows_for_port(port, proto))

    def is_assigned(self, port: int, proto: str) -> bool:
        return self.status(port, proto) == ASSIGNED

    def taken_ports(self, proto: str) -> bytearray:
        """65536 flags: 1 where `proto` is assigned or reserved (bulk form of `status`)."""
        if proto in self._taken:
            return bytearray(self._taken[proto])
        flags = bytearray(65536)
        for s in self.services:
            # Unassigned rows (often whole ranges) set nothing, so they never hide a
            # single assignment inside them
            if s.low is not None and s.status != UNASSIGNED and (not s.protos or proto in s.protos):
                flags[s.low:s.high + 1] = b"\x01" * (s.high - s.low + 1)
        self._taken[proto] = bytes(flags)
        return flags

    # name -> ports
    def rows_for_name(self, name: str, proto: str | None = None) -> list[Service]:
        key = name.strip().lower()
        if not key or "\t" in key or "\n" in key:
            return []
        if self._lower is not None and self._by_name is None:
            rows = self._find_name(key)
        else:
            if self._by_name is None:
                idx: dict[str, list[Service]] = {}
                for s in self.services:
                    if s.name:
                        idx.setdefault(s.name.lower(), []).append(s)
                self._by_name = idx
            rows = self._by_name.get(key, [])
        return [s for s in rows if proto is None or not s.protos or proto in s.protos]

    def _find_name(self, key: str) -> list[Service]:
        # lower-cased ASCII text has the same offsets, so find there, parse the original
        low, text, out = self._lower, self._text, []
        for code in _CODE_STATUS:
            needle = f"\t{code.lower()}\t{key}\t"
            i = low.find(needle)
            while i >= 0:
                a = text.rfind("\n", 0, i) + 1
                b = text.find("\n", i)
                out.append(self._parse(text[a:b if b >= 0 else len(text)]))
                i = low.find(needle, i + 1)
        out.sort(key=lambda s: (s.low is None, s.low or 0))
        return out

    def ports_for_name(self, name: str, proto: str | None = None) -> list[int]:
        """Sorted port numbers registered under `name` (ranges expanded)."""
        ports: set[int] = set()
        for s in self.rows_for_name(name, proto):
            if s.low is not None:
                ports.update(range(s.low, s.high + 1))
        return sorted(ports)

    def close_names(self, name: str, n: int = 3) -> list[str]:
        """Similar registered names, for 'did you mean' hints."""
        import difflib

        names = {s.name.lower() for s in self.services if s.name}
        return difflib.get_close_matches(name.strip().lower(), sorted(names), n=n, cutoff=0.75)

    def tuples(self) -> set[tuple[str, str, str]]:
        """(name, port-or-range, proto) for every named row with a port and transport."""
        return {(s.name, s.port_text(), p) for s in self.services
                if s.name and s.low is not None for p in s.protos}


def _status_of(rows: list[Service]) -> str:
    if any(s.status == ASSIGNED for s in rows):
        return ASSIGNED
    if any(s.status == RESERVED for s in rows):
        return RESERVED
    return UNASSIGNED


# parsing sources ----------------------------------------------------------------

def _port_field(text: str, where: str) -> tuple[int | None, int | None]:
    t = text.strip()
    if not t:
        return None, None
    lo, sep, hi = t.partition("-")
    try:
        low = int(lo)
        high = int(hi) if sep else low
    except ValueError:
        raise SystemReadError(f"{where}: bad port {text!r}")
    if not 0 <= low <= high <= 65535:
        raise SystemReadError(f"{where}: bad port {text!r}")
    return low, high


def _clean(text: str) -> str:
    return " ".join(text.split())


def parse_services(text: str, source: str = "services") -> list[Service]:
    """services(5) text with merged transports (`discard 9/tcp/udp/sctp/dccp # Discard`)."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        body, _, comment = line.partition("#")
        fields = body.split()
        if not fields:
            continue
        if len(fields) < 2 or "/" not in fields[1]:
            raise SystemReadError(f"{source}:{n}: expected 'name port/proto', got {line!r}")
        port_s, *protos = fields[1].split("/")
        low, high = _port_field(port_s, f"{source}:{n}")
        protos = [p.lower() for p in protos if p]
        if low is None or not protos:
            raise SystemReadError(f"{source}:{n}: expected 'name port/proto', got {line!r}")
        desc = _clean(comment)
        # aliases (services(5) fields after the port) are names for the same entry
        for name in [fields[0], *fields[2:]]:
            out.append(Service(name, low, high, tuple(protos), ASSIGNED, desc))
    return out


def _csv_status(name: str, description: str) -> str:
    if name:
        return ASSIGNED
    if description.lower().startswith("unassigned"):
        return UNASSIGNED
    # "Reserved", "IANA Reserved", "any private mail system": kept out of assignment
    return RESERVED


def parse_iana_csv(text: str, source: str = "csv") -> list[Service]:
    """IANA's service-names-port-numbers.csv; rows merged over transports like Debian's."""
    import csv  # only the build script and tests parse CSV: keep it off the look-up path
    import io

    reader = csv.DictReader(io.StringIO(text))
    need = ("Service Name", "Port Number", "Transport Protocol", "Description")
    header = reader.fieldnames or []
    if any(c not in header for c in need):
        raise SystemReadError(f"{source}: not the IANA CSV (columns {header[:4]!r})")
    if len(header) > 10 and header[10] not in _CSV_COLUMN_11:
        raise SystemReadError(f"{source}: unexpected column 11 {header[10]!r}")
    merged: dict[tuple, list[str]] = {}
    for n, row in enumerate(reader, 2):
        name = (row["Service Name"] or "").strip()
        low, high = _port_field(row["Port Number"] or "", f"{source}:{n}")
        proto = (row["Transport Protocol"] or "").strip().lower()
        desc = _clean(row["Description"] or "")
        if not name and low is None:
            continue
        key = (name, low, high, _csv_status(name, desc), desc)
        protos = merged.setdefault(key, [])
        if proto and proto not in protos:
            protos.append(proto)
    return [Service(name, low, high, tuple(sorted(p, key=_proto_order)), status, desc)
            for (name, low, high, status, desc), p in merged.items()]


def _proto_order(p: str) -> tuple[int, str]:
    return (PROTOCOLS.index(p) if p in PROTOCOLS else len(PROTOCOLS), p)


# the shipped file -----------------------------------------------------------------

def encode(services: Iterable[Service], meta: dict | None = None) -> str:
    # range rows first (a short block the reader scans once), then by port; no-port rows last
    rows = sorted(services, key=lambda s: (s.low is None, not s.is_range, s.low or 0, s.high or 0, s.name))
    head = FORMAT_TAG + "".join(f" {k}={v}" for k, v in (meta or {}).items())
    lines = [head]
    for s in rows:
        for f in (s.name, s.description):
            if "\t" in f or "\n" in f:
                raise ValueError(f"tab or newline in registry field {f!r}")
        lines.append("\t".join((s.port_text(), "/".join(s.protos), _STATUS_CODE[s.status],
                                s.name, s.description)))
    return "\n".join(lines) + "\n"


def decode(text: str, source: str = DATA_FILE) -> Registry:
    return Registry(text, source)


def write_data(services: Iterable[Service], path: str, meta: dict | None = None) -> None:
    """Write the gzip'd TSV reproducibly (mtime 0) and atomically."""
    data = encode(services, meta).encode("utf-8")
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                               mtime=0, compresslevel=9) as gz:
        gz.write(data)
    os.replace(tmp, path)


def read_data(path: str = DATA_FILE) -> Registry:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return decode(f.read(), path)
    except FileNotFoundError:
        raise SystemReadError(f"registry data file missing: {path} (run scripts/build_registry.py)")
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise SystemReadError(f"registry data file unreadable: {path}: {e}")


_default: Registry | None = None


def default() -> Registry:
    """The shipped registry, loaded once per process."""
    global _default
    if _default is None:
        _default = read_data()
    return _default


def check_proto(proto: str | None) -> str | None:
    if proto is None:
        return None
    p = proto.strip().lower()
    if p not in PROTOCOLS:
        raise BadInput(f"unknown protocol {proto!r} (expected one of {', '.join(PROTOCOLS)})")
    return p


def services_for_port(port: int, proto: str | None = None) -> list[Service]:
    return default().services_for_port(port, check_proto(proto))


def ports_for_name(name: str, proto: str | None = None) -> list[int]:
    return default().ports_for_name(name, check_proto(proto))

