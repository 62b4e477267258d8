#!/usr/bin/env bash
# Set up everything the test suite needs from nothing, then run it.
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian packages the tests use: ip/ss (iproute2), a real Prometheus + promtool,
# the Wireshark copy of the IANA registry (registry completeness), tmux (terminal tests)
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v ss >/dev/null || need+=(iproute2)
command -v prometheus >/dev/null || need+=(prometheus)
command -v tmux >/dev/null || need+=(tmux)
command -v systemd-analyze >/dev/null || need+=(systemd)
[ -f /usr/share/wireshark/services ] || need+=(libwireshark-data)
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
exec .venv/bin/python -m pytest -q -rs "$@"
