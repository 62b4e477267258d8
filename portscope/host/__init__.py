"""How this host hands out ports: one backend per OS behind one result type.

`facts()` is the facade: it picks the backend for the running OS (Linux live,
or the one named by `os_name`, fed with recorded command output in tests).
Only the running OS's backend is imported (the others parse command output with
patterns, and `import re` alone costs a fifth of an empty interpreter's start-up);
`from portscope.host import bsd` imports one where it is wanted.
"""
from __future__ import annotations

import sys

from ..errors import Unsupported
from ._common import (
    FileWrite,
    HostFacts,
    NamedRange,
    NamedSet,
    Plan,
    Result,
    SocketFacts,
    Step,
    iana_comparison,
)

__all__ = ["HostFacts", "NamedRange", "NamedSet", "Plan", "Step", "FileWrite", "Result", "SocketFacts",
           "facts", "host_facts", "current_os", "iana_comparison", "as_dict"]


def current_os() -> str:
    """The backend name for the running OS: "linux", "darwin", "freebsd", "windows" (else sys.platform)."""
    p = sys.platform
    if p.startswith("linux"):
        return "linux"
    if p == "darwin":
        return "darwin"
    if p.startswith("freebsd"):
        return "freebsd"
    if p.startswith("win"):
        return "windows"
    return p


def host_facts(netns: str | None = None) -> HostFacts:
    """Host facts of the running system (Linux: of `netns` when given)."""
    osname = current_os()
    if osname == "linux":
        from . import linux
        return linux.read_facts(netns)
    if netns:
        raise Unsupported("--netns is available on Linux only")
    if osname in ("darwin", "freebsd"):
        from . import bsd
        return bsd.read_facts(osname)
    if osname == "windows":
        from . import windows
        return windows.read_facts()
    raise Unsupported(f"unsupported operating system: {osname}")


facts = host_facts      # the older name, kept for existing callers


def as_dict(f: HostFacts) -> dict:
    """The `portscope range --json` shape (documented in docs/range.md); same as `f.to_json()`."""
    return f.to_json()
