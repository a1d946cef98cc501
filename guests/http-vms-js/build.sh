#!/usr/bin/env bash
# Builds this guest into target/guests/polyglot/http_vms_js.wasm, installing
# componentize-js into target/toolchains/js first if needed.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
exec bash "$root/guest-sdk/js/build.sh" --app "$root/guests/http-vms-js/app.js" --sdk "$root/guest-sdk/js" \
  --wit "$root/wit" --toolchain "$root/target/toolchains/js" --out "$root/target/guests/polyglot/http_vms_js.wasm"
