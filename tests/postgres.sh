# Sourced by tests/run.sh: a private PostgreSQL cluster for the tests of the
# registry's PostgreSQL state store. Installs Debian's PostgreSQL 15 when no
# server is installed, starts a cluster in a temporary folder as a non-root
# user (PostgreSQL refuses root) on a free loopback port, exports its URL as
# CORRAL_TEST_POSTGRES, and `stop_postgres` (run by the caller's trap) stops
# it and removes the folder.

pg_bindir() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/postgres" ]; then echo "$dir"; return; fi
  done
}

pg_as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u "$PG_OWNER" -- "$@"; else "$@"; fi
}

start_postgres() {
  local bin
  bin=$(pg_bindir)
  if [ -z "$bin" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "tests/run.sh: installing PostgreSQL 15 from Debian's packages"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
      bin=$(pg_bindir)
    fi
    if [ -z "$bin" ]; then
      if [ "${CI:-}" = true ]; then
        echo "tests/run.sh: CI=true and no PostgreSQL server could be installed (root apt-get of postgresql-15): the PostgreSQL tests must not skip in CI" >&2
        return 1
      fi
      echo "tests/run.sh: no PostgreSQL server and no root apt-get to install one: the PostgreSQL tests will skip"
      return 0
    fi
  fi
  PG_OWNER=$(id -un)
  if [ "$(id -u)" = 0 ]; then
    if getent passwd postgres >/dev/null; then PG_OWNER=postgres; else PG_OWNER=nobody; fi
  fi
  PG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/corral-pg.XXXXXX")
  chown "$PG_OWNER" "$PG_DIR"
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  pg_as_owner "$bin/initdb" -D "$PG_DIR/data" -U corral --auth=trust -E UTF8 >"$PG_DIR/initdb.log" 2>&1 \
    || { echo "tests/run.sh: initdb failed:"; cat "$PG_DIR/initdb.log"; return 1; }
  pg_as_owner "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_DIR -c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null \
    || { echo "tests/run.sh: PostgreSQL did not start:"; cat "$PG_DIR/server.log"; return 1; }
  PG_BIN=$bin
  export CORRAL_TEST_POSTGRES="postgres://corral@127.0.0.1:$port/postgres"
  echo "tests/run.sh: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (CORRAL_TEST_POSTGRES)"
}

stop_postgres() {
  if [ -n "${PG_DIR:-}" ] && [ -d "$PG_DIR/data" ]; then
    pg_as_owner "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PG_DIR"
  fi
}
