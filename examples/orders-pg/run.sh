#!/usr/bin/env bash
# Starts a private PostgreSQL (Debian's `postgresql` package) in a temp directory on a random
# loopback port, runs orders-pg twice against it (the second run sees the first one's order),
# then stops it and removes the directory. As root, the server runs as the `postgres` user:
# initdb and postgres refuse to run as root.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin="$(pg_config --bindir 2>/dev/null || true)"
if [ ! -x "$bin/initdb" ]; then
  bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
fi
if [ ! -x "$bin/initdb" ]; then
  echo "no PostgreSQL server binaries: apt-get install postgresql" >&2
  exit 1
fi

dir="$(mktemp -d)"
port=$((20000 + RANDOM % 20000))
as=()
if [ "$(id -u)" = 0 ]; then
  chown postgres "$dir"
  as=(runuser -u postgres --)
fi
stop() {
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT

"${as[@]}" "$bin/initdb" -D "$dir/data" -U cell -A trust -E UTF8 --locale=C --no-sync >/dev/null
"${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
  -o "-h 127.0.0.1 -p $port -k $dir" start >/dev/null

export DATABASE_URL="postgres://cell@127.0.0.1:$port/postgres"
echo "PostgreSQL at $DATABASE_URL"
cargo run -q -p orders-pg
cargo run -q -p orders-pg
