#!/usr/bin/env python3
"""Regenerate portscope/data/iana-services.tsv.gz, the offline IANA port registry.

Sources (either one):
  --csv PATH        IANA's service-names-port-numbers.csv (the full registry: also
                    Unassigned/Reserved rows, range rows, service-name-only rows)
                    https://www.iana.org/assignments/service-names-port-numbers/service-names-port-numbers.csv
  --services PATH   Debian libwireshark-data's copy, /usr/share/wireshark/services
                    (services(5) format, assignments only; the default)

  .venv/bin/python scripts/build_registry.py [--csv FILE | --services FILE] [-o OUT]
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


def build(csv_path: str | None, services_path: str | None, out: str) -> registry.Registry:
    path = csv_path or services_path or DEBIAN_SERVICES
    with open(path, encoding="utf-8") as f:
        text = f.read()
    rows = registry.parse_iana_csv(text, path) if csv_path else registry.parse_services(text, path)
    if not rows:
        raise PortscopeError(f"{path}: no registry rows found")
    meta = {
        "source": "iana-csv" if csv_path else "debian-wireshark-services",
        "source_sha256": hashlib.sha256(text.encode()).hexdigest()[:16],
        "source_date": dt.datetime.fromtimestamp(os.stat(path).st_mtime, dt.timezone.utc).date().isoformat(),
        "rows": len(rows),
    }
    registry.write_data(rows, out, meta)
    return registry.read_data(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--csv", help="the IANA CSV")
    src.add_argument("--services", help=f"a services(5) file (default {DEBIAN_SERVICES})")
    ap.add_argument("-o", "--output", default=registry.DATA_FILE)
    a = ap.parse_args(argv)
    try:
        reg = build(a.csv, a.services, a.output)
    except (OSError, PortscopeError) as e:
        print(f"build_registry: error: {e}", file=sys.stderr)
        return 2
    by_proto = {p: sum(1 for s in reg.services if p in s.protos) for p in registry.PROTOCOLS}
    print(f"wrote {a.output}: {len(reg)} rows, {len(reg.tuples())} (name, port, proto) tuples, "
          f"{os.path.getsize(a.output)} bytes; rows per protocol {by_proto}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
