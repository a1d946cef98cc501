#!/usr/bin/env bash
# Builds a JavaScript integration into a component with componentize-js (and
# rolldown to bundle it with @corral/guest), which it first installs (pinned)
# with npm into a folder of its own when missing.
#
#   build.sh --app <app.js> --sdk <dir holding @corral/guest's index.js> \
#            --wit <wit dir> --toolchain <folder> --out <x.wasm>
#
# Exit status 3 (and one line saying so) when node or npm is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
while [ $# -gt 0 ]; do
  case "$1" in
    --app) app=$2 ;;
    --sdk) sdk=$2 ;;
    --wit) wit=$2 ;;
    --toolchain) toolchain=$2 ;;
    --out) out=$2 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift 2
done
: "${app:?--app missing}" "${sdk:?--sdk missing}" "${wit:?--wit missing}" "${toolchain:?--toolchain missing}" "${out:?--out missing}"

# componentize-js 0.23.0 imports preview2-shim at run time but lists it only
# as a devDependency, so it is named here too.
packages='{"private":true,"dependencies":{"@bytecodealliance/componentize-js":"0.23.0","@bytecodealliance/preview2-shim":"0.17.9","rolldown":"1.3.4"}}'
if [ "$(cat "$toolchain/package.json" 2>/dev/null)" != "$packages" ] || [ ! -d "$toolchain/node_modules/rolldown" ]; then
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "cannot build $app: node and npm are missing (Node.js 20 or later)" >&2
    exit 3
  fi
  echo "installing componentize-js 0.23.0 and rolldown into $toolchain"
  mkdir -p "$toolchain"
  echo "$packages" > "$toolchain/package.json"
  (cd "$toolchain" && npm install --no-audit --no-fund --silent)
fi
cp "$here/build.mjs" "$toolchain/build.mjs"
mkdir -p "$(dirname "$out")"
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
sdk_index=$(abs "$sdk")/index.js wit_dir=$(abs "$wit") partial=$(abs "$out").partial app_file=$(abs "$app")
(cd "$toolchain" && node build.mjs --sdk "$sdk_index" --wit "$wit_dir" --out "$partial" "$app_file" >/dev/null)
mv "$out.partial" "$out"
echo "built $out ($(wc -c < "$out") bytes)"
