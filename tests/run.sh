#!/usr/bin/env bash
# Runs every test of the workspace. First it sets up the one thing cargo cannot:
# a Python virtual environment with azure-storage-blob, the outside reader that
# the upload's encryption is checked against (tests/interop/azure_decrypt.py).
# Then a private PostgreSQL cluster for the registry's PostgreSQL tests
# (tests/postgres.sh: installed from Debian when missing, stopped at the end)
# and Azurite for its Azure Blob Storage tests (tests/azurite.sh: from npm).
# The wasm32-wasip2 target is installed by the build itself when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/postgres.sh
source tests/azurite.sh
source tests/browser.sh
venv=target/interop-venv
if ! "$venv/bin/python" -c "import azure.storage.blob, cryptography, openapi_spec_validator, schemathesis" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check azure-storage-blob cryptography openapi-spec-validator schemathesis
fi
# The Python and JavaScript guests (toolchains into target/) build beside the
# Rust build: they need no cargo, and their installs mostly wait on the network.
bash tests/polyglot.sh &
polyglot=$!
# Build everything once. The suites that start `corral` as a process take the
# binary this build made (CORRAL_BIN), so that they never ask cargo again for a
# build with another feature set. Arguments after `--` are the tests' own.
# `cargo test` also builds the binary's own unit-test harness, under the same
# target name and in no fixed order: that one has `profile.test` set.
build_args=()
for arg in "$@"; do
  [ "$arg" = "--" ] && break
  build_args+=("$arg")
done
CORRAL_BIN=$(cargo test --workspace --no-run --message-format=json-render-diagnostics "${build_args[@]}" |
  python3 -c 'import json, sys
binaries = [m["executable"] for m in map(json.loads, sys.stdin)
            if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "corral"
            and "bin" in m["target"]["kind"] and m.get("executable")
            and not m["profile"]["test"]]
print(binaries[-1] if binaries else "")')
if [ -z "$CORRAL_BIN" ] || ! "$CORRAL_BIN" --version >/dev/null; then
  echo "tests/run.sh: the build named no runnable corral binary (CORRAL_BIN='$CORRAL_BIN')" >&2
  exit 1
fi
export CORRAL_BIN
wait "$polyglot" || { echo "tests/run.sh: the Python or JavaScript guests failed to build (see above)" >&2; exit 1; }
trap 'stop_postgres; stop_azurite' EXIT
start_postgres
start_azurite
cargo test --workspace "$@"
