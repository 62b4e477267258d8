"""sockets/rowtext.py: the streamed row output is byte-for-byte what the per-row
reference (json.dumps(table.row(i)), csv.writer over table.row(i)) produces."""
from __future__ import annotations

import csv
import io
import json
import socket
from array import array

import pytest

from portscope.sockets import rowtext
from portscope.sockets.table import SocketTable


def _v6(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, text)


def _v4(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET, text)


def _table(*, classified: bool = True, owners: bool = False, sctp: bool = False) -> SocketTable:
    t = SocketTable(backend="netlink")
    rows = [
        (6, 4, 1, _v4("192.0.2.1"), 40000, _v4("198.51.100.7"), 443, 1000, 12345),
        (6, 4, 6, _v4("192.0.2.1"), 40001, _v4("198.51.100.7"), 443, 0, 0),
        (6, 6, 10, _v6("::"), 8080, _v6("::"), 0, 0, 99),
        (17, 6, 7, _v6("::ffff:192.0.2.9"), 5353, _v6("2001:db8::1"), 0, 65534, 2**40),
        (136, 4, 1, _v4("203.0.113.5"), 1, _v4("203.0.113.6"), 65535, 7, 8),
        (99, 4, 42, _v4("192.0.2.1"), 65535, _v4("192.0.2.2"), 9, 1, 1),   # unknown proto and state
        (132, 4, 1, _v4("192.0.2.3"), 3868, _v4("192.0.2.4"), 3868, 0, 5),
    ]
    for r in rows * 3:
        t.append(*r)
    if classified:
        t.ephemeral = array("B", [i % 3 for i in range(len(t))])
        t.method = array("B", [(i * 5) % 3 for i in range(len(t))])
    if owners:
        t.pid = array("q", [(-1 if i % 4 == 0 else 100 + i) for i in range(len(t))])
        t.command = [None if i % 5 == 0 else f'cmd "{i}", é\n' for i in range(len(t))]
    if sctp:
        t.extra_local[6] = [_v4("192.0.2.3"), _v4("192.0.2.33")]
        t.extra_remote[13] = [_v4("192.0.2.4")]
    return t


def _ref_json(t: SocketTable, idx, head: dict) -> str:
    return (json.dumps(head)[:-1] + ', "sockets": [\n' + ",\n".join(json.dumps(t.row(i)) for i in idx)
            + "\n]}\n")


def _ref_csv(t: SocketTable, idx) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(rowtext.CSV_KEYS)
    for i in idx:
        r = t.row(i)
        w.writerow(["" if r.get(k) is None else r.get(k) for k in rowtext.CSV_KEYS])
    return buf.getvalue()


KINDS = [dict(), dict(classified=False), dict(owners=True), dict(sctp=True), dict(owners=True, sctp=True)]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: ",".join(k) or "plain")
@pytest.mark.parametrize("pick", ["all", "some", "none", "reversed"])
def test_json_and_csv_match_the_per_row_reference(kind, pick, monkeypatch):
    monkeypatch.setattr(rowtext, "BATCH", 4)       # several batches, and a partial last one
    t = _table(**kind)
    idx = {"all": range(len(t)), "some": [0, 2, 3, 6, 13, 20], "none": [],
           "reversed": list(reversed(range(len(t))))}[pick]
    head = {"backend": "netlink", "netns": None, "warnings": ["w \"1\""]}
    assert "".join(rowtext.json_document(t, idx, head)) == _ref_json(t, idx, head)
    json.loads("".join(rowtext.json_document(t, idx, head)))
    assert "".join(rowtext.csv_rows(t, idx)) == _ref_csv(t, idx)


def test_text_rows_align_every_column_to_its_widest_value(monkeypatch):
    monkeypatch.setattr(rowtext, "BATCH", 3)
    t = _table(owners=True)
    t.command = [None if i % 5 == 0 else f"worker {i}" for i in range(len(t))]
    lines = "".join(rowtext.text_rows(t, range(len(t)), True)).splitlines()
    assert len(lines) == len(t) + 1
    head = lines[0].split()
    assert head == ["PROTO", "STATE", "LOCAL", "REMOTE", "EPHEMERAL", "PROCESS"]
    starts = [lines[0].index(h) for h in head]
    for i, line in enumerate(lines[1:]):
        # every column starts where its header starts (the command may hold spaces)
        cells = [line[a:b].rstrip() for a, b in zip(starts, starts[1:] + [len(line)])]
        assert all(c and not c.startswith(" ") for c in cells[:5]), line
        assert cells[2].rsplit(":", 1)[1] == str(t.local_port[i])
        assert cells[3].rsplit(":", 1)[1] == (str(t.remote_port[i]) if t.remote_port[i] else "*")
        assert ("[" in cells[2]) == (t.family[i] == 6)
    # the widest LOCAL value ends two spaces before REMOTE
    assert max(len(line[starts[2]:starts[3]].rstrip()) for line in lines[1:]) == starts[3] - starts[2] - 2


def _ref_text(t: SocketTable, idx, process: bool) -> str:
    """Aligned columns the plain way: every cell formatted, then every column padded to its widest."""
    from portscope.sockets.cgroups import label
    from portscope.sockets.table import EPH_NAMES, PROTO_NAMES, STATE_NAMES, format_addr

    def where(raw, port, zero):
        a = format_addr(raw) if len(raw) == 4 else f"[{format_addr(raw)}]"
        return f"{a}:{port or zero}"
    head = ["PROTO", "STATE", "LOCAL", "REMOTE", "EPHEMERAL"] + (["PROCESS"] if process else []) + \
        (["CGROUP"] if process and t.cgroup is not None else [])
    cells = []
    for i in idx:
        c = [PROTO_NAMES.get(t.proto[i], "?"), STATE_NAMES.get(t.state[i], "?"),
             where(t.local_addr[i], t.local_port[i], "0"), where(t.remote_addr[i], t.remote_port[i], "*"),
             (EPH_NAMES.get(t.ephemeral[i]) if len(t.ephemeral) == len(t) else None) or "-"]
        if process:
            c.append(f"{t.pid[i]}/{t.command[i] or '?'}" if t.pid[i] >= 0 else "-")
            if t.cgroup is not None:
                c.append(label(t.cgroup[i], t.state[i]))
        cells.append(c)
    widths = [max(len(r[k]) for r in [head] + cells) for k in range(len(head))]
    return "".join("  ".join(v.ljust(w) for v, w in zip(r[:-1], widths)) + "  " + r[-1] + "\n"
                   for r in [head] + cells)


@pytest.mark.parametrize("kind", KINDS + [dict(owners=True, cgroup=True)], ids=lambda k: ",".join(k) or "plain")
@pytest.mark.parametrize("pick", ["all", "some", "none", "reversed"])
@pytest.mark.parametrize("many", [False, True], ids=["few", "many"])
def test_text_rows_match_the_plain_reference(kind, pick, many, monkeypatch):
    """Both ways of padding a port (by its digits when a column's addresses share one
    length, else by each row's length) give the plain reference's bytes."""
    monkeypatch.setattr(rowtext, "BATCH", 4)
    monkeypatch.setattr(rowtext, "PORT_LIST_ROWS", 0 if many else 10**9)
    kind = dict(kind)
    cgroup = kind.pop("cgroup", False)
    t = _table(**kind)
    if t.command is not None:
        t.command = [None if i % 5 == 0 else f"worker {i}" for i in range(len(t))]
    if cgroup:
        cg = [None, {"container": None, "pod": None, "path": "/system.slice/x", "id": 5},
              {"container": {"runtime": "docker", "id": "0123456789abcdef"}, "pod": {"uid": "u-1"}, "path": "/",
               "id": 7}]
        t.cgroup = [cg[i % 3] for i in range(len(t))]
    idx = {"all": range(len(t)), "some": [0, 2, 3, 6, 13, 20], "none": [],
           "reversed": list(reversed(range(len(t))))}[pick]
    for process in ([False, True] if t.pid is not None else [False]):
        assert "".join(rowtext.text_rows(t, idx, process)) == _ref_text(t, idx, process)
    # one address length per column: the pads come from the ports' digits alone
    same = [i for i in range(len(t)) if t.family[i] == 4 and t.proto[i] == 6]
    assert "".join(rowtext.text_rows(t, same, False)) == _ref_text(t, same, False)
