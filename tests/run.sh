#!/usr/bin/env bash
# Runs every test of the workspace. First it sets up the one thing cargo cannot:
# a Python virtual environment with azure-storage-blob, the outside reader that
# the upload's encryption is checked against (tests/interop/azure_decrypt.py).
# The wasm32-wasip2 target is installed by the build itself when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/interop-venv
if ! "$venv/bin/python" -c "import azure.storage.blob, cryptography" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check azure-storage-blob cryptography
fi
exec cargo test --workspace "$@"
