# Sourced by tests/run.sh: Azurite, Microsoft's Azure Storage emulator, for the
# tests of the registry's Azure Blob Storage file store. Installs azurite from
# npm into target/azurite when missing, starts its blob service in memory on a
# free loopback port, exports its blob endpoint (with the emulator's account)
# as CORRAL_TEST_AZURITE, and `stop_azurite` (run by the caller's trap) stops
# it. Without npm it says so in one line and the Azurite tests skip (CI=true
# makes them fail instead).

AZURITE_VERSION=3.37.0

start_azurite() {
  if [ -n "${AZURITE_PID:-}" ] && kill -0 "$AZURITE_PID" 2>/dev/null; then return 0; fi
  local prefix=target/azurite bin=target/azurite/node_modules/.bin/azurite-blob
  if [ ! -x "$bin" ] || ! grep -q "\"version\": \"$AZURITE_VERSION\"" "$prefix/node_modules/azurite/package.json" 2>/dev/null; then
    if ! command -v npm >/dev/null; then
      echo "tests/run.sh: npm is missing, so Azurite cannot be installed: the Azurite tests will skip"
      return 0
    fi
    echo "tests/run.sh: installing azurite $AZURITE_VERSION from npm into $prefix"
    mkdir -p "$prefix"
    npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" >/dev/null \
      || { echo "tests/run.sh: npm could not install azurite"; return 1; }
  fi
  AZURITE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/corral-azurite.XXXXXX")
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$bin" --silent --inMemoryPersistence --blobHost 127.0.0.1 --blobPort "$port" --skipApiVersionCheck \
    >"$AZURITE_DIR/azurite.log" 2>&1 &
  AZURITE_PID=$!
  local tries=0
  until python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; do
    tries=$((tries + 1))
    if [ "$tries" -gt 300 ] || ! kill -0 "$AZURITE_PID" 2>/dev/null; then
      echo "tests/run.sh: Azurite did not start:"; cat "$AZURITE_DIR/azurite.log"; return 1
    fi
    sleep 0.1
  done
  export CORRAL_TEST_AZURITE="http://127.0.0.1:$port/devstoreaccount1"
  echo "tests/run.sh: Azurite $AZURITE_VERSION on 127.0.0.1:$port (CORRAL_TEST_AZURITE)"
}

stop_azurite() {
  if [ -n "${AZURITE_PID:-}" ]; then
    kill "$AZURITE_PID" 2>/dev/null || true
    wait "$AZURITE_PID" 2>/dev/null || true
    AZURITE_PID=
  fi
  if [ -n "${AZURITE_DIR:-}" ]; then rm -rf "$AZURITE_DIR"; AZURITE_DIR=; fi
}
