#!/usr/bin/env bash
# Turn on TLS in the local test PostgreSQL (self-signed certificate), so the
# tests can show that a `?sslmode=require` URL works. Idempotent; CI-only helper.
set -euo pipefail
psql_admin() { psql -h 127.0.0.1 -U postgres -d postgres -Atqc "$1"; }

if [ "$(psql_admin 'SHOW ssl')" = "on" ]; then
  exit 0
fi
data_dir=$(psql_admin 'SHOW data_directory')
cert="$data_dir/bi_test_server.crt"
key="$data_dir/bi_test_server.key"
if [ ! -f "$cert" ]; then
  openssl req -new -x509 -days 3650 -nodes -subj "/CN=localhost" \
    -keyout "$key" -out "$cert" >/dev/null 2>&1
  chown postgres:postgres "$cert" "$key"
  chmod 600 "$key"
fi
psql_admin "ALTER SYSTEM SET ssl_cert_file = '$cert'"
psql_admin "ALTER SYSTEM SET ssl_key_file = '$key'"
psql_admin "ALTER SYSTEM SET ssl = on"
psql_admin "SELECT pg_reload_conf()" >/dev/null
sleep 1
echo "PostgreSQL TLS: $(psql_admin 'SHOW ssl')"
