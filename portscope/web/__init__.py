"""The exporter's page and `portscope report --html`: one self-contained HTML page (inline
CSS and JS, no network but GETs of its own JSON endpoint), rendered server-side from the web
document (data.py) so it reads without JavaScript. docs/web.md."""
from __future__ import annotations

from .data import WebView, build_document
from .hooks import HOOKS, PROVIDERS, register
from .render import render_html

__all__ = ["HOOKS", "PROVIDERS", "WebView", "build_document", "register", "render_html"]
