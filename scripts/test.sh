#!/usr/bin/env bash
# Set up everything the test suite needs from nothing, then run it.
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian packages the tests use: ip/ss (iproute2), a real Prometheus + promtool,
# the Wireshark copy of the IANA registry (registry completeness), tmux (terminal tests),
# chromium (the web view's browser tests, headless),
# conntrack + iptables + nftables (NAT tests)
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v ss >/dev/null || need+=(iproute2)
command -v nstat >/dev/null || need+=(iproute2)        # observe: counters vs nstat
command -v nsenter >/dev/null || need+=(util-linux)    # observe: nsenter, unshare, setpriv
command -v prometheus >/dev/null || need+=(prometheus)
# namespaces tests: unshare, lsns, nsenter, mount (util-linux / mount)
command -v lsns >/dev/null || need+=(util-linux)
command -v unshare >/dev/null || need+=(util-linux)
command -v mount >/dev/null || need+=(mount)
command -v tmux >/dev/null || need+=(tmux)
command -v systemd-analyze >/dev/null || need+=(systemd)
# conntrack/NAT ground truth (conntrack -L/-S/-C) and the NAT rules the tests install
command -v conntrack >/dev/null || need+=(conntrack)
command -v iptables-save >/dev/null || need+=(iptables)
command -v nft >/dev/null || need+=(nftables)
[ -f /usr/share/wireshark/services ] || need+=(libwireshark-data)
command -v chromium >/dev/null || need+=(chromium)
if ((${#need[@]})); then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || true
    apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "note: not root; missing Debian packages (${need[*]}): their tests will skip" >&2
  fi
fi
EXTRAS="[test]" bash scripts/setup.sh
# IANA's own registry CSV (inside PyPI's avsos 0.0.9, see docs/port.md): with it the
# registry test rebuilds the shipped data file byte for byte
iana=.venv/iana/service-names-port-numbers.csv
if [ ! -f "$iana" ]; then
  .venv/bin/python - "$iana" <<'PY' || echo "note: could not fetch the IANA CSV; the rebuild test will skip" >&2
import glob, os, subprocess, sys, tempfile, zipfile
dest = sys.argv[1]
with tempfile.TemporaryDirectory() as d:
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "avsos==0.0.9", "-d", d],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (whl,) = glob.glob(os.path.join(d, "*.whl"))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with zipfile.ZipFile(whl) as z, open(dest + ".tmp", "wb") as f:
        f.write(z.read("avsos/service-names-port-numbers.csv"))
    os.replace(dest + ".tmp", dest)
PY
fi
export PORTSCOPE_IANA_CSV="$PWD/$iana"
# lint and types first: configured in pyproject.toml ([tool.ruff], [tool.mypy]); the library only
.venv/bin/ruff check portscope
.venv/bin/mypy --no-error-summary
exec .venv/bin/python -m pytest -q -rs "$@"
