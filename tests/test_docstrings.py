"""Every public function, class and method of the library says what it does and is typed,
checked over the source (ast), so a new undocumented or unannotated one fails CI.

Public means: a module-level function or class of any module under portscope/ whose name
does not start with "_", and a method of such a class whose name does not start with "_"
(properties included). For each:

* a docstring (classes and functions alike);
* functions and methods: a return annotation and an annotation on every parameter
  (`self` / `cls`, the implicit first parameter of methods, excepted);
* the constructor (`__init__`) of a public class is its public signature, so it is held to
  the same annotations (parameters and `-> None`); its docs are the class docstring.

One exemption, for parameter annotations only: click command and group callbacks in
portscope/cli (functions decorated with `click.command`/`click.group` or `<group>.command`/
`<group>.group`). click calls them with the values its option declarations produce, so the
types live in those declarations (`type=`, `is_flag=`, `multiple=`, the Choice lists), and
annotations repeated by hand would only drift from them. The callbacks still need their
docstring (it is the command's --help text) and a return annotation.

Functions marked `@overload` are signatures for the checker, documented on the
implementation, and are skipped.
"""
from __future__ import annotations

import ast
import os

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "portscope")
CLICK_DECORATORS = ("command", "group")


def _decorator_names(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    return [ast.unparse(d.func if isinstance(d, ast.Call) else d) for d in fn.decorator_list]


def _is_click_callback(fn: ast.FunctionDef | ast.AsyncFunctionDef, in_cli: bool) -> bool:
    return in_cli and any(n.split(".")[-1] in CLICK_DECORATORS and "." in n for n in _decorator_names(fn))


def _unannotated(fn: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> list[str]:
    a = fn.args
    params = a.posonlyargs + a.args
    if method and "staticmethod" not in _decorator_names(fn):
        params = params[1:]          # self / cls
    params = params + a.kwonlyargs
    missing = [p.arg for p in params if p.annotation is None]
    if a.vararg is not None and a.vararg.annotation is None:
        missing.append("*" + a.vararg.arg)
    if a.kwarg is not None and a.kwarg.annotation is None:
        missing.append("**" + a.kwarg.arg)
    return missing


def _check_function(fn: ast.FunctionDef | ast.AsyncFunctionDef, where: str, *, method: bool,
                    in_cli: bool, constructor: bool = False) -> list[str]:
    if any(n.split(".")[-1] == "overload" for n in _decorator_names(fn)):
        return []
    out = []
    if not constructor and ast.get_docstring(fn) is None:
        out.append(f"{where}: no docstring")
    if fn.returns is None:
        out.append(f"{where}: no return annotation")
    if not _is_click_callback(fn, in_cli):
        missing = _unannotated(fn, method)
        if missing:
            out.append(f"{where}: parameters without annotation: {', '.join(missing)}")
    return out


def _public_defs(body: list[ast.stmt]):
    """Module-level defs, also those inside a module-level `if`/`try` (platform branches)."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if not node.name.startswith("_"):
                yield node
        elif isinstance(node, ast.If):
            yield from _public_defs(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            yield from _public_defs(node.body + node.orelse + node.finalbody
                                    + [s for h in node.handlers for s in h.body])


def problems(source: str, rel: str) -> list[str]:
    """Every missing docstring or annotation in one module's source; `rel` is its path
    under the repository (decides the cli exemption and names the place)."""
    in_cli = rel.replace(os.sep, "/").startswith("portscope/cli/")
    out: list[str] = []
    for node in _public_defs(ast.parse(source).body):
        where = f"{rel}:{node.lineno} {node.name}"
        if isinstance(node, ast.ClassDef):
            if ast.get_docstring(node) is None:
                out.append(f"{where}: no docstring")
            for m in node.body:
                if not isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                mwhere = f"{rel}:{m.lineno} {node.name}.{m.name}"
                if m.name == "__init__":
                    out += _check_function(m, mwhere, method=True, in_cli=False, constructor=True)
                elif not m.name.startswith("_"):
                    out += _check_function(m, mwhere, method=True, in_cli=False)
        else:
            out += _check_function(node, where, method=False, in_cli=in_cli)
    return out


def test_every_public_function_class_and_method_has_a_docstring_and_annotations():
    found = []
    checked = 0
    for dp, _, fns in os.walk(ROOT):
        for fn in sorted(fns):
            if fn.endswith(".py"):
                path = os.path.join(dp, fn)
                rel = os.path.relpath(path, os.path.dirname(ROOT))
                with open(path, encoding="utf-8") as f:
                    found += problems(f.read(), rel)
                checked += 1
    assert checked > 50          # the walk really saw the package
    assert found == []


# the checker itself, on code whose faults are known

BAD = '''
import click

def undocumented(x: int) -> int:
    return x

def untyped(x, *args, **kw):
    """Doc."""

class NoDoc:
    def __init__(self, a):
        self.a = a

    def method(self, b: int):
        return b

    @property
    def prop(self) -> int:
        return 1

    @staticmethod
    def static(a) -> None:
        """Doc."""

    def _private(self, x):
        pass

def _private(x):
    pass

if True:
    def branch():
        """Doc."""

@click.command()
@click.option("--n")
def cmd(n):
    """Help text."""
'''

GOOD = '''
import click


class Fine:
    """Doc."""

    def __init__(self, a: int) -> None:
        self.a = a

    def method(self, b: int) -> int:
        """Doc."""
        return b

    @classmethod
    def make(cls, a: int) -> "Fine":
        """Doc."""
        return cls(a)


def fine(x: int, *args: int, **kw: str) -> None:
    """Doc."""


@click.command()
@click.option("--n")
def cmd(n) -> None:
    """Help text."""
'''


def test_checker_reports_each_kind_of_fault():
    got = problems(BAD, "portscope/x.py")
    assert got == [
        "portscope/x.py:4 undocumented: no docstring",
        "portscope/x.py:7 untyped: no return annotation",
        "portscope/x.py:7 untyped: parameters without annotation: x, *args, **kw",
        "portscope/x.py:10 NoDoc: no docstring",
        "portscope/x.py:11 NoDoc.__init__: no return annotation",
        "portscope/x.py:11 NoDoc.__init__: parameters without annotation: a",
        "portscope/x.py:14 NoDoc.method: no docstring",
        "portscope/x.py:14 NoDoc.method: no return annotation",
        "portscope/x.py:18 NoDoc.prop: no docstring",
        "portscope/x.py:22 NoDoc.static: parameters without annotation: a",
        "portscope/x.py:32 branch: no return annotation",
        "portscope/x.py:37 cmd: no return annotation",
        "portscope/x.py:37 cmd: parameters without annotation: n",
    ]


def test_click_callbacks_are_exempt_from_parameter_annotations_in_cli_only():
    assert problems(GOOD, "portscope/x.py") == [
        "portscope/x.py:27 cmd: parameters without annotation: n"]
    assert problems(GOOD, "portscope/cli/x.py") == []
    # still needs its return annotation and its help text
    assert problems(BAD, "portscope/cli/x.py")[-1:] == ["portscope/cli/x.py:37 cmd: no return annotation"]
