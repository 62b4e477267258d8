"""`json.dumps(obj, indent=2, default=str)`, the same bytes, without importing json.

Importing the json package loads its decoder, and with it re and enum: together about half
an empty interpreter's start-up, paid by every `--json` command before it prints a byte.
With indent, json encodes in pure Python anyway (its C encoder has no indent), so this
walk, over the C string escaper json itself uses (_json.encode_basestring_ascii), costs no
more per object. The type checks run in json's order, so a bool is `true`, never `1`, and
anything else goes through `default` (tests/test_jsonout_model.py holds the bytes equal).
"""
from __future__ import annotations

try:
    from _json import encode_basestring_ascii as _enc
except ImportError:          # an interpreter without the C accelerator: json's own, and its import
    from json.encoder import py_encode_basestring_ascii as _enc

TYPE_CHECKING = False     # typing's would import typing
if TYPE_CHECKING:
    from typing import Callable

_INF = float("inf")


def _float(f: float) -> str:
    # json's floatstr with allow_nan=True
    if f != f:
        return "NaN"
    if f == _INF:
        return "Infinity"
    if f == -_INF:
        return "-Infinity"
    return float.__repr__(f)


def _key(k: object) -> str:
    # json's key coercion, in its order (a float before True: True is no float)
    if isinstance(k, str):
        return k
    if isinstance(k, float):
        return _float(k)
    if k is True:
        return "true"
    if k is False:
        return "false"
    if k is None:
        return "null"
    if isinstance(k, int):
        return int.__repr__(k)
    raise TypeError(f"keys must be str, int, float, bool or None, not {k.__class__.__name__}")


def dumps(obj: object, default: Callable[[object], object] = str) -> str:
    """The text of json.dumps(obj, indent=2, default=default) (ensure_ascii, NaN allowed)."""
    out: list[str] = []
    put = out.append

    def walk(o: object, level: int) -> None:
        if isinstance(o, str):
            put(_enc(o))
        elif o is None:
            put("null")
        elif o is True:
            put("true")
        elif o is False:
            put("false")
        elif isinstance(o, int):
            put(int.__repr__(o))
        elif isinstance(o, float):
            put(_float(o))
        elif isinstance(o, (list, tuple)):
            if not o:
                put("[]")
                return
            inner = "\n" + "  " * (level + 1)
            sep = "[" + inner
            for v in o:
                put(sep)
                sep = "," + inner
                walk(v, level + 1)
            put("\n" + "  " * level + "]")
        elif isinstance(o, dict):
            if not o:
                put("{}")
                return
            inner = "\n" + "  " * (level + 1)
            sep = "{" + inner
            for k, v in o.items():
                put(sep + _enc(_key(k)) + ": ")
                sep = "," + inner
                walk(v, level + 1)
            put("\n" + "  " * level + "}")
        else:
            walk(default(o), level)

    walk(obj, 0)
    return "".join(out)
