#!/usr/bin/env bash
# Builds this guest into target/guests/polyglot/http_vms_py.wasm, installing
# componentize-py into target/toolchains/python first if needed.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
exec bash "$root/guest-sdk/python/build.sh" --app "$root/guests/http-vms-py" --sdk "$root/guest-sdk/python" \
  --wit "$root/wit" --toolchain "$root/target/toolchains/python" --out "$root/target/guests/polyglot/http_vms_py.wasm"
