#!/usr/bin/env bash
# The README's test command (`make test`): installs what the tests need, then runs them.
#   - as root with apt: the Debian packages of the servers the tests start (mosquitto, InfluxDB 1.x,
#     VictoriaMetrics, socat, libmodbus; chromium and a CJK font for the status page test; systemd for
#     `systemd-analyze verify` of the units in deploy/, tests/test_deploy.py; libfaketime for the HIL
#     clock_step fault);
#   - a virtual environment in .venv with the project and its dev dependencies;
#   - the tests start and stop their own servers on 127.0.0.1 (tests/conftest.py, hil/services.py).
# Extra arguments go to pytest, e.g. `scripts/test.sh -k e2e`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
T0=$SECONDS

APT_PACKAGES=(mosquitto mosquitto-clients influxdb influxdb-client victoria-metrics socat mbpoll libmodbus-dev gcc
              chromium fonts-wqy-microhei systemd libfaketime)
need_apt=()
for bin in mosquitto influxd victoria-metrics socat mbpoll gcc chromium systemd-analyze; do
  command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || need_apt+=("$bin")
done
[ -e /usr/include/modbus/modbus.h ] || need_apt+=(libmodbus-dev)
# the HIL clock_step fault preloads libfaketime into the gateway (hil/campaign.py)
compgen -G "/usr/lib/*/faketime/libfaketimeMT.so.1" >/dev/null || need_apt+=(libfaketime)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing Debian packages (${need_apt[*]} missing)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
  else
    echo "WARNING: missing ${need_apt[*]}; run as root to install them. Tests that need them are skipped (failed under CI=true)."
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  python3 -m venv .venv
fi
# the native build (setup.py: mypyc compiles the kernels) is redone when a kernel's source changed
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ] || [ setup.py -nt .venv/.installed ] \
   || [ gateway/codec_kernel.py -nt .venv/.installed ] || [ pipelines/normalise_kernel.py -nt .venv/.installed ]; then
  echo "== installing Python packages"
  .venv/bin/pip install -q -e '.[dev]'
  .venv/bin/pip check
  touch .venv/.installed
fi
# node-opcua: the independent OPC UA server of the interop tests (hil/node_opcua, locked by package-lock.json)
if command -v npm >/dev/null 2>&1; then
  if [ ! -d hil/node_opcua/node_modules ] || [ hil/node_opcua/package-lock.json -nt hil/node_opcua/node_modules ]; then
    echo "== npm ci (hil/node_opcua)"
    (cd hil/node_opcua && npm ci --no-audit --no-fund --silent) && touch hil/node_opcua/node_modules
  fi
else
  echo "WARNING: npm missing; the node-opcua interop tests are skipped (failed under CI=true)."
fi
# node-snap7: the original Snap7 S7 server (C++) of the S7 interop tests (hil/node_snap7). Its install
# script is not run (prebuild-install would download a binary): node-gyp builds the addon from the Snap7
# source inside the package, against the installed node headers (g++, make, python3).
snap7_addon=hil/node_snap7/node_modules/node-snap7/build/Release/node_snap7.node
if command -v npm >/dev/null 2>&1 && { [ ! -f "$snap7_addon" ] || [ hil/node_snap7/package-lock.json -nt "$snap7_addon" ]; }; then
  echo "== npm ci and node-gyp build (hil/node_snap7)"
  node_gyp="$(npm root -g)/npm/node_modules/node-gyp/bin/node-gyp.js"
  nodedir="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
  (cd hil/node_snap7 && npm ci --no-audit --no-fund --silent --ignore-scripts \
     && cd node_modules/node-snap7 && node "$node_gyp" rebuild --nodedir="$nodedir" >/dev/null 2>&1) \
    || echo "WARNING: node-snap7 did not build; the Snap7 interop tests are skipped (failed under CI=true)."
fi
echo "== setup took $((SECONDS - T0)) s"

echo "== ruff"
.venv/bin/ruff check gateway drivers pipelines firmware_stubs hil tests
echo "== mypy"
.venv/bin/mypy
echo "== import layers (lint-imports)"
.venv/bin/lint-imports --no-cache
echo "== pytest"
set +e
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
[ $rc -eq 5 ] && { echo "FATAL: no tests collected"; exit 1; }
echo "== total $((SECONDS - T0)) s"
exit $rc
