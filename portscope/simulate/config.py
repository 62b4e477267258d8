"""Workload files: YAML (PyYAML) or TOML (tomllib), keys named like the CLI options."""
from __future__ import annotations

from pathlib import Path

from ..errors import BadInput
from ..numparse import parse_real, parse_whole

ALGOS = ("linux", "linux-bind", "udp", "rfc6056-1", "rfc6056-2", "rfc6056-3", "rfc6056-4",
         "rfc6056-5", "sequential")
# the rate-only settings (lifetime, arrivals, TIME_WAIT, tw_reuse, loopback) default in
# the Workload: a --connects run without --rate refuses them when given
DEFAULTS = {"range": "32768-60999", "reserved": "", "listeners": "", "algorithm": "linux",
            "destinations": 1, "sources": 1, "seed": 0}

KEYS = ("range", "reserved", "listeners", "algorithm", "destinations", "sources", "connects",
        "rate", "arrivals", "lifetime", "duration", "time_wait", "tw_reuse", "tw_reuse_delay",
        "loopback", "socket_range", "udp_hash_size", "seed", "interval")


def load(path: str) -> dict:
    """The workload options in a file: TOML by a .toml suffix, else YAML (which JSON is too);
    keys as KEYS. BadInput for an unreadable file, bad syntax or an unknown key."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise BadInput(f"cannot read config {path}: {e.strerror}") from None
    suffix = p.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib
            data = tomllib.loads(raw.decode())
        else:
            import yaml
            data = yaml.safe_load(raw.decode())
    except Exception as e:  # parser errors differ per library; all mean bad input
        raise BadInput(f"cannot parse {path}: {str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BadInput(f"{path}: expected a mapping of option names to values")
    data = data.get("simulate", data) if isinstance(data.get("simulate"), dict) else data
    out = {}
    for k, v in data.items():
        key = str(k).replace("-", "_")
        if key not in KEYS:
            raise BadInput(f"{path}: unknown key {k!r} (known: {', '.join(KEYS)})")
        out[key] = v
    return out


def typed(o: dict) -> dict:
    """Config values arrive as strings or numbers; the workload wants its own types.
    Integers must be integers (1.5 is refused, not cut to 1); None means not given."""
    def opt(key):
        return "--" + key.replace("_", "-")

    # the range checks live in the Workload (shared with library callers); here only the
    # form: ASCII digits, no 1.5 cut to 1, no inf/nan from a YAML or TOML file
    def whole(key):
        v = o.get(key)
        if v is None or (isinstance(v, int) and not isinstance(v, bool)):
            return v
        if not isinstance(v, str):     # 1.5, 2.0 or true from a config file
            raise BadInput(f"{opt(key)}: expected a whole number, got {v!r}")
        return parse_whole(v, opt(key))

    def number(key):
        v = o.get(key)
        return None if v is None else parse_real(v, opt(key))

    out: dict[str, object] = {k: (str(o[k]) if o.get(k) is not None else None)
           for k in ("range", "reserved", "listeners", "algorithm", "arrivals", "socket_range")}
    out["reserved"] = out["reserved"] or ""
    out["listeners"] = out["listeners"] or ""
    if out["algorithm"] not in ALGOS:
        raise BadInput(f"unknown algorithm {out['algorithm']!r}; choose one of {', '.join(ALGOS)}")
    for k in ("destinations", "sources", "connects", "tw_reuse", "seed", "udp_hash_size"):
        out[k] = whole(k)
    for k in ("duration", "time_wait", "interval"):
        out[k] = number(k)
    out["tw_reuse_delay_ms"] = whole("tw_reuse_delay")
    lb = o.get("loopback")
    if isinstance(lb, str):
        if lb.strip().lower() not in ("true", "yes", "1", "false", "no", "0", ""):
            raise BadInput(f"--loopback: expected true or false, got {lb!r}")
        lb = lb.strip().lower() in ("true", "yes", "1")
    elif lb is not None and not isinstance(lb, bool):
        raise BadInput(f"--loopback: expected true or false, got {lb!r}")
    out["loopback"] = lb
    out["rate"] = o.get("rate")
    out["lifetime"] = o.get("lifetime")
    return out
