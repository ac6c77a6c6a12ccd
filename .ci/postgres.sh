#!/usr/bin/env bash
# Installs (Debian packages) and starts a PostgreSQL server listening on loopback only,
# with a throwaway role and database for the multi-worker sweep test. Prints the URL.
set -euo pipefail
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >/dev/null
fi
version=$(pg_lsclusters -h | awk 'NR==1 {print $1}')
cluster=$(pg_lsclusters -h | awk 'NR==1 {print $2}')
if [ -z "$version" ]; then
  version=$(ls /usr/lib/postgresql | sort -n | tail -1)
  cluster=main
  pg_createcluster "$version" "$cluster" >&2
fi
# Loopback only: never listen on another interface.
confd=/etc/postgresql/$version/$cluster/conf.d
mkdir -p "$confd"
echo "listen_addresses = '127.0.0.1'" > "$confd/ncp_search_loopback.conf"
pg_ctlcluster "$version" "$cluster" start >&2 2>&1 || pg_ctlcluster "$version" "$cluster" restart >&2
port=$(pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1==v && $2==c {print $3}')
su postgres -c "psql -q -p $port -c \"DROP DATABASE IF EXISTS ncp_test\"" >&2
su postgres -c "psql -q -p $port -c \"DROP ROLE IF EXISTS ncp\"" >&2
su postgres -c "psql -q -p $port -c \"CREATE ROLE ncp LOGIN PASSWORD 'ncp'\"" >&2
su postgres -c "createdb -p $port -O ncp ncp_test" >&2
echo "postgresql+psycopg2://ncp:ncp@127.0.0.1:$port/ncp_test"
