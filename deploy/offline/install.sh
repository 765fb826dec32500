#!/usr/bin/env bash
# Install the gateway from a wheelhouse (deploy/offline/build-wheelhouse.sh) into a virtual environment,
# with no network: pip looks only in the wheelhouse (--no-index), never at an index.
#
#   deploy/offline/install.sh WHEELHOUSE [VENV]
#
#   WHEELHOUSE  the directory build-wheelhouse.sh wrote (wheels, requirements.txt, SHA256SUMS)
#   VENV        where to install (default: $EDGEGW_VENV, else /opt/edgegw/venv, where the systemd units
#               in deploy/ look for /opt/edgegw/venv/bin/edgegw)
#
# Environment: PYTHON (default python3) creates the venv; it must be the Python version the wheelhouse
# was built for (Debian: apt install python3-venv).  Run again with a newer wheelhouse to upgrade in place
# (then `systemctl restart edgegw`).  Needs no root unless VENV is somewhere only root may write.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 WHEELHOUSE [VENV]" >&2; exit 2; }
WHEELHOUSE="$(cd "$1" && pwd)"
VENV="${EDGEGW_VENV:-/opt/edgegw/venv}"
VENV="${2:-$VENV}"
PYTHON="${PYTHON:-python3}"

echo "== checking $WHEELHOUSE against its SHA256SUMS"
(cd "$WHEELHOUSE" && sha256sum --check --quiet --strict SHA256SUMS)

want="$(cut -d- -f1 <<<"$(ls "$WHEELHOUSE" | grep -m1 -E '^edgegw-.*\.whl$')")"
[ "$want" = edgegw ] || { echo "install: no edgegw wheel in $WHEELHOUSE" >&2; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# no index at all, and no pip.conf of the box adding one
export PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
echo "== installing from $WHEELHOUSE (no index)"
"$VENV/bin/python" -m pip install --quiet --no-index --find-links "$WHEELHOUSE" --only-binary=:all: \
  --upgrade -r "$WHEELHOUSE/requirements.txt"
"$VENV/bin/python" -m pip check
echo "== installed: $("$VENV/bin/edgegw" --version) in $VENV"
echo "   next: $VENV/bin/edgegw check -c /etc/edgegw/gateway.toml"
