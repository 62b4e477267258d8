"""Pieces every command shares: --json/--netns options and output."""
from __future__ import annotations

import json
import sys

import click


class Number(click.ParamType):
    """Every numeric option: ASCII digits, finite, in range, else one `portscope: error:`
    line and exit 2 (BadInput), naming the option. One type, so `--seed -1` or `--interval
    1e308` get the same answer from every command."""

    def __init__(self, lo=None, hi=None, *, whole: bool = False, lo_open: bool = False, unit: str = ""):
        self.lo, self.hi, self.whole, self.lo_open, self.unit = lo, hi, whole, lo_open, unit
        self.name = "integer" if whole else "number"

    def convert(self, value, param, ctx):
        from ..numparse import parse_real, parse_whole
        from ..errors import BadInput
        what = param.opts[0] if param is not None and getattr(param, "opts", None) else "value"
        try:
            if self.whole:
                return parse_whole(value, what, self.lo, self.hi)
            return parse_real(value, what, self.lo, self.hi, lo_open=self.lo_open, unit=self.unit)
        except BadInput as e:
            if ctx is None:         # called outside click (pressure.gather): the library's error
                raise
            # a usage error: exit 2 with the `--help` pointer, UNKNOWN under pressure --check
            raise click.UsageError(str(e), ctx) from None


# limits shared by every command that has the option
INTERVAL = Number(0.1, 86400.0, unit="seconds")   # pressure, top, exporter: sampling/refresh/write
SEED = Number(0, 2**63 - 1, whole=True)           # suggest, simulate (quiz parses its own, same rule)
TOP = Number(0, 1_000_000, whole=True)


def json_option(f):
    return click.option("--json", "json_out", is_flag=True, help="Print JSON (keys documented in docs/json.md).")(f)


def check_netns(ctx, param, value):
    """click callback for every --netns (single or repeated): a blank value is bad input,
    never "this host"."""
    from ..netns import check_spec
    if value is None:
        return None
    if isinstance(value, tuple):
        return tuple(check_spec(v) for v in value)
    return check_spec(value)


def nonblank(ctx, param, value):
    """click callback: an option given with an empty or blank value is bad input, never
    "not given" (`--web-config "$CFG"` with CFG unset must not serve without auth)."""
    if value is None:
        return None
    for v in value if isinstance(value, tuple) else (value,):     # repeated options too
        if not str(v).replace(",", " ").strip():
            from ..errors import BadInput
            raise BadInput(f"{param.opts[0]} needs a value, got {v!r} (leave the option out instead)")
    return value


def netns_option(f):
    return click.option("--netns", metavar="NAME|pid:PID", callback=check_netns,
                        help="Network namespace: a name from `ip netns list` or pid:PID.")(f)


def want_json(json_out: bool) -> bool:
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root().obj if ctx else None
    return bool(json_out or (root or {}).get("json"))


def netns_of(netns: str | None) -> str | None:
    ctx = click.get_current_context(silent=True)
    root = (ctx.find_root().obj if ctx else None) or {}
    outer = root.get("netns")
    if netns and outer and netns != outer:
        from ..errors import BadInput
        raise BadInput(f"two namespaces given: --netns {outer} before the command and --netns {netns} after it")
    return netns or outer


def verbose() -> bool:
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root().obj if ctx else None
    return bool((root or {}).get("verbose"))


def emit_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")
