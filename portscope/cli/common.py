"""Pieces every command shares: --json/--netns options and output."""
from __future__ import annotations

import json
import sys
from typing import Any, Callable, TypeVar

import click

from ..errors import BadInput
from ..netns import check_spec
from ..numparse import INTERVAL_S, parse_real, parse_whole

F = TypeVar("F", bound=Callable[..., Any])


class Number(click.ParamType):
    """Every numeric option: ASCII digits, finite, in range, else one `portscope: error:`
    line and exit 2 (BadInput), naming the option. One type, so `--seed -1` or `--interval
    1e308` get the same answer from every command."""

    def __init__(self, lo: float | None = None, hi: float | None = None, *, whole: bool = False,
                 lo_open: bool = False, unit: str = "") -> None:
        self.lo, self.hi, self.whole, self.lo_open, self.unit = lo, hi, whole, lo_open, unit
        self.name = "integer" if whole else "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The checked number (int for whole options), or BadInput naming the option."""
        what = param.opts[0] if param is not None and getattr(param, "opts", None) else "value"
        try:
            if self.whole:
                return parse_whole(value, what, None if self.lo is None else int(self.lo),
                                   None if self.hi is None else int(self.hi))
            return parse_real(value, what, self.lo, self.hi, lo_open=self.lo_open, unit=self.unit)
        except BadInput as e:
            if ctx is None:         # called outside click: the library's error
                raise
            # a usage error: exit 2 with the `--help` pointer, UNKNOWN under pressure --check
            raise click.UsageError(str(e), ctx) from None


# limits shared by every command that has the option
INTERVAL = Number(*INTERVAL_S, unit="seconds")    # pressure, top, exporter: sampling/refresh/write
SEED = Number(0, 2**63 - 1, whole=True)           # suggest, simulate (quiz parses its own, same rule)
TOP = Number(0, 1_000_000, whole=True)


def json_option(f: F) -> F:
    """Decorator: the command's --json flag (passed as `json_out`)."""
    return click.option("--json", "json_out", is_flag=True, help="Print JSON (keys documented in docs/json.md).")(f)


def check_netns(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """click callback for every --netns (single or repeated): a blank value is bad input,
    never "this host"."""
    if value is None:
        return None
    if isinstance(value, tuple):
        return tuple(check_spec(v) for v in value)
    return check_spec(value)


def nonblank(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """click callback: an option given with an empty or blank value is bad input, never
    "not given" (`--web-config "$CFG"` with CFG unset must not serve without auth)."""
    if value is None:
        return None
    for v in value if isinstance(value, tuple) else (value,):     # repeated options too
        if not str(v).replace(",", " ").strip():
            raise BadInput(f"{param.opts[0]} needs a value, got {v!r} (leave the option out instead)")
    return value


def netns_option(f: F) -> F:
    """Decorator: the command's --netns option (passed as `netns`)."""
    return click.option("--netns", metavar="NAME|pid:PID", callback=check_netns,
                        help="Network namespace: a name from `ip netns list` or pid:PID.")(f)


def want_json(json_out: bool | None) -> bool:
    """JSON output: asked on the command or before it (`portscope --json CMD`)."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root().obj if ctx else None
    return bool(json_out or (root or {}).get("json"))


def netns_of(netns: str | None) -> str | None:
    """The namespace given on the command or before it; BadInput if both name different ones."""
    ctx = click.get_current_context(silent=True)
    root = (ctx.find_root().obj if ctx else None) or {}
    outer = root.get("netns")
    if netns and outer and netns != outer:
        from ..errors import BadInput
        raise BadInput(f"two namespaces given: --netns {outer} before the command and --netns {netns} after it")
    return netns or outer


def verbose() -> bool:
    """True when -v/--verbose was given anywhere on the command line."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root().obj if ctx else None
    return bool((root or {}).get("verbose"))


def emit_json(obj: object) -> None:
    """Print `obj` as indented JSON on stdout (anything not JSON-native as its str())."""
    json.dump(obj, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")
