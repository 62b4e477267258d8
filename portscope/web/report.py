"""`portscope report --html FILE`: the web view as one static file, data embedded."""
from __future__ import annotations

import os

from ..errors import BadInput
from ..fsutil import atomic_write
from ..pressure import PressureResult
from .data import build_document
from .render import render_html


def check_target(path: str) -> None:
    """A path the file can be written to, or one BadInput line (before any work is done)."""
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise BadInput(f"--html {path}: directory {d} does not exist")
    if os.path.isdir(path):
        raise BadInput(f"--html {path}: is a directory")


def write_html(res: PressureResult, path: str) -> None:
    """Render the PressureResult as the static page and write it atomically (a failure is
    one error naming the file and the cause, from fsutil)."""
    atomic_write(path, render_html(build_document(res, source="report")).encode())
