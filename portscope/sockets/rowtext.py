"""Rows of a SocketTable as text, streamed in batches: JSON lines, CSV and aligned columns.

At 100k+ rows the output loop, not the kernel, was the cost: one dict and one
json.dumps per row, and every address formatted again for each row that repeats
it. Here every piece that repeats is rendered once (a (proto, family, state)
prefix, each distinct address, the ephemeral/method suffix) and a row is one
f-string over zipped columns. The text is produced `BATCH` rows at a time, so
the whole document never sits in memory. The bytes are exactly those of
json.dumps(table.row(i)) and csv.writer; rows the fast path does not cover
(SCTP rows with several addresses) go through table.row().
"""
from __future__ import annotations

import json
from itertools import islice, repeat
from operator import add
from typing import Iterable, Iterator, Sequence

from .cgroups import label
from .table import EPH_NAMES, METHOD_NAMES, PROTO_NAMES, STATE_NAMES, SocketTable, format_addr

BATCH = 8192          # rows per chunk: large enough to amortise a write, small next to the table


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


def _batches(rows: Iterator) -> Iterator[list]:
    while True:
        chunk = list(islice(rows, BATCH))
        if not chunk:
            return
        yield chunk


def json_document(table: SocketTable, idx: Sequence[int] | range, head: dict) -> Iterator[str]:
    """The `conns --json` document in chunks: `head`'s keys, then "sockets", one row per line."""
    dumps = json.dumps
    yield dumps(head)[:-1] + ', "sockets": [\n'
    n = len(table)
    classified = len(table.ephemeral) == n and len(table.method) == n
    slow = set(table.extra_local) | set(table.extra_remote)
    pre = _Texts(lambda k: f'{{"proto": {dumps(PROTO_NAMES.get(k[0], str(k[0])))}, "family": {k[1]}, '
                           f'"state": {dumps(STATE_NAMES.get(k[2], str(k[2])))}, "local_addr": ')
    addr = _Texts(lambda raw: dumps(format_addr(raw)))
    suffix = [[f', "ephemeral": {dumps(EPH_NAMES.get(e))}, "ephemeral_method": {dumps(METHOD_NAMES.get(m))}'
               for m in range(4)] for e in range(4)]
    if classified:
        eph, meth = _columns(table, idx, ("ephemeral", "method"))
    else:
        eph, meth = _zeros(len(idx)), _zeros(len(idx))
    owners = ""
    pid_cmd: Iterable = ()
    if table.pid is not None:
        cmd_text = _Texts(dumps)
        pids = _columns(table, idx, ("pid",))[0]
        cmds = _columns(table, idx, ("command",))[0] if table.command is not None else [None] * len(idx)
        pid_cmd = (f', "pid": {p if p >= 0 else "null"}, "command": {cmd_text[c]}' for p, c in zip(pids, cmds))
        owners = "x"
    proto, fam, state, la, lp, ra, rp, uid, ino = _columns(
        table, idx, ("proto", "family", "state", "local_addr", "local_port", "remote_addr", "remote_port",
                     "uid", "inode"))
    rows: Iterator[str] = (
        f'{pre[p, f, s]}{addr[a]}, "local_port": {lpt}, "remote_addr": {addr[b]}, "remote_port": {rpt}, '
        f'"uid": {u}, "inode": {i}{suffix[e][m]}'
        for p, f, s, a, lpt, b, rpt, u, i, e, m in zip(proto, fam, state, la, lp, ra, rp, uid, ino, eph, meth))
    if owners:
        rows = map(add, rows, pid_cmd)
    if table.cgroup is not None:          # conns --process: the container / pod of each socket
        cgs = _columns(table, idx, ("cgroup",))[0]
        rows = map(add, rows, (f', "cgroup": {dumps(cg)}' for cg in cgs))
    rows = (r + "}" for r in rows) if not slow else _patch(rows, table, idx, slow)
    sep = ""
    for chunk in _batches(rows):
        yield sep + ",\n".join(chunk)
        sep = ",\n"
    yield "\n]}\n"


def _zeros(n: int) -> Iterator[int]:
    return repeat(0, n)


def _patch(rows: Iterator[str], table: SocketTable, idx: Sequence[int] | range, slow: set) -> Iterator[str]:
    """Rows with extra addresses (multi-homed SCTP) from table.row(); the rest as rendered."""
    dumps = json.dumps
    for i, r in zip(idx, rows):
        yield dumps(table.row(i)) if i in slow else r + "}"


CSV_KEYS = ["proto", "family", "state", "local_addr", "local_port", "remote_addr", "remote_port",
            "ephemeral", "ephemeral_method", "uid", "inode"]


def csv_rows(table: SocketTable, idx: Sequence[int] | range) -> Iterator[str]:
    """`conns --csv` without --process, in chunks: the header line, then one line per row.

    No field can hold a comma, quote or newline (names, addresses and numbers), so
    csv.writer's minimal quoting never applies and the lines are joined directly.
    """
    yield ",".join(CSV_KEYS) + "\n"
    n = len(table)
    head = _Texts(lambda k: f"{PROTO_NAMES.get(k[0], str(k[0]))},{k[1]},{STATE_NAMES.get(k[2], str(k[2]))},")
    addr = _Texts(format_addr)
    tail = [[f",{EPH_NAMES.get(e) or ''},{METHOD_NAMES.get(m) or ''}," for m in range(4)] for e in range(4)]
    if len(table.ephemeral) == n and len(table.method) == n:
        eph, meth = _columns(table, idx, ("ephemeral", "method"))
    else:
        eph, meth = _zeros(len(idx)), _zeros(len(idx))
    proto, fam, state, la, lp, ra, rp, uid, ino = _columns(
        table, idx, ("proto", "family", "state", "local_addr", "local_port", "remote_addr", "remote_port",
                     "uid", "inode"))
    rows = (f"{head[p, f, s]}{addr[a]},{lpt},{addr[b]},{rpt}{tail[e][m]}{u},{i}\n"
            for p, f, s, a, lpt, b, rpt, u, i, e, m in zip(proto, fam, state, la, lp, ra, rp, uid, ino, eph, meth))
    for chunk in _batches(rows):
        yield "".join(chunk)


def text_rows(table: SocketTable, idx: Sequence[int] | range, process: bool) -> Iterator[str]:
    """`conns` aligned columns in chunks. Column widths come first, from C-level passes
    (lengths looked up per distinct address and per port number), so no row is held."""
    n_rows = len(idx)
    proto, state, la, lp, ra, rp = _columns(
        table, idx, ("proto", "state", "local_addr", "local_port", "remote_addr", "remote_port"))
    texts = _Texts(lambda raw: format_addr(raw) if len(raw) == 4 else f"[{format_addr(raw)}]")
    length = _Texts(lambda raw: len(texts[raw]) + 1)          # the address and its ':'
    digits = [1] * 10 + [2] * 90 + [3] * 900 + [4] * 9000 + [5] * 55536   # remote 0 prints as '*'
    n = len(table)
    names = [PROTO_NAMES.get(k, "?") for k in range(256)]
    states = [STATE_NAMES.get(k, "?") for k in range(256)]
    eph_names = [EPH_NAMES.get(k) or "-" for k in range(4)]
    eph = _columns(table, idx, ("ephemeral",))[0] if len(table.ephemeral) == n else None
    head = ["PROTO", "STATE", "LOCAL", "REMOTE", "EPHEMERAL"]
    widths = [
        max([len(head[0])] + [len(names[k]) for k in set(proto)]),
        max([len(head[1])] + [len(states[k]) for k in set(state)]),
        max(len(head[2]), max(map(add, map(length.__getitem__, la), map(digits.__getitem__, lp)), default=0)),
        max(len(head[3]), max(map(add, map(length.__getitem__, ra), map(digits.__getitem__, rp)), default=0)),
        max([len(head[4])] + ([len(eph_names[k]) for k in set(eph)] if eph is not None else
                              [1] if n_rows else [])),
    ]
    procs: list[str] | None = None
    if process:
        pids = _columns(table, idx, ("pid",))[0]
        cmds = _columns(table, idx, ("command",))[0]
        procs = [f"{p}/{c or '?'}" if p >= 0 else "-" for p, c in zip(pids, cmds)]
        head.append("PROCESS")
        widths.append(max(len(head[5]), max(map(len, procs), default=0)))
    groups: list[str] | None = None
    if process and table.cgroup is not None:
        groups = [label(cg, s) for cg, s in zip(*_columns(table, idx, ("cgroup", "state")))]
        head.append("CGROUP")
        widths.append(max(len(head[-1]), max(map(len, groups), default=0)))
    last = len(widths) - 1
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    yield fmt.format(*head) + "\n"
    if not n_rows:
        return
    # the first two columns are padded once per name, not once per row
    pname = [f"{x:<{widths[0]}}  " for x in names]
    sname = [f"{x:<{widths[1]}}  " for x in states]
    e_text = [f"{x:<{widths[4]}}" if last > 4 else x for x in eph_names]
    wl, wr = widths[2], widths[3]
    star = "*"
    if eph is None:
        eph = _zeros(n_rows)
        e_text = [("-" if last <= 4 else f"{'-':<{widths[4]}}")] * 4
    rows: Iterator[str] = (
        f'{pname[p]}{sname[s]}{f"{texts[a]}:{x}":<{wl}}  {f"{texts[b]}:{y or star}":<{wr}}  {e_text[e]}'
        for p, s, a, x, b, y, e in zip(proto, state, la, lp, ra, rp, eph))
    if procs is not None:
        rows = (f"{r}  {pr}" for r, pr in zip(rows, procs))
        if groups is not None:
            wp = widths[5]
            rows = (f"{r:<{len(r) - len(pr) + wp}}  {g}" for r, pr, g in zip(rows, procs, groups))
    for chunk in _batches(rows):
        yield "\n".join(chunk) + "\n"
