"""Numbers from user and kernel text: ASCII digits only, finite, in range, or one BadInput line.

Python's own int() and float() are too generous for a tool that writes kernel settings:
int("٤٠٠٠٠") is 40000, int("1_000") is 1000, float("1e308") * 5 is inf, and str.isdigit()
is true for "²", which int() then rejects with a traceback. Every port, range, count and
option value portscope parses goes through here (ports.py, host changes, the CLI's
numeric options, simulate configs), so the rules are the same everywhere.
"""
from __future__ import annotations

from .errors import BadInput

INF = float("inf")      # not math.inf: math is a C extension loaded from disk on every start-up's path

# digits and whole numbers are checked with str methods: every start-up parses a port, and
# `import re` costs a fifth of an empty interpreter's start-up; decimals compile this on first use
REAL_PATTERN = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_real = None
# a decimal string longer than this is not a count or a port; int() of a huge string is slow
MAX_DIGITS = 40
# seconds between samples, refreshes or writes: one rule for pressure, top and the exporter
INTERVAL_S = (0.1, 86400.0)


def _ascii_digits(s: str) -> bool:
    # among ASCII characters only 0-9 are digits (str.isdigit alone also takes "٤" and "²")
    return s.isascii() and s.isdigit()


def _whole(s: str) -> bool:
    return _ascii_digits(s[1:] if s[:1] in ("+", "-") else s)


def _decimal(s: str) -> bool:
    global _real
    if _real is None:
        import re
        _real = re.compile(REAL_PATTERN, re.ASCII)
    return _real.fullmatch(s) is not None


def is_digits(text: str) -> bool:
    """True for a non-empty run of ASCII digits 0-9 (no sign, no blanks, no other scripts)."""
    return isinstance(text, str) and len(text) <= MAX_DIGITS and _ascii_digits(text)


def is_whole(text: str) -> bool:
    """True for ASCII digits with an optional leading sign (+ or -), at most MAX_DIGITS long."""
    return isinstance(text, str) and len(text) <= MAX_DIGITS + 1 and _whole(text)


def is_decimal(text: str) -> bool:
    """True for an ASCII decimal: optional sign, digits, fraction and exponent (float() also
    takes "٣", "1_0", "inf" and "nan"; this does not)."""
    return isinstance(text, str) and len(text) <= 64 and _decimal(text)


def _span(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f"in {lo:g}..{hi:g}" if isinstance(lo, float) or isinstance(hi, float) else f"in {lo}..{hi}"
    if lo is not None:
        return f">= {lo:g}"
    if hi is not None:
        return f"<= {hi:g}"
    return ""


def parse_whole(text: object, what: str, lo: int | None = None, hi: int | None = None,
                *, signed: bool = True) -> int:
    """A whole number in lo..hi from an int or ASCII-digit text (a leading - or + only when
    `signed`; a refused sign still gets the range in its message)."""
    if isinstance(text, bool):
        raise BadInput(f"{what} must be a whole number, got {text!r}")
    if isinstance(text, int):
        v = text
    else:
        s = str(text).strip() if isinstance(text, str) else None
        if s is None or len(s) > MAX_DIGITS + 1 or not _whole(s):
            span = _span(lo, hi)
            raise BadInput(f"{what} must be a whole number{' ' + span if span else ''} written in "
                           f"digits 0-9, got {text!r}")
        if not signed and s[0] in "+-":
            span = _span(lo, hi)
            raise BadInput(f"{what} must be a whole number{' ' + span if span else ''} written in "
                           f"digits 0-9 only, got {text!r}")
        v = int(s)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        if lo == 0 and (hi is None or hi >= 1 << 62):
            raise BadInput(f"{what} must be a non-negative whole number, got {v}")
        raise BadInput(f"{what} must be a whole number {_span(lo, hi)}, got {v}")
    return v


def parse_real(text: object, what: str, lo: float | None = None, hi: float | None = None,
               *, lo_open: bool = False, unit: str = "") -> float:
    """A finite number in lo..hi (lo excluded when lo_open) from a number or decimal text
    (ASCII digits, optional sign, fraction and exponent; no inf, nan, 0x, _ or other scripts)."""
    if isinstance(text, bool):
        raise BadInput(f"{what} must be a number, got {text!r}")
    if isinstance(text, (int, float)):
        v = float(text) if not isinstance(text, int) or abs(text) < 1 << 1000 else INF
    else:
        s = text.strip() if isinstance(text, str) else None
        if s is not None and s.lower().lstrip("+-") in ("inf", "infinity", "nan"):
            above = f" above {lo:g}" if lo_open and lo is not None else ""
            raise BadInput(f"{what} must be a finite number{' of ' + unit if unit else ''}{above}, got {s}")
        if s is None or len(s) > 64 or not _decimal(s):
            raise BadInput(f"{what} must be a number written in digits 0-9, got {text!r}")
        v = float(s)
    u = f" {unit}" if unit else ""
    shown = text.strip() if isinstance(text, str) else text
    if v != v or v in (INF, -INF):      # nan or infinite (math.isfinite)
        above = f" above {lo:g}" if lo_open and lo is not None else ""
        raise BadInput(f"{what} must be a finite number{' of ' + unit if unit else ''}{above}, got {shown}")
    if (lo is not None and (v < lo or (lo_open and v == lo))) or (hi is not None and v > hi):
        if lo_open and hi is None:
            span = f"above {lo:g}"
        elif lo_open:
            span = f"in ({lo:g}, {hi:g}]"
        else:
            span = _span(None if lo is None else float(lo), None if hi is None else float(hi))
        raise BadInput(f"{what} must be {span}{u}, got {shown}")
    return v
