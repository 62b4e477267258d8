#!/usr/bin/env bash
# Set up portscope in ./.venv from nothing (idempotent). Needs Python >= 3.11.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  for c in python3.13 python3.12 python3.11; do command -v $c >/dev/null && PY=$c && break; done
fi
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), "portscope needs Python >= 3.11"'
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
# pip's chatter goes to a log that is shown only when the install fails
# pip 25 and later write the `portscope` console script with `import sys` only (pypa/pip#13166);
# older pips' wrapper imports re first, which costs each command a third of an empty
# interpreter's start-up (README, Start-up)
if ! .venv/bin/python -m pip install -q --disable-pip-version-check "pip>=25" > .venv/pip.log 2>&1; then
  cat .venv/pip.log >&2
  exit 1
fi
if ! .venv/bin/python -m pip install -q --disable-pip-version-check \
     -e ".${EXTRAS:-}" --config-settings editable_mode=compat > .venv/pip.log 2>&1; then
  cat .venv/pip.log >&2
  exit 1
fi
# byte-compile now, as a regular (non-editable) install does: where PYTHONDONTWRITEBYTECODE
# is set, an editable install would otherwise recompile every module on every start (~30 ms)
.venv/bin/python -m compileall -q portscope >/dev/null
