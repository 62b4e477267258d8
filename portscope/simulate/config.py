"""Workload files: YAML (PyYAML) or TOML (tomllib), keys named like the CLI options."""
from __future__ import annotations

from pathlib import Path

from ..errors import BadInput

KEYS = ("range", "reserved", "listeners", "algorithm", "destinations", "sources", "connects",
        "rate", "arrivals", "lifetime", "duration", "time_wait", "tw_reuse", "tw_reuse_delay",
        "loopback", "socket_range", "udp_hash_size", "seed", "interval")


def load(path: str) -> dict:
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
