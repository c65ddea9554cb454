#!/usr/bin/env bash
# PostgreSQL for the production event store and its tests, idempotently:
# installs Debian's `postgresql` when absent, starts a cluster listening on 127.0.0.1 only,
# and creates the `tidings` role and database (password `tidings`; local development only).
# Matches the defaults of TIDINGS_POSTGRES_* in infra/settings.py.
set -euo pipefail

PGUSER_NAME="${TIDINGS_POSTGRES_USER:-tidings}"
PGPASS="${TIDINGS_POSTGRES_PASSWORD:-tidings}"
PGDB="${TIDINGS_POSTGRES_DBNAME:-tidings}"
PGPORT="${TIDINGS_POSTGRES_PORT:-5432}"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "postgres: installing PostgreSQL from Debian packages"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

version="$(pg_lsclusters -h | awk 'NR==1 {print $1}')"
cluster="$(pg_lsclusters -h | awk 'NR==1 {print $2}')"
if [ -z "$version" ]; then
  version="$(ls /usr/lib/postgresql | sort -n | tail -1)"
  cluster=main
  $SUDO pg_createcluster "$version" "$cluster" -p "$PGPORT" >/dev/null
fi
conf="/etc/postgresql/$version/$cluster/postgresql.conf"
if ! grep -q "^listen_addresses = '127.0.0.1'" "$conf"; then
  echo "listen_addresses = '127.0.0.1'" | $SUDO tee -a "$conf" >/dev/null
fi
status="$(pg_lsclusters -h | awk -v c="$cluster" '$2==c {print $4}')"
if [ "$status" != "online" ]; then
  echo "postgres: starting cluster $version/$cluster"
  $SUDO pg_ctlcluster "$version" "$cluster" start
fi

as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"
  elif [ "$(id -u)" -eq 0 ]; then su postgres -c "$(printf '%q ' "$@")"
  else sudo -u postgres "$@"; fi
}
for _ in $(seq 1 50); do
  as_postgres psql -qtAc "select 1" >/dev/null 2>&1 && break
  sleep 0.2
done
if [ "$(as_postgres psql -qtAc "select 1 from pg_roles where rolname='$PGUSER_NAME'")" != "1" ]; then
  as_postgres psql -qc "create role $PGUSER_NAME login password '$PGPASS'"
fi
if [ "$(as_postgres psql -qtAc "select 1 from pg_database where datname='$PGDB'")" != "1" ]; then
  as_postgres psql -qc "create database $PGDB owner $PGUSER_NAME"
fi
echo "postgres: ready on 127.0.0.1:$PGPORT (database $PGDB, role $PGUSER_NAME)"
