#!/usr/bin/env bash
# Builds the Python and JavaScript guests the e2e suite runs (guests/http-vms-py,
# guests/http-vms-js, and the test guests tests/guests/crash-py, crash-js; and
# http-vms-py once more with `componentize-py --stub-wasi`, which the README
# says fits the engine's limits) into target/guests/polyglot/, each with the toolchain its SDK's build script
# installs into target/toolchains/. Idempotent: a guest whose sources did not
# change since its last build is not built again. A missing tool (python3 with
# venv, node with npm) skips that language's guests with one line saying so,
# and the tests that need them say they skipped; under CI (CI=true) it is an
# error instead.
set -uo pipefail
cd "$(dirname "$0")/.."
out=target/guests/polyglot
mkdir -p "$out"
status=0
build() { # <python|js> <folder> <app file>
  local lang=$1 dir=$2 app=$3 name wasm stamp started code
  name=$(basename "$dir")
  wasm="$out/${name//-/_}.wasm"
  stamp=$(cat "$dir"/* "guest-sdk/$lang"/* "guest-sdk/$lang"/*/* wit/*.wit wit/deps/* 2>/dev/null | sha256sum | cut -c1-64)
  if [ -f "$wasm" ] && [ "$(cat "$wasm.inputs" 2>/dev/null)" = "$stamp" ]; then
    echo "polyglot: $wasm is up to date"
    return
  fi
  started=$SECONDS
  bash "guest-sdk/$lang/build.sh" --app "$app" --sdk "guest-sdk/$lang" --wit wit \
    --toolchain "target/toolchains/$lang" --out "$wasm"
  code=$?
  if [ $code -eq 0 ]; then
    echo "$stamp" > "$wasm.inputs"
    echo "polyglot: built $name in $((SECONDS - started)) s"
  elif [ $code -eq 3 ] && [ "${CI:-}" != true ]; then
    echo "polyglot: SKIPPED $name (a tool is missing, see above); its e2e tests will say they skipped"
  else
    echo "polyglot: building $name FAILED (exit $code)" >&2
    status=1
  fi
}
build python guests/http-vms-py guests/http-vms-py
build js guests/http-vms-js guests/http-vms-js/app.js
build python tests/guests/crash-py tests/guests/crash-py
build js tests/guests/crash-js tests/guests/crash-js/app.js
# http-vms-py with --stub-wasi (more core instances than the normal build), by
# the componentize-py the Python builds above installed; e2e polyglot checks
# that `corral guests check` accepts it.
stub_wasi() {
  local wasm="$out/http_vms_py_stub_wasi.wasm" tool=target/toolchains/python/bin/componentize-py stamp started
  if [ ! -f "$out/http_vms_py.wasm" ] || [ ! -x "$tool" ]; then
    echo "polyglot: SKIPPED http-vms-py --stub-wasi (no Python build, see above)"
    return
  fi
  stamp=$(cat guests/http-vms-py/* guest-sdk/python/* guest-sdk/python/*/* wit/*.wit wit/deps/* "$tool" 2>/dev/null | sha256sum | cut -c1-64)
  if [ -f "$wasm" ] && [ "$(cat "$wasm.inputs" 2>/dev/null)" = "$stamp" ]; then
    echo "polyglot: $wasm is up to date"
    return
  fi
  started=$SECONDS
  if "$tool" -d wit -w integration componentize --stub-wasi app -p guests/http-vms-py -p guest-sdk/python \
    -o "$wasm.partial" >/dev/null && mv "$wasm.partial" "$wasm"; then
    echo "$stamp" > "$wasm.inputs"
    echo "polyglot: built http-vms-py --stub-wasi in $((SECONDS - started)) s"
  else
    echo "polyglot: building http-vms-py --stub-wasi FAILED" >&2
    status=1
  fi
}
stub_wasi
exit $status
