"""The `portscope` entry point: a few exact command lines run without click.

Importing click costs about four times an empty interpreter's start-up, more than `range`
or `port 80` do themselves. So the console script starts here, recognises a small set of
exact argv shapes (shape() below, each word exactly as written) and runs them through the
same functions the click commands call (front.views); every other command line, any extra
option, and any run with PORTSCOPE_NO_FAST set to a non-empty value goes to the click CLI
(portscope.cli.main) unchanged. Output, errors and exit codes are the click path's, byte
for byte (tests/test_fast_cli.py runs every shape both ways).
"""
from __future__ import annotations

import os
import sys

# typing's TYPE_CHECKING would import typing on every start-up; mypy honours any TYPE_CHECKING
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Sequence

HELP_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "help.txt")
HELP_COLUMNS = 80       # click lays --help out for min(columns, 80) - 2: from 80 columns on, one layout


def terminal_columns() -> int:
    """The terminal width as shutil.get_terminal_size() gives it to click (without importing shutil)."""
    def env(name: str) -> int:
        try:
            return int(os.environ[name])
        except (KeyError, ValueError):
            return 0
    columns, lines = env("COLUMNS"), env("LINES")
    if columns <= 0 or lines <= 0:
        try:
            size = os.get_terminal_size(sys.__stdout__.fileno())     # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            size = os.terminal_size((80, 24))
        if columns <= 0:
            columns = size.columns or 80
    return columns


def _help() -> None:
    with open(HELP_FILE, encoding="utf-8") as f:
        text = f.read()
    sys.stdout.write(text)
    sys.stdout.flush()


def _version() -> None:
    from .. import __version__
    sys.stdout.write(f"portscope, version {__version__}\n")     # click's version_option message
    sys.stdout.flush()


def _range(as_json: bool) -> Callable[[], None]:
    def run() -> None:
        from .views import range_show
        range_show(None, as_json)
    return run


def _port(target: str, as_json: bool) -> Callable[[], None]:
    def run() -> None:
        from .views import port_number
        port_number(target, None, None, True, as_json)
    return run


def _namespaces(as_json: bool) -> Callable[[], None]:
    def run() -> None:
        from .views import namespaces_show
        namespaces_show(as_json)
    return run


def _pressure(as_json: bool) -> Callable[[], None]:
    def run() -> None:
        from .views import pressure_show
        pressure_show(None, 20, None, None, False, as_json)     # the options' defaults
    return run


CONNS_PROTOS = ("tcp", "udp", "udplite", "sctp")       # cli/conns.py's PROTOS: every one by default


def _conns(flag: str | None) -> Callable[[], None]:
    def run() -> None:
        from . import views
        if flag == "--count":
            views.conns_count(CONNS_PROTOS, (4, 6), None, None, None, False)
        else:
            views.conns_rows(CONNS_PROTOS, (4, 6), None, None, None, process=False, count=False,
                             as_json=flag == "--json", csv_out=flag == "--csv", sort_key=None, limit=None,
                             select=views.RowFilter())
    return run


def shape(args: Sequence[str]) -> Callable[[], None] | None:
    """The function that runs `args` without click, or None when click must parse them."""
    n = len(args)
    if n == 0 or (n == 1 and args[0] in ("--help", "-h")):
        # bare `portscope` is the help too (cli.main); another width is another layout
        return _help if terminal_columns() >= HELP_COLUMNS else None
    if n == 1 and args[0] in ("-V", "--version"):
        return _version
    cmd, rest = args[0], list(args[1:])
    as_json = rest[-1:] == ["--json"]
    if as_json:
        rest.pop()
    if cmd == "range" and not rest:
        return _range(as_json)
    if cmd == "namespaces" and not rest:
        return _namespaces(as_json)
    if cmd == "pressure" and not rest:
        return _pressure(as_json)
    if cmd == "port" and len(rest) == 1 and rest[0].isascii() and rest[0].isdigit():
        return _port(rest[0], as_json)      # anything but plain digits (-1, +80, names) takes click's way
    if cmd == "conns" and not as_json and len(rest) <= 1 and (not rest or rest[0] in ("--csv", "--count")):
        return _conns(rest[0] if rest else None)
    if cmd == "conns" and as_json and not rest:
        return _conns("--json")
    return None


def main(argv: Sequence[str] | None = None) -> None:
    """The `portscope` console script: a fast shape runs here, anything else in portscope.cli.main;
    errors are the same one line and exit code either way (errors.py)."""
    args = sys.argv[1:] if argv is None else list(argv)
    # click's shell completion runs from its own main(), set up by this variable
    slow = os.environ.get("PORTSCOPE_NO_FAST") or "_PORTSCOPE_COMPLETE" in os.environ
    run = None if slow else shape(args)
    if run is None:
        from ..cli import main as click_main
        click_main(args)
        return
    from ..errors import PortscopeError
    try:
        run()
    except PortscopeError as e:
        from .views import echo
        echo(f"portscope: error: {e}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        from .views import echo
        echo("portscope: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        # the reader went away (`portscope conns | head`): a quiet exit 0, as the click path
        from .views import quiet_stdout
        quiet_stdout()
        sys.exit(0)
