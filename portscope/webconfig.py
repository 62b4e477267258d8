"""Old module path of `portscope.httpserver` (kept so existing imports keep working)."""
from .httpserver import *  # noqa: F401,F403
from .httpserver import load, parse_listen  # noqa: F401
