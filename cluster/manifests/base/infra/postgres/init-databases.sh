#!/bin/bash
# Database per service: one role and one database for each service that keeps relational state.
# Runs once, when the data directory is first initialised (docker-entrypoint-initdb.d).
set -euo pipefail
for service in user order payment inventory notification; do
  password="$(cat "/run/secrets/cloudmart-db/PASSWORD_${service^^}")"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v role="$service" -v password="$password" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"role" OWNER :"role";
SQL
done
