"""The marks that split the suite into tiers are honest: no test that needs root, or that
talks to this host or to an outside tool, can fall into the fast tier
(`-m "not root and not netns and not slow and not live"`) by forgetting its mark.

Two checks: a scan of the test modules' source (what a test reaches, directly or through the
module's helpers, fixtures and constants, against the marks it carries), and the marks of
the tests this very session collected (what conftest's hook made of them)."""
from __future__ import annotations

import ast
import glob
import os
import textwrap
from dataclasses import dataclass, field

import pytest

from conftest import NETNS_FIXTURES

HERE = os.path.dirname(os.path.abspath(__file__))

# Root-only facilities: helpers that make namespaces, the euid test, and the programs that
# switch user, namespace or capabilities. (`ip netns` is matched as the two words in a row.)
ROOT_NAMES = frozenset({"make_netns", "remove_netns", "Netns", "geteuid", "setns", "run_exhaust",
                        "socket_namespace"})
ROOT_PROGRAMS = frozenset({"setpriv", "unshare", "nsenter"})
# Outside programs whose answer is this host's state, or that are a whole other system
LIVE_PROGRAMS = frozenset({"ss", "sysctl", "ip", "prometheus", "promtool", "tmux", "systemd-analyze",
                           "conntrack", "nstat", "lsns", "iptables", "nft"})
EXEC_CALLS = frozenset({"run", "Popen", "popen", "check_output", "check_call", "call"})
ROOT_MARKS = frozenset({"root", "netns"})
LIVE_MARKS = frozenset({"live", "root", "netns"})   # a netns test is a live one (conftest)


@dataclass
class Reach:
    """What one piece of a module reaches: facility words, module names it uses, fixture args."""
    root: set[str] = field(default_factory=set)
    live: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    args: set[str] = field(default_factory=set)


def _reach(node: ast.AST) -> Reach:
    r = Reach()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        r.args = {a.arg for a in node.args.args + node.args.kwonlyargs}
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            r.names.add(n.id)
            if n.id in ROOT_NAMES:
                r.root.add(n.id)
        elif isinstance(n, ast.Attribute) and n.attr in ROOT_NAMES:
            r.root.add(n.attr)
        elif isinstance(n, ast.Constant) and isinstance(n.value, str):
            r.names.add(n.value)                      # request.getfixturevalue("scene")
            if n.value in ROOT_PROGRAMS:
                r.root.add(n.value)
                r.live.add(n.value)
            if n.value.startswith("/run/netns"):
                r.root.add(n.value)
        elif isinstance(n, (ast.List, ast.Tuple)) or isinstance(n, ast.Call):
            items = n.elts if not isinstance(n, ast.Call) else n.args
            words = [e.value if isinstance(e, ast.Constant) else None for e in items]
            if any(a == "ip" and b == "netns" for a, b in zip(words, words[1:])):
                r.root.add("ip netns")
        if isinstance(n, ast.Call) and _called(n) in EXEC_CALLS and n.args:
            # the program a run()/Popen()/ns.run() starts: a word, or the head of a list
            first = n.args[0]
            if isinstance(first, (ast.List, ast.Tuple)) and first.elts:
                first = first.elts[0]
            if isinstance(first, ast.Constant) and first.value in LIVE_PROGRAMS:
                r.live.add(first.value)
        if (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("open", "Path")
                and n.args and isinstance(n.args[0], ast.Constant) and str(n.args[0].value).startswith("/proc/")):
            r.live.add(str(n.args[0].value))          # this host's own /proc
    return r


def _called(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def _marks(nodes, parts: dict | None = None) -> set[str]:
    """Mark names (pytest.mark.X, or conftest's needs_netns) anywhere in these nodes, and in
    the module-level helpers they name (a parametrize list built by a function)."""
    out, seen, todo = set(), set(), list(nodes)
    while todo:
        for n in ast.walk(todo.pop()):
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute) and n.value.attr == "mark":
                out.add(n.attr)
            elif isinstance(n, ast.Name) and n.id == "needs_netns":
                out.add("netns")
            elif isinstance(n, ast.Name) and parts and n.id in parts and n.id not in seen:
                seen.add(n.id)
                todo.append(parts[n.id][0])
    return out


def _is_fixture(fn) -> bool:
    return any("fixture" in ast.unparse(d) for d in fn.decorator_list)


def scan(source: str) -> list[str]:
    """Problems in one test module: each test that reaches a root-only facility without a
    root/netns mark, or this host or an outside tool without a live (or root/netns) mark."""
    tree = ast.parse(source)
    parts: dict[str, tuple[ast.AST, Reach]] = {}      # module-level name -> (node, reach)
    fixtures: set[str] = set()
    module_marks: set[str] = set()
    tests = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name.startswith("test_"):
                tests.append(node)
                continue
            parts[node.name] = (node, _reach(node))
            if _is_fixture(node):
                fixtures.add(node.name)
        elif isinstance(node, ast.ClassDef):
            parts[node.name] = (node, _reach(node))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            if "pytestmark" in names:
                module_marks |= _marks([node.value])
            for name in names:
                parts[name] = (node.value, _reach(node.value))

    def hooked(args: set[str], seen: set[str]) -> bool:
        """A namespace fixture among these fixture args, directly or under the module's own
        fixtures: conftest's hook sees it in the test's fixturenames and marks the test."""
        for a in args:
            if a in NETNS_FIXTURES:
                return True
            if a in fixtures and a not in seen:
                seen.add(a)
                if hooked(parts[a][1].args, seen):
                    return True
        return False

    def reached(r: Reach) -> tuple[set[str], set[str]]:
        """Root and live words through the module's helpers, constants and fixtures."""
        root, live, seen, todo = set(r.root), set(r.live), set(), [r]
        while todo:
            cur = todo.pop()
            for name in (cur.names | (cur.args & fixtures)) - seen:
                seen.add(name)
                if name in parts:
                    p = parts[name][1]
                    root |= p.root
                    live |= p.live
                    if name in fixtures and p.args & NETNS_FIXTURES:
                        root.add(f"the {name} fixture")
                    todo.append(p)
        return root, live

    problems = []
    for t in tests:
        reach = _reach(t)
        if hooked(reach.args, set()):
            continue
        root, live = reached(reach)
        marks = module_marks | _marks(t.decorator_list, parts)
        if root and not marks & ROOT_MARKS:
            problems.append(f"{t.name}: uses {', '.join(sorted(root))} but is not marked root or netns")
        elif live and not marks & LIVE_MARKS:
            problems.append(f"{t.name}: uses {', '.join(sorted(live))} but is not marked live")
    return problems


def test_every_module_marks_what_it_needs():
    problems = []
    for path in sorted(glob.glob(os.path.join(HERE, "test_*.py"))):
        if os.path.basename(path) == "test_markers.py":      # it holds the words it looks for
            continue
        with open(path, encoding="utf-8") as f:
            problems += [f"{os.path.basename(path)}: {p}" for p in scan(f.read())]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("source, problem", [
    ("def test_x():\n    subprocess.run(['setpriv', '--reuid=65534', 'id'])\n", "uses setpriv"),
    ("import os\n@pytest.mark.skipif(os.geteuid() != 0, reason='root')\ndef test_x():\n    pass\n", "uses geteuid"),
    ("def test_x():\n    subprocess.run(['ip', 'netns', 'add', 'x'])\n", "uses ip netns"),
    # through a module helper and a module constant
    ("NOBODY = ('setpriv', '--reuid=65534')\ndef run(*a):\n    return subprocess.run([*NOBODY, *a])\n"
     "def test_x():\n    run('id')\n", "uses setpriv"),
    ("@pytest.fixture(scope='module')\ndef scene():\n    ns = make_netns()\n    yield ns\n"
     "def test_x(scene):\n    pass\n", "uses make_netns"),
    ("def test_x(request):\n    request.getfixturevalue('scene')\n"
     "@pytest.fixture\ndef scene():\n    return make_netns()\n", "uses make_netns"),
    ("def test_x():\n    subprocess.run(['promtool', 'check'])\n", "not marked live"),
    ("def promtool(*a):\n    return subprocess.run(['promtool', *a])\ndef test_x():\n    promtool('check')\n",
     "uses promtool but is not marked live"),
    ("def test_x():\n    open('/proc/sys/net/ipv4/ip_local_port_range').read()\n", "not marked live"),
    # a live mark is not a root mark
    ("@pytest.mark.live\ndef test_x():\n    subprocess.run(['setpriv', 'id'])\n", "uses setpriv"),
])
def test_scan_finds_a_missing_mark(source, problem):
    got = scan(source)
    assert len(got) == 1 and problem in got[0], got


@pytest.mark.parametrize("source", [
    "@pytest.mark.root\ndef test_x():\n    subprocess.run(['setpriv', 'id'])\n",
    "pytestmark = [pytest.mark.netns]\ndef test_x():\n    subprocess.run(['ip', 'netns', 'add', 'x'])\n",
    "@needs_netns\ndef test_x():\n    lab.run_exhaust(plan)\n",
    "def test_x(netns):\n    netns.run('setpriv', 'id')\n",
    # a module fixture on top of the namespace fixtures: the hook sees it through fixturenames
    "@pytest.fixture\ndef loaded(netns):\n    return netns\ndef test_x(loaded):\n    subprocess.run(['ss'])\n",
    "@pytest.mark.parametrize('t', [pytest.param('a', marks=pytest.mark.netns)])\n"
    "def test_x(request, t):\n    request.getfixturevalue('scene')\n"
    "@pytest.fixture\ndef scene(module_netns):\n    return module_netns\n",
    "@pytest.mark.live\ndef test_x():\n    subprocess.run(['tmux', 'new'])\n",
    "def test_x(cli):\n    assert cli('port', '80')[0] == 0\n",
    # a command line the test expects, not one it runs
    "def test_x():\n    assert plan.argv == ['sysctl', '-w', 'x=1']\n",
])
def test_scan_accepts_marked_and_pure_tests(source):
    assert scan(textwrap.dedent(source)) == []


def test_collected_tests_carry_the_implied_marks(request):
    """Whatever this session collected (all of tests/ in a full run; the fast tier's share in
    a fast run): a test on a namespace fixture is netns, a netns test is root and live, and
    in a run that deselects root tests none of them is left."""
    items = request.session.items
    assert request.node in items
    for item in items:
        names = {m.name for m in item.iter_markers()}
        if NETNS_FIXTURES.intersection(item.fixturenames):
            assert "netns" in names, item.nodeid
        if "netns" in names:
            assert {"root", "live"} <= names, item.nodeid
    expr = request.config.getoption("markexpr") or ""
    if "not root" in expr:
        assert not [i.nodeid for i in items if i.get_closest_marker("root")]
