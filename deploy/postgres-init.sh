#!/bin/sh
# First start of the postgres container (docker-entrypoint-initdb.d; compose.yaml mounts it):
# Teleroom's database and its two roles (docs/operations.md, "Database roles"):
#   teleroom_owner  owns the database and schema; migrations only  (TELEROOM_MIGRATION_DATABASE_URL)
#   teleroom_app    owns nothing; serves requests                  (DATABASE_URL)
# Their passwords are read from those two URLs in teleroom.env, so each is written once. Use
# URL-safe passwords (secrets.token_urlsafe), which need no percent-encoding in a URL.
# It runs once, on an empty data volume; to change a password later use ALTER ROLE.
set -eu

password() {  # postgresql://user:<password>@host:port/db -> <password>
    rest=${1#*://}
    rest=${rest%%@*}
    printf '%s' "${rest#*:}"
}

psql --set ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres \
    --set owner_password="$(password "$TELEROOM_MIGRATION_DATABASE_URL")" \
    --set app_password="$(password "$DATABASE_URL")" <<'SQL'
CREATE ROLE teleroom_owner LOGIN PASSWORD :'owner_password';
CREATE ROLE teleroom_app LOGIN PASSWORD :'app_password' NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
CREATE DATABASE teleroom OWNER teleroom_owner;
REVOKE ALL ON DATABASE teleroom FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE teleroom TO teleroom_app;
\connect teleroom
ALTER SCHEMA public OWNER TO teleroom_owner;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
-- btree_gist is trusted (the owner could create it), but a managed server may say otherwise.
CREATE EXTENSION IF NOT EXISTS btree_gist;
SQL
