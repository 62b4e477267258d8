"""docs/json.md is the reference of every command's `--json` output; this file holds it to the
truth in both directions.

The key tables and the samples of docs/json.md are parsed (see "How to read the key tables"
there). Each table names a command; the real CLI runs it (in-process, through the `cli`
fixture) against a private namespace built here, and:

* every documented key is present (unless optional / conditional) with the documented type,
  and every documented key shows up at least once across the runs (so the check is never
  vacuous because a list happened to be empty);
* every key of the real output is documented (objects marked `open` or documented without
  children excepted);
* conditional keys (`when ...` / `unless ...`) are absent when their condition does not hold;
* the keys the doc marks as contract (✓) are exactly the ones the issues name (CONTRACT below,
  transcribed from `issues show 2..7`), so a contract key cannot be dropped from the doc
  silently;
* every sample block in the doc uses only documented keys with the documented types.

Nothing here writes outside a private namespace: the shared scene and the `netns` fixture
are private network namespaces; `lab exhaust` makes (and removes) its own; `lab clean` runs
in a private mount namespace whose /run/netns is an empty tmpfs, so it can only see the
namespace made for it there.
"""
from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from conftest import HAVE_IP, NEED_ROOT, PORTSCOPE, ROOT, private_netns

DOC = Path(__file__).resolve().parents[1] / "docs" / "json.md"

# --------------------------------------------------------------------------------------------
# The contract keys the issues name (issue number in the comment). The doc's ✓ marks must be
# exactly these; tables not listed have no contract key.
CONTRACT: dict[str, set[str]] = {
    # issue 2: range, port N, port NAME ("the matching ports in the same shape"), suggest
    "range": {"ephemeral", "ephemeral.low", "ephemeral.high", "ephemeral.size", "reserved",
              "unprivileged_port_start", "ranges"},
    "port": {"port", "class", "services", "services[].name", "services[].proto",
             "services[].description", "privileged", "in_ephemeral_range", "reserved", "in_use"},
    "port-name": {"ports", "ports[]"},
    "suggest": {"ports", "ports[].port", "ports[].reasons"},
    # issue 3
    "conns": {"backend", "sockets"} | {f"sockets[].{k}" for k in (
        "proto", "family", "state", "local_addr", "local_port", "remote_addr", "remote_port",
        "ephemeral", "pid", "command")},
    # issue 4
    "pressure": {"global", "global.in_use", "global.capacity", "global.utilization",
                 "destinations", "findings"}
                | {f"destinations[].{k}" for k in (
                    "proto", "src", "dst", "dport", "in_use", "time_wait", "capacity", "utilization",
                    "rate_per_s", "sustainable_rate_per_s", "seconds_to_exhaustion")}
                | {f"findings[].{k}" for k in ("id", "severity", "message", "remedy")},
    # issue 5 (the metric contract; JSON spells names as /metrics does, counters with `_total`)
    "exporter": {"portscope_ephemeral_range_ports", "portscope_reserved_ports",
                 "portscope_sockets", "portscope_sockets[].labels.proto",
                 "portscope_sockets[].labels.state",
                 "portscope_ephemeral_ports_in_use", "portscope_ephemeral_ports_in_use[].labels.proto",
                 "portscope_ephemeral_ports_in_use[].labels.scope",
                 "portscope_listeners_in_ephemeral_range", "portscope_scrape_duration_seconds",
                 "portscope_scrape_errors_total"}
                | {f"{m}{suffix}" for m in ("portscope_destination_ports_in_use",
                                            "portscope_destination_ports_capacity",
                                            "portscope_destination_utilization_ratio")
                   for suffix in ("", "[].labels.proto", "[].labels.src", "[].labels.dst",
                                  "[].labels.dport")}
                # issue 13: conntrack and SNAT series
                | {"portscope_conntrack_entries", "portscope_conntrack_max",
                   "portscope_conntrack_insert_failed_total", "portscope_conntrack_drop_total",
                   "portscope_conntrack_early_drop_total", "portscope_nat_ports_in_ephemeral_range"}
                | {f"{m}{suffix}" for m in ("portscope_snat_destination_ports_in_use",
                                            "portscope_snat_destination_ports_capacity",
                                            "portscope_snat_destination_utilization_ratio")
                   for suffix in ("", "[].labels.proto", "[].labels.nat_ip", "[].labels.dst",
                                  "[].labels.dport")}
                | {"portscope_connect_failures_total", "portscope_bind_failures_total",   # issue 14
                   "portscope_tcp_timewait_recycled_total", "portscope_tcp_timewait_overflow_total",
                   "portscope_tcp_timewait_sockets", "portscope_tcp_max_tw_buckets"},
    # issue 6
    "simulate": {"connects", "failures", "first_failure_index", "ports_used_max", "search_steps",
                 "search_steps.mean", "search_steps.p99", "search_steps.max", "settings",
                 "timeseries"},
    # issue 7
    "quiz": {"score", "total", "questions", "questions[].id", "questions[].topic",
             "questions[].correct"}
            | {"questions[].source"},   # issue 18: every question's source
    "quiz-list": {"questions"} | {"questions[].source"},
    # issue 15
    "namespaces": {"namespaces"} | {f"namespaces[].{k}" for k in (
        "inode", "names", "pids", "process_count", "commands", "container", "container.runtime",
        "container.id", "pod", "pod.uid", "pod.qos", "current")},
    "egress": {"egress", "budget", "budget.per_destination", "budget.nat_addresses", "budget.source",
               "findings"}
              | {f"egress[].{k}" for k in ("proto", "dst", "dport", "flows", "budget", "utilization",
                                           "top_sources")}
              | {f"egress[].top_sources[].{k}" for k in ("netns", "container", "pod", "flows")},
    # issue 13
    "nat": {"conntrack", "rules", "snat", "nat_ports", "findings"}
           | {f"conntrack.{k}" for k in ("available", "entries", "max", "buckets", "utilization", "stats")}
           | {f"conntrack.stats.{k}" for k in ("found", "invalid", "insert", "insert_failed", "drop", "early_drop",
                                               "error", "search_restart", "clash_resolve", "chain_toolong")}
           | {f"rules[].{k}" for k in ("table", "chain", "kind", "proto", "ports", "random", "random_fully",
                                       "source")}
           | {f"snat[].{k}" for k in ("proto", "nat_ip", "dst", "dport", "in_use", "time_wait", "capacity",
                                      "utilization")}
           | {f"nat_ports[].{k}" for k in ("proto", "port", "chain", "in_ephemeral_range", "reserved")}
           | {f"findings[].{k}" for k in ("id", "severity", "message", "remedy")},
    # issue 14
    "watch": {"backend", "seconds", "failures", "counters", "findings"}
             | {f"failures[].{k}" for k in ("syscall", "errno", "count", "pid", "comm", "cgroup", "netns",
                                            "dst", "dport")}
             | {f"counters.{k}" for k in ("TWRecycled", "TCPTimeWaitOverflow", "TWKilled", "tw",
                                          "tcp_max_tw_buckets")},
    "report": {"observed"},
}

# --------------------------------------------------------------------------------------------
# Parsing docs/json.md

TYPE_NAMES = {"string", "int", "number", "fraction", "bool", "null", "object", "list",
              "list[int]", "list[string]"}
HEADER = ["key", "type", "contract", "meaning"]


@dataclass(frozen=True)
class Spec:
    path: tuple[str, ...]
    types: tuple[str, ...]
    optional: bool = False
    open: bool = False
    when: tuple[str, ...] | None = None
    unless: tuple[str, ...] | None = None
    like: tuple[str, tuple[str, ...]] | None = None
    contract: bool = False


@dataclass
class Table:
    id: str
    like: str | None
    rows: dict[tuple[str, ...], Spec] = field(default_factory=dict)


def split_path(text: str) -> tuple[str, ...]:
    out: list[str] = []
    for seg in text.split("."):
        m = re.fullmatch(r"([A-Za-z0-9_*]+)((?:\[\])*)", seg)
        assert m, f"bad key path segment {seg!r} in {text!r}"
        out.append(m.group(1))
        out += ["[]"] * (len(m.group(2)) // 2)
    return tuple(out)


def show(path: tuple[str, ...]) -> str:
    return ".".join(path).replace(".[]", "[]") if path else "(document)"


def parse_type(cell: str, path: tuple[str, ...], contract: bool) -> Spec:
    parts = [p.strip() for p in cell.split(",")]
    alts = tuple(a.strip() for a in parts[0].split("|"))
    for a in alts:
        assert a in TYPE_NAMES or re.fullmatch(r'"[^"]*"|-?\d+', a), f"{show(path)}: unknown type {a!r}"
    spec = Spec(path=path, types=alts, contract=contract)
    for q in parts[1:]:
        words = q.split()
        if q == "optional":
            spec = replace(spec, optional=True)
        elif q == "open":
            spec = replace(spec, open=True)
        elif words[0] in ("when", "unless") and len(words) > 1:
            spec = replace(spec, **{words[0]: tuple(words[1:])})
        elif words[0] == "like" and len(words) == 2:
            table, _, sub = words[1].partition(":")
            spec = replace(spec, like=(table, split_path(sub) if sub else ()))
        else:
            raise AssertionError(f"{show(path)}: unknown qualifier {q!r}")
    return spec


def parse_doc(text: str):
    """-> (tables by id, samples as [(table id, line number, parsed JSON)])."""
    lines = text.splitlines()
    tables: dict[str, Table] = {}
    samples: list[tuple[str, int, object]] = []
    i = 0
    while i < len(lines):
        m = re.fullmatch(r"<!--\s*(keys|sample):\s*(\S+)((?:\s+\w+=\S+)*)\s*-->", lines[i].strip())
        i += 1
        if not m:
            continue
        kind, tid = m.group(1), m.group(2)
        attrs = dict(a.split("=", 1) for a in m.group(3).split())
        while i < len(lines) and not lines[i].strip():
            i += 1
        if kind == "sample":
            assert lines[i].strip() == "```json", f"line {i + 1}: a sample marker must precede a ```json block"
            start = i + 1
            i += 1
            while lines[i].strip() != "```":
                i += 1
            samples.append((tid, start, loads_strict("\n".join(lines[start:i]))))
            continue
        assert tid not in tables, f"table {tid} defined twice"
        table = Table(tid, attrs.get("like"))
        cells = _cells(lines[i])
        assert cells == HEADER, f"line {i + 1}: table {tid} must have columns {HEADER}, got {cells}"
        i += 2                                            # header and |---| line
        while i < len(lines) and lines[i].startswith("|"):
            key, typ, contract, _meaning = _cells(lines[i])
            k = re.fullmatch(r"`([^`]+)`", key)
            assert k, f"line {i + 1}: the key cell must be one `path`, got {key!r}"
            path = split_path(k.group(1))
            assert path not in table.rows, f"table {tid}: {show(path)} documented twice"
            table.rows[path] = parse_type(typ, path, "✓" in contract)
            i += 1
        tables[tid] = table
    return tables, samples


def _cells(line: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def expand(tables: dict[str, Table]) -> dict[str, dict[tuple[str, ...], Spec]]:
    """Resolve `like`: copy the referenced rows (without their contract mark) under the path;
    rows written out in the table win."""
    done: dict[str, dict[tuple[str, ...], Spec]] = {}

    def rows_of(tid: str, stack=()) -> dict[tuple[str, ...], Spec]:
        assert tid in tables, f"`like {tid}` names no table"
        assert tid not in stack, f"`like` cycle: {stack + (tid,)}"
        if tid in done:
            return done[tid]
        t = tables[tid]
        own = dict(t.rows)
        copies: dict[tuple[str, ...], Spec] = {}

        def copy(src_table: str, src_path: tuple[str, ...], dest: tuple[str, ...]):
            # the same table: its own rows (and what was copied so far), e.g. `after` like `before`
            src = {**copies, **own} if src_table == tid else rows_of(src_table, stack + (tid,))
            if src_path:
                assert src_path in src, f"{tid}: `like {src_table}:{show(src_path)}` names no row"
            for p, s in src.items():
                if p[:len(src_path)] == src_path and len(p) > len(src_path):
                    q = dest + p[len(src_path):]
                    copies.setdefault(q, replace(s, path=q, contract=False))

        if t.like:
            copy(t.like, (), ())
        for p, s in t.rows.items():
            if s.like:
                copy(s.like[0], s.like[1], p)
        done[tid] = {**copies, **own}
        return done[tid]

    for tid in tables:
        rows_of(tid)
    return done


def loads_strict(text: str):
    def no_constant(name):
        raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=no_constant)


# --------------------------------------------------------------------------------------------
# Checking a document against a table


def _match(pattern: tuple[str, ...], concrete: tuple[str, ...]) -> bool:
    return len(pattern) == len(concrete) and all(
        p == c or (p == "*" and c != "[]") for p, c in zip(pattern, concrete))


def type_ok(value, alts, sample: bool = False) -> bool:
    for a in alts:
        if a.startswith('"'):
            if value == json.loads(a):
                return True
        elif re.fullmatch(r"-?\d+", a):
            if isinstance(value, int) and not isinstance(value, bool) and value == int(a):
                return True
        elif a == "null":
            if value is None:
                return True
        elif a == "bool":
            if isinstance(value, bool):
                return True
        elif isinstance(value, bool):
            continue
        elif a == "int":
            if isinstance(value, int):
                return True
        elif a in ("number", "fraction"):
            if isinstance(value, (int, float)) and math.isfinite(value) and (a == "number" or 0 <= value <= 1):
                return True
        elif a == "string":
            if isinstance(value, str):
                return True
        elif a == "object":
            if isinstance(value, dict):
                return True
        elif a.startswith("list"):
            if isinstance(value, list):
                inner = a[5:-1] if a != "list" else None
                items = [v for v in value if not (sample and v == "...")]
                if inner is None or all(type_ok(v, (inner,)) for v in items):
                    return True
    return False


def _holds(words, args) -> bool:
    return all(w in args for w in words)


class Checker:
    """Walks one JSON document. `args` is the command line (None for a doc sample: then
    presence is not checked, and `...` placeholders are skipped)."""

    def __init__(self, rows: dict[tuple[str, ...], Spec], args: list[str] | None):
        self.rows = rows
        self.args = args
        self.sample = args is None
        self.errors: list[str] = []
        self.seen: set[tuple[str, ...]] = set()

    def spec_for(self, concrete):
        hits = [p for p in self.rows if _match(p, concrete)]
        return self.rows[min(hits, key=lambda p: p.count("*"))] if hits else None

    def presence(self, spec: Spec) -> str:
        """'required', 'forbidden' or 'may' for this command line."""
        if self.sample or spec.optional:
            return "may"
        if spec.when is not None:
            return "required" if _holds(spec.when, self.args) else "forbidden"
        if spec.unless is not None:
            return "forbidden" if _holds(spec.unless, self.args) else "required"
        return "required"

    def walk(self, value, concrete: tuple[str, ...] = ()):
        spec = self.spec_for(concrete) if concrete else None
        if spec is not None:
            self.seen.add(spec.path)
            if not type_ok(value, spec.types, self.sample):
                self.errors.append(f"{show(concrete)}: {json.dumps(value)[:80]} is not {'|'.join(spec.types)}")
                return
        if isinstance(value, dict):
            kids = [p for p in self.rows if len(p) == len(concrete) + 1 and _match(p[:-1], concrete)]
            if not kids:
                return                                      # a free-form object
            for k, v in value.items():
                c = concrete + (k,)
                if self.sample and k == "...":
                    continue
                if not any(_match(p, c) for p in kids):
                    if not (spec and spec.open):
                        self.errors.append(f"{show(c)}: in the output but not documented")
                    continue
                self.walk(v, c)
            for p in kids:
                if p[-1] in ("*", "[]"):
                    continue
                rule = self.presence(self.rows[p])
                if rule == "required" and p[-1] not in value:
                    self.errors.append(f"{show(concrete + (p[-1],))}: documented but missing")
                elif rule == "forbidden" and p[-1] in value:
                    self.errors.append(f"{show(concrete + (p[-1],))}: present, but the doc says "
                                       f"{'when' if self.rows[p].when else 'unless'} "
                                       f"{' '.join(self.rows[p].when or self.rows[p].unless)}")
        elif isinstance(value, list):
            c = concrete + ("[]",)
            if any(_match(p, c) for p in self.rows):
                for v in value:
                    if not (self.sample and v == "..."):
                        self.walk(v, c)


def must_be_seen(rows, spec: Spec, runs_args: list[list[str]]) -> bool:
    """A required key (and all its documented parents) that some run's command line allows."""
    chain = [rows[spec.path[:n]] for n in range(1, len(spec.path) + 1) if spec.path[:n] in rows]
    for s in chain:
        if s.optional:
            return False
        if s.when is not None and not any(_holds(s.when, a) for a in runs_args):
            return False
        if s.unless is not None and all(_holds(s.unless, a) for a in runs_args):
            return False
    return True


# --------------------------------------------------------------------------------------------
# The scene: a private namespace holding every kind of socket the tables talk about.

SCENARIO = r"""
import socket, sys
keep = []
def listen(port, host="127.0.0.1"):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port)); s.listen(128); keep.append(s); return s
listen(5432); web = listen(8080, "0.0.0.0"); listen(40050)          # 40050: inside the range
u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u.bind(("::", 8080)); keep.append(u)
for _ in range(10):
    keep.append(socket.create_connection(("127.0.0.1", 5432)))       # never accepted
for _ in range(3):                                                   # client closes first: TIME_WAIT
    c = socket.create_connection(("127.0.0.1", 8080)); a, _ = web.accept(); c.close(); a.close()
for _ in range(2):
    d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); d.connect(("127.0.0.1", 53)); keep.append(d)
print("ready", flush=True)
sys.stdin.read()
"""


class Scene:
    def __init__(self, ns):
        self.ns = ns
        self.name = ns.name
        self.runs: dict[tuple[str, ...], tuple[int, str, str]] = {}


@pytest.fixture(scope="module")
def scene(module_netns):
    # Module-scoped so the ~30 commands share one namespace (conftest's `module_netns`)
    ns = module_netns
    proc = None
    try:
        ns.sysctl("net.ipv4.ip_local_port_range", "40000 40099")
        ns.sysctl("net.ipv4.ip_local_reserved_ports", "40090-40094")
        ns.sysctl("net.ipv4.tcp_tw_reuse", "0")
        proc = ns.start(SCENARIO, stdin=subprocess.PIPE)
        yield Scene(ns)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(10)


def run(cli, scene: Scene | None, args: list[str]) -> tuple[int, str, str]:
    key = tuple(args)
    cache = scene.runs if scene is not None else {}
    if key not in cache:
        cache[key] = cli(*args)
    return cache[key]


# table id -> [(command line, expected exit code)]; NS stands for the scene's namespace
NS = "{ns}"
COMMANDS: dict[str, list[tuple[list[str], int]]] = {
    "report": [(["report", "--json", "--top", "2", "--netns", NS], 0),
               (["--json", "report", "--netns", NS], 0)],
    "range": [(["range", "--json", "--netns", NS], 0),
              (["--json", "range", "--netns", NS], 0)],
    "change": [(["range", "set", "40000", "40999", "--dry-run", "--json", "--netns", NS], 0),
               (["reserve", "add", "8080", "--dry-run", "--json", "--netns", NS], 0),
               (["reserve", "remove", "40094", "--dry-run", "--json", "--netns", NS], 0)],
    "reserve-list": [(["reserve", "list", "--json", "--netns", NS], 0),
                     (["reserve", "--json", "--netns", NS], 0)],
    "port": [(["port", "40050", "--json", "--netns", NS], 0),
             (["port", "8080", "--json", "--netns", NS], 0),
             (["port", "8080", "--json", "--no-owners", "--netns", NS], 0)],
    "port-name": [(["port", "postgresql", "--json", "--netns", NS], 0),
                  (["port", "x11", "--proto", "tcp", "--json", "--no-owners", "--netns", NS], 0)],
    "suggest": [(["suggest", "-n", "2", "--seed", "42", "--json", "--netns", NS], 0),
                (["suggest", "--port", "40050", "--json", "--netns", NS], 1)],
    "conns": [(["conns", "--json", "--netns", NS], 0),
              (["conns", "--json", "--process", "--netns", NS], 0),
              (["conns", "--json", "--backend", "procfs", "--state", "time-wait", "--netns", NS], 0)],
    "conns-count": [(["conns", "--count", "--json", "--netns", NS], 0)],
    "pressure": [(["pressure", "--json", "--top", "1", "--process", "--netns", NS], 0),
                 (["pressure", "--json", "--top", "1", "--cgroup", "--netns", NS], 0),
                 (["pressure", "--json", "--top", "1", "--interval", "0.2", "--netns", NS], 0),
                 (["pressure", "--check", "--json", "--netns", NS], 1)],
    "top": [(["top", "--json", "-n", "2", "--interval", "0.1", "--top", "1", "--netns", NS], 0)],
    "exporter": [(["exporter", "--json", "--top", "1", "--netns", NS], 0)],
    "simulate": [(["simulate", "--connects", "1000", "--range", "40000-40099", "--json"], 0),
                 (["simulate", "--connects", "1000", "--range", "40000-40099", "--json", "--timeseries",
                   "--interval", "0.5"], 0)],
    "plan": [(["simulate", "--rate", "100/s", "--range", "40000-40099", "--lifetime", "1",
               "--duration", "10", "--plan", "--json"], 0)],
    "lab": [(["lab", "exhaust", "--range", "40000-40019", "-k", "2", "--json"], 0)],
    "lab-snat": [],           # run by test_lab_snat_json below (after the scene's TIME_WAIT-bound tests)
    "lab-clean": [],          # run by test_lab_clean_json below, in a private mount namespace
    "quiz": [(["quiz", "--seed", "4", "--count", "2", "--answers", "1,3", "--json"], 0)],
    "quiz-list": [(["quiz", "--list", "--json"], 0)],
    "quiz-topics": [(["quiz", "--list-topics", "--json"], 0)],
    "watch": [],              # needs failures during the window: tests/test_observe_cli.py
    "web": [],                # the exporter's /api/pressure: test_web_endpoint_json below
    "namespaces": [],         # run by test_namespaces_json below, with containers made for it
    "report-all": [],         # these four: test_all_netns_json below
    "pressure-all": [],
    "conns-all": [],
    "conns-all-count": [],
    "egress": [],             # test_egress_json below
    "nat": [],                # run by test_nat_json below, in a namespace with NAT rules and flows
    "nat-all": [],            # test_nat_json below, beside the namespace's own run
    "watch-all": [],          # needs failures during the window: tests/test_observe_cli.py
}
JSON_LINES = {"top"}


@pytest.fixture(scope="module")
def doc():
    tables, samples = parse_doc(DOC.read_text())
    return tables, expand(tables), samples


def documents(table_id: str, out: str) -> list:
    if table_id in JSON_LINES:
        return [loads_strict(line) for line in out.splitlines() if line.strip()]
    return [loads_strict(out)]


def check_runs(rows, table_id: str, runs: list[tuple[list[str], str]]):
    """runs: [(args, stdout)] -> raise with every problem found."""
    errors: list[str] = []
    seen: set[tuple[str, ...]] = set()
    for args, out in runs:
        for d in documents(table_id, out):
            c = Checker(rows, args)
            c.walk(d)
            seen |= c.seen
            errors += [f"`portscope {' '.join(args)}`: {e}" for e in c.errors]
    all_args = [a for a, _ in runs]
    errors += [f"{show(p)}: documented, but no run printed it"
               for p, s in rows.items() if p not in seen and must_be_seen(rows, s, all_args)]
    assert not errors, "\n".join(dict.fromkeys(errors))


# --------------------------------------------------------------------------------------------
# The doc itself


def test_every_table_has_commands_and_every_command_a_table(doc):
    tables, _, samples = doc
    assert set(tables) == set(COMMANDS), "docs/json.md tables and COMMANDS must name the same outputs"
    assert {t for t, _, _ in samples} <= set(tables)
    assert set(tables) - {t for t, _, _ in samples} == set(), "every table needs a sample in the doc"


@pytest.mark.parametrize("table_id", sorted(COMMANDS))
def test_contract_marks_are_the_issues_contract(doc, table_id):
    tables, _, _ = doc
    marked = {show(p) for p, s in tables[table_id].rows.items() if s.contract}
    assert marked == CONTRACT.get(table_id, set())


def test_doc_samples_use_documented_keys_and_types(doc):
    _, rows, samples = doc
    errors = []
    for tid, line, value in samples:
        c = Checker(rows[tid], None)
        c.walk(value)
        errors += [f"docs/json.md sample at line {line} ({tid}): {e}" for e in c.errors]
    assert not errors, "\n".join(errors)


def test_doc_links_resolve():
    text = DOC.read_text()
    for target, anchor in re.findall(r"\]\(([\w.-]*\.md|)(?:#([\w-]+))?\)", text):
        page = DOC.parent / target if target else DOC
        assert page.exists(), f"link to missing {target}"
        if anchor:
            slugs = {_slug(h) for h in re.findall(r"^#+ (.+)$", page.read_text(), re.M)}
            assert anchor in slugs, f"no heading #{anchor} in {page.name}"


def _slug(heading: str) -> str:
    # GitHub's rule: lower case, drop punctuation but '-' and '_', spaces to '-'
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


# --------------------------------------------------------------------------------------------
# The real output


def _output_params() -> list:
    """The tables whose commands run on the scene (or, for lab, make a namespace) are netns
    tests; simulate and quiz need no namespace (nor root)."""
    out = []
    for t in sorted(t for t, cmds in COMMANDS.items() if cmds and t != "change"):
        in_ns = t == "lab" or any(NS in a for cmd, _ in COMMANDS[t] for a in cmd)
        out.append(pytest.param(t, marks=[pytest.mark.netns] if in_ns else []))
    return out


@pytest.mark.parametrize("table_id", _output_params())
def test_real_output_matches_doc(doc, cli, request, table_id):
    _, rows, _ = doc
    if table_id == "lab" and not (ROOT and HAVE_IP):
        pytest.skip(NEED_ROOT)
    # simulate and quiz need no namespace (nor root)
    needs_scene = any(NS in a for cmd, _ in COMMANDS[table_id] for a in cmd)
    scene = request.getfixturevalue("scene") if needs_scene else None
    runs = []
    for template, want in COMMANDS[table_id]:
        args = [a.replace(NS, scene.name) for a in template] if scene else list(template)
        code, out, err = run(cli, scene, args)
        assert code == want, f"`portscope {' '.join(args)}` exited {code}: {err}"
        runs.append((args, out))
    check_runs(rows[table_id], table_id, runs)


def test_change_output_matches_doc(doc, cli, scene, netns):
    """range set / reserve add|remove: dry runs on the scene, real changes in a fresh
    namespace (the conftest `netns` fixture), read back from the kernel."""
    _, rows, _ = doc
    runs = []
    for template, want in COMMANDS["change"]:
        args = [a.replace(NS, scene.name) for a in template]
        code, out, err = run(cli, scene, args)
        assert code == want, err
        assert loads_strict(out)["after"] is None and loads_strict(out)["dry_run"] is True
        runs.append((args, out))
    for args, key, value in [
            (["reserve", "add", "40090-40094"], "net.ipv4.ip_local_reserved_ports", "40090-40094"),
            (["reserve", "remove", "40094"], "net.ipv4.ip_local_reserved_ports", "40090-40093"),
            (["range", "set", "40000", "40199"], "net.ipv4.ip_local_port_range", "40000\t40199")]:
        args = [*args, "--json", "--netns", netns.name]
        code, out, err = cli(*args)
        assert code == 0, err
        j = loads_strict(out)
        assert j["changed"] is True and j["dry_run"] is False and j["after"] is not None
        assert netns.sysctl(key) == value
        assert j["read_back"][key].split() == value.split()
        runs.append((args, out))
    check_runs(rows["change"], "change", runs)


@pytest.mark.netns
@pytest.mark.skipif(not (ROOT and HAVE_IP and shutil.which("unshare")), reason=NEED_ROOT + " and unshare")
def test_lab_clean_json(doc):
    _, rows, _ = doc
    # a pid above pid_max can never exist, so the lab namespace counts as left by a dead run
    pid = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    name = f"pslab-{pid}-psjson"
    script = ('mkdir -p /run/netns && mount -t tmpfs psjson /run/netns && '
              f'ip netns add {name} && exec "$0" lab clean --json')
    p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, PORTSCOPE],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert loads_strict(p.stdout) == {"removed": [name]}
    check_runs(rows["lab-clean"], "lab-clean", [(["lab", "clean", "--json"], p.stdout)])


# --------------------------------------------------------------------------------------------
# The doc's general claims


def test_errors_print_no_json(cli):
    code, out, err = cli("port", "65536", "--json")
    assert code == 2 and out == "" and err.startswith("portscope: error: ")


def test_pressure_check_json_carries_the_plugin_verdict(cli, scene):
    # the scene has warnings (a small range, a listener inside it): WARNING, exit 1, both ways
    for args in (["pressure", "--check", "--json", "--netns", scene.name],
                 ["--json", "pressure", "--check", "--netns", scene.name]):
        code, out, _ = cli(*args)
        d = loads_strict(out)
        assert code == 1 == d["check"]["exit_code"] and d["check"]["status"] == "WARNING"
        assert d["check"]["line"].startswith("PORTSCOPE WARNING - ") and "|" in d["check"]["line"]
        assert "destinations" in d and d["check"]["reasons"]


def test_top_json_keeps_the_top_n(cli, scene):
    code, out, err = run(cli, scene, ["top", "--json", "-n", "2", "--interval", "0.1", "--top", "1",
                                      "--netns", scene.name])
    assert code == 0, err
    lines = documents("top", out)
    assert [d["iteration"] for d in lines] == [1, 2]
    for d in lines:
        assert len(d["destinations"]) == 1 and d["destinations_total"] == 3 and d["others"]["destinations"] == 2
    assert lines[1]["destinations"][0]["delta"] == 0 and len(lines[1]["destinations"][0]["history"]) == 2


def test_simulate_plan_with_connects_is_strict_json(cli):
    code, out, _ = cli("simulate", "--connects", "1000", "--range", "40000-40099", "--plan", "--json")
    assert code == 0
    loads_strict(out)


# a namespace with NAT rules (iptables and nft), flows through a SNAT rule on loopback
# (two in TIME_WAIT) and a DNAT-held port inside the ephemeral range
NAT_FLOWS = r"""
import socket, sys
keep = []
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", 5001)); l.listen(64); keep.append(l)
for i in range(4):
    c = socket.create_connection(("127.0.0.1", 5001), timeout=5); a = l.accept()[0]
    if i % 2:
        c.close(); a.close()
    else:
        keep += [c, a]
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.mark.netns
@pytest.mark.skipif(not (ROOT and HAVE_IP and shutil.which("iptables") and shutil.which("nft")),
                    reason=NEED_ROOT + ", iptables and nft")
def test_nat_json(doc, cli):
    _, rows, _ = doc
    with private_netns("psjson-nat") as ns:
        _nat_runs(rows, cli, ns)


def _nat_runs(rows, cli, ns) -> None:
    proc = None
    try:
        ns.run("iptables", "-t", "nat", "-N", "KUBE-NODEPORTS")
        ns.run("iptables", "-t", "nat", "-A", "PREROUTING", "-j", "KUBE-NODEPORTS")
        ns.run("iptables", "-t", "nat", "-A", "KUBE-NODEPORTS", "-p", "tcp", "--dport", "40080", "-j", "DNAT",
               "--to-destination", "192.0.2.10:8080")
        ns.run("iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-p", "tcp", "--dport", "5001",
               "-j", "SNAT", "--to-source", "127.0.0.1:41000-41099", "--random-fully")
        ns.run("nft", "add table ip edge; add chain ip edge post { type nat hook postrouting priority 110; }; "
                      "add rule ip edge post oifname eth9 meta l4proto udp masquerade to :20000-20999")
        proc = ns.start(NAT_FLOWS, stdin=subprocess.PIPE)
        runs = []
        for args in (["nat", "--json", "--netns", ns.name], ["--json", "nat", "--top", "1", "--netns", ns.name],
                     ["nat", "--json", "--no-table", "--interval", "0.2", "--netns", ns.name]):
            code, out, err = cli(*args)
            assert code == 0, err
            runs.append((args, out))
        # every namespace's, the one with rules among them
        args = ["nat", "--all-netns", "--json", "--top", "0"]
        code, out, err = cli(*args)
        assert code == 0, err
        assert ns.name in [n["netns"] for n in loads_strict(out)["namespaces"]]
        check_runs(rows["nat-all"], "nat-all", [(args, out)])
        first = loads_strict(runs[0][1])
        assert first["snat"][0]["in_use"] == 4 and first["nat_ports"][0]["port"] == 40080
        assert loads_strict(runs[2][1])["snat"] == []
        check_runs(rows["nat"], "nat", runs)
        # the exporter's conntrack and SNAT series of the same namespace, against the exporter table
        args = ["exporter", "--json", "--top", "1", "--netns", ns.name]
        code, out, err = cli(*args)
        assert code == 0, err
        exp = loads_strict(out)
        assert exp["portscope_snat_destination_ports_in_use"][0]["value"] == 4
        assert exp["portscope_nat_ports_in_ephemeral_range"][0]["value"] == 1
        check_runs(rows["exporter"], "exporter", [(args, out)])
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(10)


def test_web_endpoint_json(doc, scene):
    """The exporter's /api/pressure (docs/web.md), read twice: the second read carries the
    forecast (`when forecast` in the table)."""
    import socket
    import time
    import urllib.request
    _, rows, _ = doc
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exp = subprocess.Popen([PORTSCOPE, "exporter", "--listen", f"127.0.0.1:{port}", "--top", "1",
                            "--netns", scene.name], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        bodies = []
        end = time.monotonic() + 20
        while not bodies:
            assert exp.poll() is None and time.monotonic() < end, exp.stderr.read() if exp.poll() is not None else "no start"
            try:
                bodies.append(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/pressure", timeout=20).read())
            except OSError:
                time.sleep(0.1)
        time.sleep(1.2)           # past the exporter's 1 s reuse of a read
        bodies.append(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/pressure", timeout=20).read())
    finally:
        exp.terminate()
        exp.wait(10)
    first, second = (loads_strict(b.decode()) for b in bodies)
    assert "forecast" not in first and second["forecast"]["samples"] == 2
    assert len(second["history"]["points"]) == 2 and second["netns"] == scene.name
    check_runs(rows["web"], "web", [(["GET", "/api/pressure"], bodies[0].decode()),
                                    (["GET", "/api/pressure", "forecast"], bodies[1].decode())])


@pytest.mark.netns
def test_namespaces_json(doc, cli, tmp_path):
    """Namespaces in cgroups named as a runtime and the kubelet name them, so that the
    container and pod objects are printed (nsworld removes them all)."""
    from nsworld import HAVE_TOOLS, World, cgroup_v2_root, hex64, pod_uid
    if not (ROOT and HAVE_TOOLS and cgroup_v2_root()):
        pytest.skip("needs root, unshare/ip/lsns and a writable cgroup v2 mount")
    _, rows, _ = doc
    w = World()
    try:
        uid = pod_uid()
        w.spawn(f"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid.replace('-', '_')}"
                f".slice/cri-containerd-{hex64()}.scope")
        w.attach(w.spawn(f"system.slice/docker-{hex64()}.scope"))
        code, out, err = cli("namespaces", "--json")
    finally:
        w.close()
    assert code == 0, err
    check_runs(rows["namespaces"], "namespaces", [(["namespaces", "--json"], out)])


@pytest.mark.root
@pytest.mark.netns
@pytest.mark.live
def test_all_netns_json(doc, cli):
    """report / pressure / conns --all-netns over namespaces made here: one in a kubelet
    cgroup holding connections (so the labelled rows are printed), one with a finding."""
    from nsworld import HAVE_TOOLS, World, cgroup_v2_root, hex64, pod_uid
    if not (ROOT and HAVE_TOOLS and cgroup_v2_root()):
        pytest.skip("needs root, unshare/ip/lsns and a writable cgroup v2 mount")
    _, rows, _ = doc
    w = World()
    runs = {"report-all": [["report", "--all-netns", "--json"]],
            "pressure-all": [["pressure", "--all-netns", "--json", "--top", "3"]],
            # --port: other tenants of this machine may hold 100k sockets in their namespaces
            "conns-all": [["conns", "--all-netns", "--json", "--port", "40050"],
                          ["conns", "--all-netns", "--json", "--process", "--port", "40050"]],
            "conns-all-count": [["conns", "--all-netns", "--count", "--json", "--port", "40050"]]}
    try:
        uid = pod_uid()
        pid = w.spawn(f"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid.replace('-', '_')}"
                      f".slice/cri-containerd-{hex64()}.scope", conns=2, port=40050,
                      lifetime=900)        # the runs below read every tenant's namespaces: slow here
        # a listener inside the ephemeral range: a finding in that namespace
        assert pid
        out = {t: [(a, run(cli, None, a)) for a in cmds] for t, cmds in runs.items()}
    finally:
        w.close()
    for t, res in out.items():
        for a, (code, _, err) in res:
            assert code == 0, (a, err)
        check_runs(rows[t], t, [(a, o) for a, (_, o, _) in res])


@pytest.mark.netns
def test_egress_json(doc, cli):
    """pressure --egress over a namespace made here, in a kubelet cgroup, holding flows to a
    documentation address on its own loopback, with a budget small enough for a finding."""
    from nsworld import HAVE_TOOLS, World, cgroup_v2_root, hex64, pod_uid
    if not (ROOT and HAVE_TOOLS and cgroup_v2_root()):
        pytest.skip("needs root, unshare/ip/lsns and a writable cgroup v2 mount")
    _, rows, _ = doc
    w = World()
    runs = [["pressure", "--egress", "--json", "--nat-budget", "4"],
            ["pressure", "--egress", "--json", "--cloud", "gcp-cloud-nat", "--interval", "0.2"]]
    try:
        uid = pod_uid()
        w.spawn(f"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid.replace('-', '_')}"
                f".slice/cri-containerd-{hex64()}.scope", conns=4, closed=1, port=443, dst="203.0.113.77",
                addrs=("203.0.113.77/32",))
        out = [(a, cli(*a)) for a in runs]
    finally:
        w.close()
    for a, (code, _, err) in out:
        assert code == 0, (a, err)
    check_runs(rows["egress"], "egress", [(a, o) for a, (_, o, _) in out])


@pytest.mark.netns
@pytest.mark.skipif(not (ROOT and HAVE_IP and shutil.which("iptables")), reason=NEED_ROOT + " and iptables")
def test_lab_snat_json(doc, cli):
    """lab exhaust --mode snat / snat-udp: makes (and removes) its own three namespaces."""
    _, rows, _ = doc
    runs = []
    for args in (["lab", "exhaust", "--mode", "snat", "--range", "40000-40007", "--json"],
                 ["lab", "exhaust", "--mode", "snat-udp", "--range", "40000-40007", "--json"]):
        code, out, err = cli(*args)
        assert code == 0, err
        runs.append((args, out))
    check_runs(rows["lab-snat"], "lab-snat", runs)
