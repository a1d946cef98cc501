#!/usr/bin/env bash
# Builds the Python and JavaScript guests (guests/http-vms-py, guests/http-vms-js)
# for the e2e suite, each with the toolchain its build script installs into
# target/toolchains/. Idempotent: a guest whose sources did not change since
# its last build is not built again. A missing tool (python3 with venv, node
# with npm) skips that guest with one line saying so, and the tests that need
# it say they skipped; under CI (CI=true) it is an error instead.
set -uo pipefail
cd "$(dirname "$0")/.."
out=target/guests/polyglot
mkdir -p "$out"
status=0
for guest in http-vms-py http-vms-js; do
  lang=${guest##*-}
  lang=${lang/py/python}
  wasm="$out/${guest//-/_}.wasm"
  stamp=$(cat "guests/$guest"/* "guest-sdk/$lang"/* "guest-sdk/$lang"/*/* wit/*.wit wit/deps/* 2>/dev/null | sha256sum | cut -c1-64)
  if [ -f "$wasm" ] && [ "$(cat "$wasm.inputs" 2>/dev/null)" = "$stamp" ]; then
    echo "polyglot: $wasm is up to date"
    continue
  fi
  started=$SECONDS
  bash "guests/$guest/build.sh"
  code=$?
  if [ $code -eq 0 ]; then
    echo "$stamp" > "$wasm.inputs"
    echo "polyglot: built $guest in $((SECONDS - started)) s"
  elif [ $code -eq 3 ] && [ "${CI:-}" != true ]; then
    echo "polyglot: SKIPPED $guest (a tool is missing, see above); its e2e tests will say they skipped"
  else
    echo "polyglot: building $guest FAILED (exit $code)" >&2
    status=1
  fi
done
exit $status
