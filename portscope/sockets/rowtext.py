"""Rows of a SocketTable as text, streamed in batches: JSON lines, CSV and aligned columns.

At 100k+ rows the output loop, not the kernel, is the cost, so no Python code runs
per row. Every piece that repeats is rendered once (a (proto, family, state,
address) prefix, each distinct address, the ephemeral/method suffix) and looked up
per row by map() in C. Then `BATCH` rows at a time are one %-format: the row's
template repeated, filled from one flat tuple of the batch's values. Numbers
(ports, uid, inode) go straight from the columns into the text through %d, never
as a str object of their own. The whole document never sits in memory. The bytes
are exactly those of json.dumps(table.row(i)) and csv.writer
(tests/test_rowtext_model.py).
"""
from __future__ import annotations

import json
from array import array
from itertools import islice, repeat
from operator import add
from typing import Iterable, Iterator, Sequence

from .cgroups import label
from .table import EPH_NAMES, METHOD_NAMES, PROTO_NAMES, STATE_NAMES, SocketTable, format_addr

BATCH = 8192          # rows per chunk: large enough to amortise a write, small next to the table
PORT_LIST_ROWS = 32768  # from this many rows, text rows make every port's text at once (~5 ms), not per row


class _Texts(dict):
    """key (a raw address, a (proto, family, state)) -> its text, rendered on first use:
    few distinct keys among many rows."""

    def __init__(self, render) -> None:
        super().__init__()
        self.render = render

    def __missing__(self, raw: bytes) -> str:
        text = self[raw] = self.render(raw)
        return text


def _columns(table: SocketTable, idx: Sequence[int] | range, names: Iterable[str]) -> list:
    """The named columns restricted to `idx` (the columns themselves when idx is every row)."""
    cols = [getattr(table, n) for n in names]
    if isinstance(idx, range) and idx == range(len(table)):
        return cols
    return [[c[i] for i in idx] for c in cols]


def _fill(row: str, sep: str, values: Iterable[Iterable], n_rows: int) -> Iterator[str]:
    """`n_rows` rows, `BATCH` at a time: `row` (a %-template) filled with one value from each
    of `values` (columns, or iterators over them), rows joined by `sep` (none after the
    last of a batch). A batch's values are laid out by extended-slice assignment, in C."""
    cols = [v if isinstance(v, (list, array, bytes)) else iter(v) for v in values]
    k = len(cols)
    full = sep.join([row] * BATCH)
    for start in range(0, n_rows, BATCH):
        m = min(BATCH, n_rows - start)
        args: list = [None] * (k * m)
        for j, c in enumerate(cols):
            args[j::k] = c[start:start + m] if not isinstance(c, Iterator) else list(islice(c, m))
        yield (full if m == BATCH else sep.join([row] * m)) % tuple(args)


def _zeros(n: int) -> Iterator[int]:
    return repeat(0, n)


def _codes(table: SocketTable, idx: Sequence[int] | range) -> Iterable[int]:
    """Per row ephemeral | method << 2 (0 for an unclassified table), OR-ed as big integers."""
    n = len(table)
    if len(table.ephemeral) != n or len(table.method) != n or not n:
        return _zeros(len(idx))
    both = (int.from_bytes(table.ephemeral, "big") | int.from_bytes(table.method, "big") << 2).to_bytes(n, "big")
    if isinstance(idx, range) and idx == range(n):
        return both
    return [both[i] for i in idx]


def json_document(table: SocketTable, idx: Sequence[int] | range, head: dict) -> Iterator[str]:
    """The `conns --json` document in chunks: `head`'s keys, then "sockets", one row per line."""
    dumps = json.dumps
    yield dumps(head)[:-1] + ', "sockets": [\n'
    n = len(idx)
    lead = _Texts(lambda k: f'{{"proto": {dumps(PROTO_NAMES.get(k[0], str(k[0])))}, "family": {k[1]}, '
                            f'"state": {dumps(STATE_NAMES.get(k[2], str(k[2])))}, '
                            f'"local_addr": {dumps(format_addr(k[3]))}, "local_port": ')
    raddr = _Texts(lambda raw: dumps(format_addr(raw)))
    suffix = [f', "ephemeral": {dumps(EPH_NAMES.get(c & 3))}, "ephemeral_method": {dumps(METHOD_NAMES.get(c >> 2))}'
              for c in range(16)]
    proto, fam, state, la, lp, ra, rp, uid, ino = _columns(
        table, idx, ("proto", "family", "state", "local_addr", "local_port", "remote_addr", "remote_port",
                     "uid", "inode"))
    row = '%s%d, "remote_addr": %s, "remote_port": %d, "uid": %d, "inode": %d%s'
    values: list[Iterable] = [map(lead.__getitem__, zip(proto, fam, state, la)), lp, map(raddr.__getitem__, ra),
                              rp, uid, ino, map(suffix.__getitem__, _codes(table, idx))]
    slow = set(table.extra_local) | set(table.extra_remote)
    if slow:                              # multi-homed SCTP: every address, after the ephemeral keys
        extra = [""] * n
        for pos, i in enumerate(idx):
            if i in slow:
                extra[pos] = "".join(f', "{key}": {dumps([format_addr(a) for a in more[i]])}'
                                     for key, more in (("local_addrs", table.extra_local),
                                                       ("remote_addrs", table.extra_remote)) if i in more)
        row += "%s"
        values.append(extra)
    if table.pid is not None:
        cmd_text = _Texts(dumps)
        pids = _columns(table, idx, ("pid",))[0]
        cmds = _columns(table, idx, ("command",))[0] if table.command is not None else [None] * n
        row += ', "pid": %s, "command": %s'
        values += [(p if p >= 0 else "null" for p in pids), map(cmd_text.__getitem__, cmds)]
    if table.cgroup is not None:          # conns --process: the container / pod of each socket
        row += ', "cgroup": %s'
        values.append(map(dumps, _columns(table, idx, ("cgroup",))[0]))
    sep = ""
    for chunk in _fill(row + "}", ",\n", values, n):
        yield sep + chunk
        sep = ",\n"
    yield "\n]}\n"


CSV_KEYS = ["proto", "family", "state", "local_addr", "local_port", "remote_addr", "remote_port",
            "ephemeral", "ephemeral_method", "uid", "inode"]


def csv_rows(table: SocketTable, idx: Sequence[int] | range) -> Iterator[str]:
    """`conns --csv` without --process, in chunks: the header line, then one line per row.

    No field can hold a comma, quote or newline (names, addresses and numbers), so
    csv.writer's minimal quoting never applies and the lines are joined directly.
    """
    yield ",".join(CSV_KEYS) + "\n"
    lead = _Texts(lambda k: f"{PROTO_NAMES.get(k[0], str(k[0]))},{k[1]},{STATE_NAMES.get(k[2], str(k[2]))},"
                            f"{format_addr(k[3])},")
    raddr = _Texts(format_addr)
    tail = [f"{EPH_NAMES.get(c & 3) or ''},{METHOD_NAMES.get(c >> 2) or ''}" for c in range(16)]
    proto, fam, state, la, lp, ra, rp, uid, ino = _columns(
        table, idx, ("proto", "family", "state", "local_addr", "local_port", "remote_addr", "remote_port",
                     "uid", "inode"))
    values = [map(lead.__getitem__, zip(proto, fam, state, la)), lp, map(raddr.__getitem__, ra), rp,
              map(tail.__getitem__, _codes(table, idx)), uid, ino]
    for chunk in _fill("%s%d,%s,%d,%s,%d,%d", "\n", values, len(idx)):
        yield chunk + "\n"


def text_rows(table: SocketTable, idx: Sequence[int] | range, process: bool) -> Iterator[str]:
    """`conns` aligned columns in chunks. Column widths come first, from C-level passes
    (lengths looked up per distinct address and per port number), so no row is held.

    A row is the join of pieces looked up per row in C: the padded protocol, state and
    local address with its ':' (one text per distinct triple), the local port with the
    spaces that pad its column, the remote address, the remote port (0 prints as '*')
    with its pad, the ephemeral side. When every address of a column has one text
    length (the common case) a port's pad follows from its digits alone; otherwise
    from each row's text length, kept from the width pass.
    """
    n_rows = len(idx)
    proto, state, la, lp, ra, rp = _columns(
        table, idx, ("proto", "state", "local_addr", "local_port", "remote_addr", "remote_port"))
    texts = _Texts(lambda raw: (format_addr(raw) if len(raw) == 4 else f"[{format_addr(raw)}]") + ":")
    length = _Texts(lambda raw: len(texts[raw]))          # the address and its ':'
    n = len(table)
    names = [PROTO_NAMES.get(k, "?") for k in range(256)]
    states = [STATE_NAMES.get(k, "?") for k in range(256)]
    eph_names = [EPH_NAMES.get(k) or "-" for k in range(4)]
    eph = _columns(table, idx, ("ephemeral",))[0] if len(table.ephemeral) == n else None
    head = ["PROTO", "STATE", "LOCAL", "REMOTE", "EPHEMERAL"]
    local, remote = _Column(la, lp, length), _Column(ra, rp, length)
    widths = [
        max([len(head[0])] + [len(names[k]) for k in set(proto)]),
        max([len(head[1])] + [len(states[k]) for k in set(state)]),
        max(len(head[2]), local.widest),
        max(len(head[3]), remote.widest),
        max([len(head[4])] + ([len(eph_names[k]) for k in set(eph)] if eph is not None else
                              [1] if n_rows else [])),
    ]
    more: list[Iterable[str]] = []
    if process:
        pids = _columns(table, idx, ("pid",))[0]
        cmds = _columns(table, idx, ("command",))[0]
        procs = [f"{p}/{c or '?'}" if p >= 0 else "-" for p, c in zip(pids, cmds)]
        head.append("PROCESS")
        widths.append(max(len(head[5]), max(map(len, procs), default=0)))
        if table.cgroup is not None:
            groups = [label(cg, s) for cg, s in zip(*_columns(table, idx, ("cgroup", "state")))]
            head.append("CGROUP")
            widths.append(max(len(head[-1]), max(map(len, groups), default=0)))
            wp = widths[5]
            more = [[f"  {pr:<{wp}}  {g}" for pr, g in zip(procs, groups)]]
        else:
            more = [map("  ".__add__, procs)]
    last = len(widths) - 1
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    yield fmt.format(*head) + "\n"
    if not n_rows:
        return
    w0, w1 = widths[:2]
    lead = _Texts(lambda k: f"{names[k[0]]:<{w0}}  {states[k[1]]:<{w1}}  {texts[k[2]]}")
    e_text = [f"{x:<{widths[4]}}" if last > 4 else x for x in eph_names]
    if eph is None:
        eph = _zeros(n_rows)
        e_text = [e_text[0]] * 4
    rows = map("".join, zip(
        map(lead.__getitem__, zip(proto, state, la)), *local.ports(widths[2], "0", la, length),
        map(texts.__getitem__, ra), *remote.ports(widths[3], "*", ra, length), map(e_text.__getitem__, eph), *more))
    for chunk in _batches(rows):
        yield "\n".join(chunk) + "\n"


class _Column:
    """The LOCAL or REMOTE column of text rows: its width, and per row the port and pad."""

    def __init__(self, addrs: Sequence[bytes], ports: Sequence[int], length: _Texts) -> None:
        self.ports_col = ports
        lengths = {length[a] for a in set(addrs)}
        self.uniform = lengths.pop() if len(lengths) == 1 else None
        self.lens: list[int] = []
        if not len(ports):
            self.widest = 0
        elif self.uniform is not None:        # the largest port has the most digits
            self.widest = self.uniform + len(str(max(ports)))
        else:                                 # each row's text length, kept for its pad
            self.lens = list(map(add, map(length.__getitem__, addrs), map(_DIGITS.__getitem__, ports)))
            self.widest = max(self.lens)

    def ports(self, width: int, zero: str, addrs: Sequence[bytes], length: _Texts) -> list[Iterable[str]]:
        """Pieces of each row after the address: the port ('zero' for 0) and the spaces to
        `width`, with the two that separate columns."""
        many = len(self.ports_col) >= PORT_LIST_ROWS
        if self.uniform is not None and many:
            return [map(_padded_ports(width - self.uniform, zero).__getitem__, self.ports_col)]
        if not self.lens:
            self.lens = list(map(add, map(length.__getitem__, addrs), map(_DIGITS.__getitem__, self.ports_col)))
        text = _port_texts(zero) if many else _Texts(lambda p: str(p) if p else zero)
        pads = [" " * (width - k) + "  " for k in range(width + 1)]
        return [map(text.__getitem__, self.ports_col), map(pads.__getitem__, self.lens)]


def _padded_ports(room: int, zero: str) -> list[str]:
    """Every port's text ('zero' for 0) left-aligned to `room` characters, then the two spaces
    between columns: made in C, one run of ports per digit count (the pad is the run's)."""
    got = _PADDED.get(room)
    if got is None:
        got = []
        for digits, (low, high) in enumerate(((0, 10), (10, 100), (100, 1000), (1000, 10000), (10000, 65536)), 1):
            got += map(add, map(str, range(low, high)), repeat(" " * (room - digits) + "  ", high - low))
        _PADDED.clear()
        _PADDED[room] = got
    if zero == "0":
        return got
    out = got.copy()
    out[0] = zero + out[0][1:]
    return out


_PADDED: dict[int, list[str]] = {}


def _port_texts(zero: str) -> list[str]:
    """Every port's text, 0 printed as `zero`."""
    global _PORTS
    if _PORTS is None:
        _PORTS = list(map(str, range(65536)))
    return _PORTS if zero == "0" else [zero] + _PORTS[1:]


_PORTS: list[str] | None = None


def _batches(rows: Iterator) -> Iterator[list]:
    while True:
        chunk = list(islice(rows, BATCH))
        if not chunk:
            return
        yield chunk


# digits of each port as text (remote port 0 prints as '*', one character too)
_DIGITS = [1] * 10 + [2] * 90 + [3] * 900 + [4] * 9000 + [5] * 55536
