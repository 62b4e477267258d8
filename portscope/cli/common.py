"""Pieces every command shares: --json/--netns options and output."""
from __future__ import annotations

import json
import sys
from typing import Any, Callable, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def json_option(f: F) -> F:
    """Decorator: the command's --json flag (passed as `json_out`)."""
    return click.option("--json", "json_out", is_flag=True, help="Print JSON (keys documented in docs/json.md).")(f)


def netns_option(f: F) -> F:
    """Decorator: the command's --netns option (passed as `netns`)."""
    return click.option("--netns", metavar="NAME|pid:PID",
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
