#!/usr/bin/env bash
# Builds a Python integration into a component with componentize-py, which it
# first installs (pinned) into a virtual environment of its own when missing.
#
#   build.sh --app <dir holding app.py> --sdk <dir holding corral_guest/> \
#            --wit <wit dir> --toolchain <venv dir> --out <x.wasm>
#
# Exit status 3 (and one line saying so) when Python 3 with venv is missing.
set -euo pipefail
componentize_py_version=0.25.1
while [ $# -gt 0 ]; do
  case "$1" in
    --app) app=$2 ;;
    --sdk) sdk=$2 ;;
    --wit) wit=$2 ;;
    --toolchain) venv=$2 ;;
    --out) out=$2 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift 2
done
: "${app:?--app missing}" "${sdk:?--sdk missing}" "${wit:?--wit missing}" "${venv:?--toolchain missing}" "${out:?--out missing}"

if ! "$venv/bin/componentize-py" --version 2>/dev/null | grep -qx "componentize-py $componentize_py_version"; then
  if ! python3 -c "import venv, ensurepip" 2>/dev/null; then
    echo "cannot build $app: python3 with the venv module is missing (e.g. apt-get install python3-venv)" >&2
    exit 3
  fi
  echo "installing componentize-py $componentize_py_version into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$componentize_py_version"
fi
mkdir -p "$(dirname "$out")"
"$venv/bin/componentize-py" -d "$wit" -w integration componentize app -p "$app" -p "$sdk" -o "$out.partial" >/dev/null
mv "$out.partial" "$out"
echo "built $out ($(wc -c < "$out") bytes)"
