#!/usr/bin/env bash
# Build a wheelhouse: the gateway and every dependency as wheels for one target Python and architecture,
# to carry to an air-gapped edge box and install there with deploy/offline/install.sh (no network).
# Run it on a connected machine, in a checkout of the project; it uses the package index pip is
# configured with (a site mirror works the same way).
#
#   deploy/offline/build-wheelhouse.sh [-o DIR] [--python-version X.Y] [--arch ARCH] [--glibc X.Y]
#                                      [--extras demo] [--platform TAG]...
#
#   -o DIR              output directory (default: wheelhouse)
#   --python-version    target interpreter, e.g. 3.11 (default: the one running this script)
#   --arch              target machine: x86_64, aarch64, armv7l (default: this machine's)
#   --glibc             the target's glibc (`ldd --version`), e.g. 2.31 for Debian 11, 2.36 for Debian 12
#                       (default: this machine's); wheels built for any older glibc are accepted
#   --platform TAG      an explicit platform tag (repeatable), instead of --arch/--glibc
#   --extras LIST       extras of the gateway to include, comma-separated (e.g. demo)
#   --pure              a pure-Python gateway wheel even for this machine (no native build)
#
# Environment: PYTHON (default python3) is the interpreter whose pip does the work.
#
# The gateway's wheel carries the native build (its two hot loops compiled by mypyc, docs/benchmarks.md)
# when the target is this machine's Python and architecture (the default): it is then built here,
# for here, and tagged linux_<arch>.  For another target (--python-version, --arch, --glibc or
# --platform that differ), or with --pure or EDGEGW_PURE_PYTHON=1, the wheel is pure Python: same behaviour, slower
# pipeline.  (A native wheel that does not load on the target, e.g. an older glibc, falls back to
# the pure-Python code with a warning in the log.)
#
# Only binary wheels are taken (--only-binary=:all:): nothing is compiled on the edge box, and a
# dependency without a wheel for the target fails here, on the connected machine, not at the site.
# The output holds the wheels, requirements.txt (what install.sh installs) and SHA256SUMS (checked
# by install.sh before it installs anything, so a damaged USB copy is refused).
set -euo pipefail
PYTHON="${PYTHON:-python3}"
OUT=wheelhouse
PYVER=""
ARCH=""
GLIBC=""
EXTRAS=""
PURE="${EDGEGW_PURE_PYTHON:-}"
[ "$PURE" = 0 ] && PURE=""
PLATFORMS=()
while [ $# -gt 0 ]; do
  case "$1" in
    -o|--output) OUT="$2"; shift 2 ;;
    --python-version) PYVER="$2"; shift 2 ;;
    --arch) ARCH="$2"; shift 2 ;;
    --glibc) GLIBC="$2"; shift 2 ;;
    --platform) PLATFORMS+=("$2"); shift 2 ;;
    --extras) EXTRAS="$2"; shift 2 ;;
    --pure) PURE=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-wheelhouse: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

SRC="$(cd "$(dirname "$0")/../.." && pwd)"
[ -f "$SRC/pyproject.toml" ] || { echo "build-wheelhouse: no pyproject.toml in $SRC" >&2; exit 2; }
HERE_PYVER="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
# the native build is for this machine only: any other target gets the pure-Python wheel
other_target=""
[ -n "$PYVER" ] && [ "$PYVER" != "$HERE_PYVER" ] && other_target=1
[ -n "$ARCH" ] && [ "$ARCH" != "$(uname -m)" ] && other_target=1
[ ${#PLATFORMS[@]} -gt 0 ] && other_target=1
[ -n "$GLIBC" ] && [ "$GLIBC" != "$("$PYTHON" -c 'import platform; print(platform.libc_ver()[1])')" ] && other_target=1
if [ -z "$PURE" ] && [ -n "$other_target" ]; then
  echo "== the target is not this machine: a pure-Python gateway wheel (no native build)"
  PURE=1
fi
PYVER="${PYVER:-$HERE_PYVER}"
ARCH="${ARCH:-$(uname -m)}"
GLIBC="${GLIBC:-$("$PYTHON" -c 'import platform; print(platform.libc_ver()[1])')}"
if [ ${#PLATFORMS[@]} -eq 0 ]; then
  # manylinux_2_17 .. manylinux_2_<target glibc>, and the legacy alias manylinux2014 (= 2_17)
  case "$ARCH" in
    armv7l) PLATFORMS+=(linux_armv7l) ;;
    *) PLATFORMS+=("manylinux2014_$ARCH") ;;
  esac
  minor="${GLIBC#2.}"
  for m in $(seq 17 "$minor"); do PLATFORMS+=("manylinux_2_${m}_$ARCH"); done
fi
# a native gateway wheel is tagged linux_<arch> (built here, for here): the download must accept it
[ -z "$PURE" ] && PLATFORMS+=("linux_$ARCH")
platform_args=()
for p in "${PLATFORMS[@]}"; do platform_args+=(--platform "$p"); done

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
pip=("$PYTHON" -m pip --disable-pip-version-check)

echo "== the gateway as a wheel ($([ -n "$PURE" ] && echo "pure Python" || echo "native build, mypyc"))"
if [ -n "$PURE" ]; then
  EDGEGW_PURE_PYTHON=1 "${pip[@]}" wheel --quiet --no-deps --wheel-dir "$OUT" "$SRC"
else
  EDGEGW_PURE_PYTHON= "${pip[@]}" wheel --quiet --no-deps --wheel-dir "$OUT" "$SRC"
fi
wheel="$(ls -t "$OUT"/edgegw-*.whl | head -1)"
version="$(basename "$wheel" | cut -d- -f2)"
req="edgegw${EXTRAS:+[$EXTRAS]}==$version"
# the project's own wheel by path: never a same-named project from the index
direct="edgegw${EXTRAS:+[$EXTRAS]} @ file://$wheel"

echo "== its dependencies for Python $PYVER on ${PLATFORMS[*]}"
"${pip[@]}" download --quiet --only-binary=:all: --python-version "$PYVER" "${platform_args[@]}" \
  --dest "$OUT" "$direct"

echo "$req" > "$OUT/requirements.txt"
(cd "$OUT" && sha256sum -- *.whl requirements.txt > SHA256SUMS)
echo "== $(ls "$OUT"/*.whl | wc -l) wheels in $OUT for Python $PYVER ($ARCH); install with:"
echo "   deploy/offline/install.sh $OUT"
