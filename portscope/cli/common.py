"""Pieces every command shares: --json/--netns options and output."""
from __future__ import annotations

import json
import sys

import click


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
