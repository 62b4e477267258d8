#!/usr/bin/env python3
"""Regenerate portscope/data/iana-services.tsv.gz, the offline IANA port registry.

Sources (one, or both merged):
  --csv PATH        IANA's service-names-port-numbers.csv (the full registry: also
                    Unassigned/Reserved rows, range rows, service-name-only rows)
                    https://www.iana.org/assignments/service-names-port-numbers/service-names-port-numbers.csv
  --services PATH   Debian libwireshark-data's copy, /usr/share/wireshark/services
                    (services(5) format, assignments only; the default when --csv is not given)
  --csv PATH --services PATH
                    the CSV, plus every (name, port, proto) of the services file the CSV
                    lacks (a copy taken on another day has assignments the other lacks)
  --csv-origin TEXT where the CSV came from, recorded in the header (no spaces), e.g.
                    pypi:avsos==0.0.9
  --services-origin TEXT
                    the same for the services file; for the default path it is read
                    from dpkg (debian:libwireshark-data=VERSION) when not given

The shipped file is built with both (see docs/port.md, "The offline registry"):

  .venv/bin/python scripts/build_registry.py --csv service-names-port-numbers.csv \\
      --services /usr/share/wireshark/services --csv-origin pypi:avsos==0.0.9

  .venv/bin/python scripts/build_registry.py [--csv FILE] [--services FILE] [--csv-origin TEXT] [-o OUT]
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from portscope import registry  # noqa: E402
from portscope.errors import PortscopeError  # noqa: E402

DEBIAN_SERVICES = "/usr/share/wireshark/services"


def _read(path: str) -> str:
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _mtime_date(path: str) -> str:
    return dt.datetime.fromtimestamp(os.stat(path).st_mtime, dt.timezone.utc).date().isoformat()


def debian_origin(path: str) -> str | None:
    """debian:PACKAGE=VERSION of the installed package that owns `path`, if dpkg knows it."""
    import subprocess

    try:
        owner = subprocess.run(["dpkg-query", "-S", path], capture_output=True, text=True, timeout=10)
        pkg = owner.stdout.split(":", 1)[0].strip() if owner.returncode == 0 else ""
        if not pkg or "," in pkg or " " in pkg:
            return None
        ver = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True,
                             timeout=10)
        return f"debian:{pkg}={ver.stdout.strip()}" if ver.returncode == 0 and ver.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def _check_origin(flag: str, value: str | None) -> None:
    if value is not None and (not value or any(c.isspace() for c in value)):
        raise PortscopeError(f"{flag} must be one word without spaces, got {value!r}")


def build(csv_path: str | None, services_path: str | None, out: str,
          csv_origin: str | None = None, services_origin: str | None = None) -> registry.Registry:
    _check_origin("--csv-origin", csv_origin)
    _check_origin("--services-origin", services_origin)
    if not csv_path and not services_path:
        services_path = DEBIAN_SERVICES
    meta: dict = {}
    rows: list = []
    if csv_path:
        text = _read(csv_path)
        rows = registry.parse_iana_csv(text, csv_path)
        if not rows:
            raise PortscopeError(f"{csv_path}: no registry rows found")
        meta.update(csv_sha256=_sha(text), csv_date=registry.iana_csv_date(text) or "unknown")
        if csv_origin:
            meta["csv_origin"] = csv_origin
    if services_path:
        text = _read(services_path)
        extra = registry.parse_services(text, services_path)
        if not extra:
            raise PortscopeError(f"{services_path}: no registry rows found")
        meta.update(services_sha256=_sha(text), services_date=_mtime_date(services_path))
        origin = services_origin or (debian_origin(os.path.realpath(services_path))
                                     if os.path.realpath(services_path) == os.path.realpath(DEBIAN_SERVICES)
                                     else None)
        if origin:
            meta["services_origin"] = origin
        if rows:
            rows, added = registry.merge_services(rows, extra)
            meta["services_added"] = added
        else:
            rows = extra
    meta = {"source": "+".join(s for s, p in (("iana-csv", csv_path), ("debian-wireshark-services", services_path))
                               if p), **meta, "rows": len(rows)}
    registry.write_data(rows, out, meta)
    return registry.read_data(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", help="the IANA CSV")
    ap.add_argument("--services", help=f"a services(5) file (default {DEBIAN_SERVICES} when --csv is not given)")
    ap.add_argument("--csv-origin", help="where the CSV came from (recorded in the data file's header)")
    ap.add_argument("--services-origin", help="where the services file came from (default: asked of dpkg "
                                              f"for {DEBIAN_SERVICES})")
    ap.add_argument("-o", "--output", default=registry.DATA_FILE)
    a = ap.parse_args(argv)
    try:
        reg = build(a.csv, a.services, a.output, a.csv_origin, a.services_origin)
    except (OSError, PortscopeError) as e:
        print(f"build_registry: error: {e}", file=sys.stderr)
        return 2
    by_proto = {p: sum(1 for s in reg.services if p in s.protos) for p in registry.PROTOCOLS}
    by_status = {st: sum(1 for s in reg.services if s.status == st)
                 for st in (registry.ASSIGNED, registry.RESERVED, registry.UNASSIGNED)}
    print(f"wrote {a.output}: {len(reg)} rows, {len(reg.tuples())} (name, port, proto) tuples, "
          f"{os.path.getsize(a.output)} bytes; rows per protocol {by_proto}; rows per status {by_status}; "
          f"header {' '.join(f'{k}={v}' for k, v in reg.meta.items())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
