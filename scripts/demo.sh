#!/usr/bin/env bash
# The README's demo command (`make demo`): a virtual environment, then the whole chain live.
# Extra arguments go to `edgegw demo`, e.g. `scripts/demo.sh --duration 30`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if [ ! -f .venv/.installed-demo ] || [ pyproject.toml -nt .venv/.installed-demo ]; then
  echo "== installing Python packages (first run only)"
  .venv/bin/pip install -q -e '.[demo]'
  touch .venv/.installed-demo
fi
exec .venv/bin/edgegw demo "$@"
