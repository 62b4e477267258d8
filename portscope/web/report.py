"""`portscope report --html FILE`: the web view as one static file, data embedded."""
from __future__ import annotations

import os

from ..errors import BadInput


def check_target(path: str) -> None:
    """A path the file can be written to, or one BadInput line (before any work is done)."""
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):
        raise BadInput(f"--html {path}: directory {d} does not exist")
    if os.path.isdir(path):
        raise BadInput(f"--html {path}: is a directory")


def write_html(res, path: str) -> None:
    """Render the PressureResult as the static page and write it atomically."""
    from ..fsutil import atomic_write
    from .data import build_document
    from .render import render_html

    page = render_html(build_document(res, source="report")).encode()
    try:
        atomic_write(path, page)
    except PermissionError as e:
        from ..errors import NotPermitted
        raise NotPermitted(f"--html {path}: cannot write: {e.strerror or e}")
    except OSError as e:
        raise BadInput(f"--html {path}: cannot write: {e.strerror or e}")
