"""The IANA Service Name and Transport Protocol Port Number Registry, offline.

The snapshot ships as `data/iana-services.tsv.gz`, built by scripts/build_registry.py
from IANA's service-names-port-numbers.csv merged with Debian's libwireshark-data copy
(/usr/share/wireshark/services); either source alone also works. Its header records
where each source came from (docs/port.md, "The offline registry"). It is read once,
on the first look-up, and kept as text: the file is gzip members (see write_data), so
`portscope port 80` gunzips the range rows and its port's block of 1,024 ports, finds its
rows with str.find and never parses the other ~9k rows; bulk users gunzip and parse them all once.

Data file: one header line `#portscope-iana v1 <key=value ...>`, then one line per
row, tab-separated:  PORT[-HIGH]  PROTOS  STATUS  NAME  DESCRIPTION
sorted range rows first, then by port, then rows without a port (see `encode`).
PROTOS is "tcp/udp/..." or empty (IANA rows that name no transport: they apply to
all); PORT is empty for service-name-only rows; STATUS is A (assigned), R (reserved)
or U (unassigned). A port that no row covers for a transport is unassigned.
"""
from __future__ import annotations

import os
import zlib

from .errors import BadInput, SystemReadError
from .value import Frozen

TYPE_CHECKING = False     # typing's would import typing on `portscope port N`'s path
if TYPE_CHECKING:
    from typing import Iterable

PROTOCOLS = ("tcp", "udp", "sctp", "dccp")
ASSIGNED, RESERVED, UNASSIGNED = "assigned", "reserved", "unassigned"
_STATUS_CODE = {ASSIGNED: "A", RESERVED: "R", UNASSIGNED: "U"}
_CODE_STATUS = {v: k for k, v in _STATUS_CODE.items()}

DATA_FILE = os.path.join(os.path.dirname(__file__), "data", "iana-services.tsv.gz")
FORMAT_TAG = "#portscope-iana v1"
# the IANA CSV renamed column 11; both spellings occur in the wild
_CSV_COLUMN_11 = ("Unauthorized Use Reported", "Known Unauthorized Uses")


class Service(Frozen):
    """One registry row: a name on a port (or port range) for some transports."""

    __slots__ = ("name", "low", "high", "protos", "status", "description")
    name: str                  # "" for unnamed rows (Unassigned, Reserved, "any private ...")
    low: int | None            # None: a service name registered without a port
    high: int | None
    protos: tuple[str, ...]    # () when IANA names no transport (applies to all)
    status: str                # ASSIGNED | RESERVED | UNASSIGNED
    description: str

    def __init__(self, name: str, low: int | None, high: int | None, protos: tuple[str, ...], status: str,
                 description: str = "") -> None:
        self._init(name=name, low=low, high=high, protos=protos, status=status, description=description)

    @property
    def is_range(self) -> bool:
        """True for a row registered on a port range rather than one port."""
        return self.low is not None and self.high != self.low

    def covers(self, port: int, proto: str | None = None) -> bool:
        """Does the row include `port` (for `proto`, when given; a row without protocols covers all)?"""
        if self.low is None or self.high is None or not self.low <= port <= self.high:
            return False
        return proto is None or not self.protos or proto in self.protos

    def port_text(self) -> str:
        """"80" or "6000-6063" ("" for a row without a port)."""
        if self.low is None:
            return ""
        return str(self.low) if self.high == self.low else f"{self.low}-{self.high}"


class Registry:
    """Look-ups both ways over the encoded registry text (see the module docstring).

    Rows stay as text until asked for: the file is sorted (range rows first, then by
    port), so the rows of one port are one contiguous block found with str.find,
    and `portscope port 80` never builds the other ~9k rows. Bulk users (suggest,
    tuples) call `services`, which parses everything once.
    """

    def __init__(self, text: str, source: str = "<registry>", members: bytes | None = None) -> None:
        lines_start = text.find("\n") + 1
        head = text[:lines_start].strip()
        if not head.startswith(FORMAT_TAG):
            raise SystemReadError(f"{source}: not a portscope registry file")
        self.meta = dict(kv.split("=", 1) for kv in head[len(FORMAT_TAG):].split() if "=" in kv)
        self.source = source
        # with `members` (the data file's gzip members after the first, see write_data), `text`
        # holds the header and range rows only; each port block is gunzipped when first asked for
        self._rest, self._offsets = members, member_offsets(self.meta) if members is not None else None
        self._blocks: dict[int, str] = {}
        self._head_text = "\n" + text[lines_start:]   # every row now starts right after a "\n"
        self._full: str | None = self._head_text if members is None else None
        self._lower: str | None | bool = False   # False: not computed yet (see _lowered)
        self._services: tuple[Service, ...] | None = None
        self._ranges: tuple[Service, ...] | None = None
        self._range_spans: list[tuple[int, int, str]] | None = None
        self._range_text: list[str] | None = None
        self._by_name: dict[str, list[Service]] | None = None
        self._taken: dict[str, bytes] = {}

    @property
    def _text(self) -> str:
        """Every row's text (in a member-indexed file, gunzipped on first use)."""
        if self._full is None:
            self._full = self._head_text + "".join(self._block_text(k)[1:] for k in range(len(self._offsets or ()) - 1))
        return self._full

    def _block_text(self, k: int) -> str:
        """"\n" + the rows of member k + 1 (port block k; the last one: rows without a port)."""
        text = self._blocks.get(k)
        if text is None:
            assert self._rest is not None and self._offsets is not None
            raw = self._rest[self._offsets[k]:self._offsets[k + 1]]
            try:
                text = "\n" + gunzip(raw).decode("utf-8")
            except (EOFError, UnicodeDecodeError, zlib.error) as e:
                raise SystemReadError(f"registry data file unreadable: {self.source}: {e}")
            self._blocks[k] = text
        return text

    @classmethod
    def of(cls, services: Iterable[Service], meta: dict | None = None) -> "Registry":
        """A registry of the given rows (encoded as the shipped file would be)."""
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

    def _block(self, prefix: str, port: int) -> list[Service]:
        """The contiguous rows whose line starts with `prefix` (rows of `port`)."""
        text = self._text if self._full is not None or not 0 <= port <= MAX_PORT else \
            self._block_text(port // BLOCK_PORTS)
        out = []
        i = text.find("\n" + prefix)
        while i >= 0 and text.startswith(prefix, i + 1):
            j = text.find("\n", i + 1)
            out.append(self._parse(text[i + 1:j if j >= 0 else len(text)]))
            i = j
        return out

    @property
    def services(self) -> tuple[Service, ...]:
        """Every row, parsed on first use (most lookups never need them all)."""
        if self._services is None:
            self._services = tuple(self._parse(ln) for ln in self._text.split("\n") if ln)
        return self._services

    def __len__(self) -> int:
        return len(self.services)

    # port -> services
    def _range_lines(self) -> list[str]:
        """The range rows' lines, in the file's order (by low port), not parsed."""
        if self._range_text is None:
            text = self._head_text
            if self._rest is None:      # the whole text: range rows sort first, up to the first other row
                end = text.find("\n", 1)
                while end >= 0:
                    port = text[end + 1:text.find("\t", end + 1)]
                    if "-" not in port or not port.replace("-", "", 1).isdigit():
                        break
                    end = text.find("\n", end + 1)
                text = text[:end] if end >= 0 else text
            # a member-indexed file's first member: only range rows
            self._range_text = [ln for ln in text[1:].split("\n") if ln]
        return self._range_text

    def _spans(self) -> list[tuple[int, int, str]]:
        """(low, high, line) of every range row, found without parsing the rows."""
        if self._range_spans is None:
            lines = self._range_lines()
            ports = [ln.partition("\t")[0].partition("-") for ln in lines]
            self._range_spans = [(int(lo), int(hi), ln) for (lo, _, hi), ln in zip(ports, lines)]
        return self._range_spans

    def _covering(self, port: int) -> list[str]:
        """The lines of the range rows whose range holds `port`. Rows sort by low port, so
        a binary search finds the ones that start at or below it, and only their high port is
        read: one look-up never parses all ~750 range rows (about 1 ms)."""
        if self._range_spans is not None:
            return [ln for low, high, ln in self._range_spans if low <= port <= high]
        lines = self._range_lines()
        lo, hi = 0, len(lines)
        while lo < hi:              # the first row whose low port is above `port`
            mid = (lo + hi) // 2
            if int(lines[mid].partition("-")[0]) <= port:
                lo = mid + 1
            else:
                hi = mid
        return [ln for ln in lines[:lo] if int(ln.partition("\t")[0].partition("-")[2]) >= port]

    def range_rows(self) -> tuple[Service, ...]:
        """The rows registered on port ranges, parsed on first use."""
        if self._ranges is None:
            self._ranges = tuple(self._parse(line) for _, _, line in self._spans())
        return self._ranges

    def rows_for_port(self, port: int, proto: str | None = None) -> list[Service]:
        """Every row covering `port` (any status), single-port rows first, then ranges."""
        out = [s for s in self._block(f"{port}\t", port) if s.covers(port, proto)]
        for line in self._covering(port):  # ~750 range rows: parse only the ones that cover it
            s = self._parse(line)
            if s.covers(port, proto):
                out.append(s)
        return out

    def port_summary(self, port: int, proto: str | None, protos: Iterable[str]) -> tuple[list[Service], dict[str, str]]:
        """`services_for_port(port, proto)` and `status(port, p)` for each of `protos`, from
        one look-up of the port's rows (what `portscope port N` shows)."""
        rows = self.rows_for_port(port)
        services = [s for s in rows if s.status == ASSIGNED and s.name and s.covers(port, proto)]
        return services, {p: _status_of([s for s in rows if s.covers(port, p)]) for p in protos}

    def services_for_port(self, port: int, proto: str | None = None) -> list[Service]:
        """The named, assigned services on `port` (optionally for one transport)."""
        return [s for s in self.rows_for_port(port, proto) if s.status == ASSIGNED and s.name]

    def status(self, port: int, proto: str) -> str:
        """IANA status of `port` for `proto`: assigned, reserved or unassigned.

        Any assigned row wins over a Reserved/Unassigned one (a range row marked
        Unassigned can hold a later single assignment); a port no row covers for
        `proto` is unassigned.
        """
        return _status_of(self.rows_for_port(port, proto))

    def is_assigned(self, port: int, proto: str) -> bool:
        """True when IANA lists `port`/`proto` as assigned to a service."""
        return self.status(port, proto) == ASSIGNED

    def taken_ports(self, proto: str) -> bytearray:
        """65536 flags: 1 where `proto` is assigned or reserved (bulk form of `status`)."""
        if proto in self._taken:
            return bytearray(self._taken[proto])
        flags = bytearray(65536)
        for s in self.services:
            # Unassigned rows (often whole ranges) set nothing, so they never hide a
            # single assignment inside them
            if (s.low is not None and s.high is not None and s.status != UNASSIGNED
                    and (not s.protos or proto in s.protos)):
                flags[s.low:s.high + 1] = b"\x01" * (s.high - s.low + 1)
        self._taken[proto] = bytes(flags)
        return flags

    # name -> ports
    def rows_for_name(self, name: str, proto: str | None = None) -> list[Service]:
        """Rows registered under service `name` (case-insensitive), with or without a port."""
        key = name.strip().lower()
        if not key or "\t" in key or "\n" in key:
            return []
        if self._by_name is None and self._lowered() is not None:
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

    def _lowered(self) -> str | None:
        """The text lower-cased with the same offsets, or None where that cannot be.

        Name look-ups find in this copy and parse the original at the same offset. That
        holds while lower() maps every character to exactly one: it never shrinks one,
        so an equal length means none grew ("swÿp" is fine, "İ" is not).
        """
        if self._lower is False:
            low = self._text.lower()
            self._lower = low if len(low) == len(self._text) else None
        return None if isinstance(self._lower, bool) else self._lower

    def _find_name(self, key: str) -> list[Service]:
        # the lower-cased text has the same offsets (see _lowered), so find there, parse the original
        low, text = self._lowered(), self._text
        out: list[Service] = []
        if low is None:
            return out
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
            if s.low is not None and s.high is not None:
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
    """IANA's service-names-port-numbers.csv; rows merged over transports like Debian's.

    A name's rows on one port become one row for all their transports (`ssh 22
    tcp/udp/sctp`), as in Debian's copy. Its description is the first row's (IANA
    lists tcp first); another transport's description is kept after it only when it
    says something more (`...over TLS; udp: ...over DTLS or QUIC`), not when it is
    the same words or a part of them (sctp's "SSH"). Unnamed rows (Reserved,
    Unassigned) merge only when their descriptions are equal. A row that names no
    transport applies to all of them (PROTOS empty).
    """
    import csv  # only the build script and tests parse CSV: keep it off the look-up path
    import io

    reader = csv.DictReader(io.StringIO(text))
    need = ("Service Name", "Port Number", "Transport Protocol", "Description")
    header = reader.fieldnames or []
    if any(c not in header for c in need):
        raise SystemReadError(f"{source}: not the IANA CSV (columns {header[:4]!r})")
    if len(header) > 10 and header[10] not in _CSV_COLUMN_11:
        raise SystemReadError(f"{source}: unexpected column 11 {header[10]!r}")
    # key -> (protos in order seen, {description: its protos} in order seen)
    merged: dict[tuple, tuple[list[str], dict[str, list[str]]]] = {}
    for n, row in enumerate(reader, 2):
        name = (row["Service Name"] or "").strip()
        low, high = _port_field(row["Port Number"] or "", f"{source}:{n}")
        proto = (row["Transport Protocol"] or "").strip().lower()
        desc = _clean(row["Description"] or "")
        if not name and low is None:
            continue
        status = _csv_status(name, desc)
        key = (name, low, high, status) if name else (name, low, high, status, desc)
        protos, descs = merged.setdefault(key, ([], {}))
        if proto not in protos:
            protos.append(proto)
        dp = descs.setdefault(desc, [])
        if proto not in dp:
            dp.append(proto)
    out = []
    for (name, low, high, status, *_), (protos, descs) in merged.items():
        (first, _), *others = descs.items()
        desc = first
        for d, ps in others:
            if d and d.lower() not in first.lower():
                desc += f"; {'/'.join(sorted(ps, key=_proto_order)) or 'any'}: {d}"
        transports = () if "" in protos else tuple(sorted(protos, key=_proto_order))
        out.append(Service(name, low, high, transports, status, desc))
    return out


def _proto_order(p: str) -> tuple[int, str]:
    return (PROTOCOLS.index(p) if p in PROTOCOLS else len(PROTOCOLS), p)


def iana_csv_date(text: str) -> str:
    """The newest Registration/Modification Date in an IANA CSV ("" if none): its as-of date.

    IANA's file carries no version line, so the last change it records dates the copy.
    """
    import csv
    import io

    newest = ""
    for row in csv.DictReader(io.StringIO(text)):
        for col in ("Registration Date", "Modification Date"):
            d = (row.get(col) or "").strip()
            if len(d) >= 4 and d[:4].isdigit() and d > newest:
                newest = d
    return newest


def merge_services(base: Iterable[Service], extra: Iterable[Service]) -> tuple[list[Service], int]:
    """`base` (the IANA CSV rows, every status) plus whatever (name, port, proto) of `extra`
    (Debian's assignments-only copy) it lacks, as assigned rows.

    A copy of the registry taken on another day holds assignments the other lacks, so the
    union keeps every (name, port, proto) of both. Returns (rows, rows added from extra).
    """
    rows = list(base)
    have = {(s.name.lower(), s.low, s.high, p) for s in rows if s.name for p in s.protos}
    added = 0
    for s in extra:
        missing = tuple(p for p in s.protos if (s.name.lower(), s.low, s.high, p) not in have)
        if not s.name or s.low is None or not missing:
            continue
        rows.append(Service(s.name, s.low, s.high, missing, ASSIGNED, s.description))
        have.update((s.name.lower(), s.low, s.high, p) for p in missing)
        added += 1
    return rows, added


# the shipped file -----------------------------------------------------------------

def encode(services: Iterable[Service], meta: dict | None = None) -> str:
    """The shipped data file's text for `services` (with `meta` in its header line)."""
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
    """A registry over encoded text (`source` names it in errors)."""
    return Registry(text, source)


BLOCK_PORTS = 1024       # ports per gzip member of the data file
MAX_PORT = 65535
MEMBERS_KEY = "members"  # the header key listing the later members' compressed sizes


def member_offsets(meta: dict) -> list[int]:
    """Where each gzip member after the first starts (and the last ends), from the header."""
    try:
        sizes = [int(x) for x in meta[MEMBERS_KEY].split(",")]
    except (KeyError, ValueError):
        raise SystemReadError(f"registry data file: bad {MEMBERS_KEY}= in its header")
    if len(sizes) != MAX_PORT // BLOCK_PORTS + 2:
        raise SystemReadError(f"registry data file: {len(sizes)} members, expected {MAX_PORT // BLOCK_PORTS + 2}")
    out = [0]
    for n in sizes:
        out.append(out[-1] + n)
    return out


def write_data(services: Iterable[Service], path: str, meta: dict | None = None) -> None:
    """Write the gzip'd TSV reproducibly (mtime 0) and atomically, as several gzip members
    (gunzip, gzip.open and zcat read them as one text): the header and range rows, then one
    member per BLOCK_PORTS ports, then the rows without a port. The header lists the later
    members' sizes, so one port's look-up gunzips the first member and its port's only."""
    import gzip
    meta = {k: v for k, v in (meta or {}).items() if k != MEMBERS_KEY}
    lines = encode(services, meta).split("\n")[:-1]
    head, rows = lines[0], lines[1:]
    ranges = [ln for ln in rows if "-" in ln.partition("\t")[0]]
    blocks: list[list[str]] = [[] for _ in range(MAX_PORT // BLOCK_PORTS + 2)]
    for ln in rows[len(ranges):]:
        port = ln.partition("\t")[0]
        blocks[int(port) // BLOCK_PORTS if port else -1].append(ln)
    later = [gzip.compress("".join(ln + "\n" for ln in b).encode("utf-8"), 9, mtime=0) for b in blocks]
    first = "".join(ln + "\n" for ln in [f"{head} {MEMBERS_KEY}={','.join(str(len(m)) for m in later)}", *ranges])
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as raw:
        raw.write(gzip.compress(first.encode("utf-8"), 9, mtime=0))
        for m in later:
            raw.write(m)
    os.replace(tmp, path)


def gunzip(data: bytes) -> bytes:
    """What `gzip.decompress` gives (every member, in order), through zlib alone: the gzip
    module imports struct and more, a fifth of the interpreter's start-up."""
    out = []
    while data:
        d = zlib.decompressobj(31)      # 31: one gzip member (header and trailer checked)
        out.append(d.decompress(data))
        if not d.eof:
            raise EOFError("compressed file ended before the end-of-stream marker was reached")
        data = d.unused_data
    return b"".join(out)


def read_data(path: str = DATA_FILE) -> Registry:
    """The registry in the gzipped data file at `path`."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        d = zlib.decompressobj(31)
        first = d.decompress(data)
        if d.eof and d.unused_data and f" {MEMBERS_KEY}=".encode() in first[:first.find(b"\n")]:
            return Registry(first.decode("utf-8"), path, d.unused_data)     # member-indexed (write_data)
        return decode(gunzip(data).decode("utf-8"), path)
    except FileNotFoundError:
        raise SystemReadError(f"registry data file missing: {path} (run scripts/build_registry.py)")
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as e:
        raise SystemReadError(f"registry data file unreadable: {path}: {e}")


_default: Registry | None = None


def default() -> Registry:
    """The shipped registry, loaded once per process."""
    global _default
    if _default is None:
        _default = read_data()
    return _default


def check_proto(proto: str | None) -> str | None:
    """`proto` lower-cased if it is one IANA registers (tcp, udp, sctp, dccp); None stays None; BadInput else."""
    if proto is None:
        return None
    p = proto.strip().lower()
    if p not in PROTOCOLS:
        raise BadInput(f"unknown protocol {proto!r} (expected one of {', '.join(PROTOCOLS)})")
    return p


def services_for_port(port: int, proto: str | None = None) -> list[Service]:
    """Services the shipped registry assigns on `port` (for `proto`, when given)."""
    return default().services_for_port(port, check_proto(proto))


def ports_for_name(name: str, proto: str | None = None) -> list[int]:
    """Ports the shipped registry lists under service `name`."""
    return default().ports_for_name(name, check_proto(proto))

