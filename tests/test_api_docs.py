"""docs/api.md's examples run as written, and the flat API is what it promises."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import portscope

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "api.md")


def test_every_example_in_api_md_runs():
    blocks = re.findall(r"```python\n(.*?)```", open(DOC).read(), re.S)
    assert len(blocks) >= 6
    scope: dict = {}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"docs/api.md block {i + 1}", "exec"), scope)
        except Exception as e:  # say which block, then fail
            raise AssertionError(f"docs/api.md block {i + 1} failed: {type(e).__name__}: {e}") from e


def test_all_names_resolve_and_have_docstrings():
    missing = []
    for name in portscope.__all__:
        obj = getattr(portscope, name)
        if callable(obj) and not (getattr(obj, "__doc__", None) or "").strip():
            missing.append(name)
    assert missing == []


def test_import_is_cheap():
    out = subprocess.run([sys.executable, "-c", "import sys, portscope; "
                          "print(sorted(m for m in sys.modules if m.startswith('portscope')))"],
                         capture_output=True, text=True, check=True).stdout
    assert eval(out) == ["portscope", "portscope.errors"]
    heavy = subprocess.run([sys.executable, "-c", "import sys, portscope; "
                            "print(sorted({'typing', 'dataclasses', 're'} & set(sys.modules)))"],
                           capture_output=True, text=True, check=True).stdout
    assert eval(heavy) == []


def test_api_md_names_every_public_name():
    text = open(DOC).read()
    absent = [n for n in portscope.__all__ if n != "__version__" and n not in text]
    assert absent == []


def test_no_public_name_shadows_a_submodule():
    import pkgutil
    subs = {m.name for m in pkgutil.iter_modules(portscope.__path__)}
    assert sorted(set(portscope.__all__) & subs) == []
