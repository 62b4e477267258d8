"""Persistence: the sysctl.conf-style files a setting is kept in across reboots.

Linux keeps portscope's settings in one drop-in under /etc/sysctl.d (applied at boot by
systemd-sysctl or `sysctl --system`); macOS and FreeBSD in /etc/sysctl.conf; Windows needs
none (netsh changes persist). Every other line of an edited file is kept as it was, and
the file is replaced atomically.
"""
from __future__ import annotations

import os
from typing import Iterable

from ..errors import BadInput, Unsupported
from ..fsutil import atomic_write, check_writable_dir
from ._common import FileWrite, read_text

SYSCTL_DIR_ENV = "PORTSCOPE_SYSCTL_DIR"
DEFAULT_SYSCTL_DIR = "/etc/sysctl.d"
DROPIN_NAME = "90-portscope.conf"
BSD_SYSCTL_CONF = "/etc/sysctl.conf"


def sysctl_dir(override: str | None = None) -> str:
    """Where Linux drop-ins go: the override, $PORTSCOPE_SYSCTL_DIR, or /etc/sysctl.d."""
    return override or os.environ.get(SYSCTL_DIR_ENV) or DEFAULT_SYSCTL_DIR


def line_key(line: str) -> str | None:
    """The dotted key a sysctl.d line sets (slashes read as dots); None for blanks and comments."""
    s = line.strip()
    if not s or s[0] in "#;" or "=" not in s:
        return None
    k = s.split("=", 1)[0].strip().lstrip("-")   # "-key = v" means "ignore errors" to systemd
    return k.replace("/", ".")


def edit_conf(text: str | None, settings: dict[str, str], sep: str = " = ") -> str:
    """Set keys in a sysctl.conf-style text, keeping every other line as it was."""
    lines = (text or "").splitlines()
    if text is None:
        lines = ["# Written by portscope (`portscope range set/reserve ... --persist`).",
                 "# Applied at boot by systemd-sysctl / `sysctl --system`."]
    done: set[str] = set()
    out = []
    for ln in lines:
        k = line_key(ln)
        if k in settings:
            if k in done:
                continue           # drop duplicates: the last one would win and confuse readers
            out.append(f"{k}{sep}{settings[k]}")
            done.add(k)
        else:
            out.append(ln)
    out.extend(f"{k}{sep}{v}" for k, v in settings.items() if k not in done)
    return "\n".join(out) + "\n"


def restore_file(path: str, old: str | None) -> None:
    """Put a file back as it was (None: it did not exist)."""
    if old is None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    else:
        atomic_write(path, old)


def later_overrides(directory: str, ours: str, keys: Iterable[str]) -> list[str]:
    """Other drop-ins sorting after ours that set the same keys (they win at boot)."""
    keys = set(keys)
    found: list[str] = []
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".conf"))
    except OSError:
        return found
    for n in names:
        if n <= ours:
            continue
        text = read_text(os.path.join(directory, n)) or ""
        hit = sorted({k for k in map(line_key, text.splitlines()) if k in keys})
        if hit:
            found.append(f"{os.path.join(directory, n)} also sets {', '.join(hit)} and is applied after "
                         f"{ours}, so it wins at boot")
    return found


def persist_plan(osname: str, netns: str | None, settings: dict[str, str],
                 directory: str | None) -> tuple[FileWrite, list[str]]:
    """The file write that keeps `settings` across reboots, and warnings about later files."""
    if netns:
        raise BadInput("--persist cannot be combined with --netns: files under /etc/sysctl.d are applied "
                       "at boot to the host's namespace, not to a named or container namespace")
    if osname == "linux":
        d = sysctl_dir(directory)
        path = os.path.join(d, DROPIN_NAME)
        sep = " = "
    elif osname in ("darwin", "freebsd"):
        path = directory and os.path.join(directory, "sysctl.conf") or BSD_SYSCTL_CONF
        d = os.path.dirname(path)
        sep = "="
    else:
        raise Unsupported(f"--persist is not needed on {osname}: netsh changes are persistent")
    check_writable_dir(d, "persist in")
    old = read_text(path)
    fw = FileWrite(path, old, edit_conf(old, settings, sep))
    warnings = later_overrides(d, os.path.basename(path), settings) if osname == "linux" else []
    return fw, warnings
