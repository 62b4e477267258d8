"""The package's shape, checked over its source (ast), so a new cycle or reach-in fails CI:

* no import cycle between library modules;
* no module imports another module's private (_underscore) names, or reads them as attributes;
* cli/ is presentation: a command module imports the library and cli/common, cli/render, cli/terminal,
  cli/progress only;
* host/ never imports sockets/ (socket facts are passed in);
* function-local imports only in cli/ and for heavy or optional modules.

front/ is the command line's other half: the console entry point (front.fast) runs a few
exact command lines without click and hands every other one to portscope.cli, importing it
only then; front.views holds those commands' bodies. So front/ follows cli/'s rules (lazy
imports allowed, it is presentation), and front.fast, like __main__, is an entry point that
may import the cli.
"""
from __future__ import annotations

import ast
import os
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "portscope")
# heavy or optional: imported where used, so the start-up path does not pay for them
LAZY_OK = {"numpy", "matplotlib", "matplotlib.pyplot", "yaml", "bcrypt", "psutil", "ctypes", "ctypes.util",
           "tomllib", "prometheus_client.exposition", "threading", "resource", "csv", "io", "difflib",
           "rich", "termios", "tty", "select",
           "portscope.simulate.engine",     # the event loop imports numpy
           "subprocess", "shlex",     # host: only the BSD/Windows backends and plans run commands
           "re",     # containers: only a cgroup that names a runtime needs a pattern (`namespaces` starts without re)
           # host: only the running OS's backend (the BSD and Windows ones import re)
           "portscope.host.linux", "portscope.host.bsd", "portscope.host.windows",
           "gzip",     # registry: only writing the data file needs the gzip module (reading uses zlib)
           "ipaddress",     # sockets.filters: only --src/--dst parse networks
           "portscope.sockets.tcpiter",     # ctypes and the BPF loader: only reads that want the AUTO bit
           # portinfo: a free port is answered by portprobe; the socket table only for a held one
           "portscope.sockets", "portscope.sockets.owners",
           "portscope.namespaces",     # netns: only inode:/container:/pod: specs walk /proc
           "importlib"}     # portscope/__init__: only a lazy public name loads its module
COMPAT = {"portscope.classify", "portscope.webconfig"}     # old paths that re-export
ENTRY_POINTS = {"portscope.__main__", "portscope.front.fast"}    # may import the cli (see the docstring)
PRESENTATION = ("portscope.cli", "portscope.front")     # imports where used, so each command pays only its own


def _modules() -> dict[str, str]:
    mods = {}
    for dp, _, fns in os.walk(ROOT):
        for fn in fns:
            if fn.endswith(".py"):
                path = os.path.join(dp, fn)
                rel = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                mods[rel.removesuffix(".__init__")] = path
    return mods


MODS = _modules()


def _imports(name: str):
    """(target module, imported names, function-local?) for each import in module `name`."""
    path = MODS[name]
    tree = ast.parse(open(path).read())
    pkg = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
    local = set()
    for f in ast.walk(tree):
        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
            local.update(id(n) for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom)))
    in_type_checking = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.If) and getattr(n.test, "id", None) == "TYPE_CHECKING":
            in_type_checking.update(id(x) for x in ast.walk(n))
    for n in ast.walk(tree):
        if id(n) in in_type_checking:
            continue
        if isinstance(n, ast.ImportFrom):
            if n.level:
                base = pkg.split(".")[: len(pkg.split(".")) - n.level + 1]
                tgt = ".".join(base + ([n.module] if n.module else []))
            else:
                tgt = n.module or ""
            names = [a.name for a in n.names]
            subs = [f"{tgt}.{x}" for x in names if f"{tgt}.{x}" in MODS]
            plain = [x for x in names if f"{tgt}.{x}" not in MODS]
            if plain or not subs:
                yield tgt, plain, id(n) in local
            for s in subs:
                yield s, [], id(n) in local
        elif isinstance(n, ast.Import):
            for a in n.names:
                yield a.name, [], id(n) in local


def _graph() -> dict[str, set[str]]:
    g = defaultdict(set)
    for m in MODS:
        for tgt, _, _ in _imports(m):
            if tgt in MODS and tgt != m:
                g[m].add(tgt)
    return g


def test_no_import_cycles():
    g = _graph()
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(MODS):
        if v not in index:
            visit(v)
    assert cycles == []


def test_no_private_names_across_modules():
    bad = []
    for m in MODS:
        for tgt, names, _ in _imports(m):
            if tgt.startswith("portscope") and tgt != m:
                bad += [f"{m} imports {tgt}.{x}" for x in names if x.startswith("_") and not x.startswith("__")]
        tree = ast.parse(open(MODS[m]).read())
        aliases = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                   and (n.level or (n.module or "").startswith("portscope")) for a in n.names}
        for n in ast.walk(tree):
            if (isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in aliases
                    and n.attr.startswith("_") and not n.attr.startswith("__")):
                bad.append(f"{m} reads {n.value.id}.{n.attr}")
    assert bad == []


def test_cli_commands_import_only_the_library_and_common_pieces():
    shared = {"portscope.cli.common", "portscope.cli.render", "portscope.cli.progress", "portscope.cli.terminal"}
    bad = []
    for m in MODS:
        if not m.startswith("portscope.cli.") or m in shared:
            continue
        for tgt, _, _ in _imports(m):
            if tgt.startswith("portscope.cli") and tgt not in shared:
                bad.append(f"{m} -> {tgt}")
    assert bad == []


def test_library_does_not_import_the_cli():
    bad = [f"{m} -> {t}" for m in MODS if not m.startswith("portscope.cli") and m not in ENTRY_POINTS
           for t, _, _ in _imports(m) if t.startswith("portscope.cli")]
    assert bad == []


def test_host_never_imports_sockets():
    bad = [f"{m} -> {t}" for m in MODS if m.startswith("portscope.host")
           for t, _, _ in _imports(m) if t.startswith("portscope.sockets")]
    assert bad == []


def test_function_local_imports_only_in_cli_or_for_heavy_modules():
    bad = []
    for m in MODS:
        if m.startswith(PRESENTATION) or m in COMPAT:
            continue
        for tgt, _, is_local in _imports(m):
            if is_local and tgt not in LAZY_OK and tgt.split(".")[0] not in LAZY_OK:
                bad.append(f"{m}: {tgt}")
    assert bad == []
