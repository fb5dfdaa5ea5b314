#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine or a warm one.
#
# 1. Provisions what the tests need and the machine lacks (Docker engine, PostgreSQL, MariaDB, Redis from
#    Debian's packages, started on loopback, and their test logins; see scripts/provision.sh), and tests
#    that provisioning (scripts/test-provision.sh).
# 2. Checks formatting (rustfmt.toml), builds the workspace once, checks it with clippy (-D warnings), and
#    runs every test: unit tests, the datastore conformance suite on SQLite, PostgreSQL and MariaDB, the
#    HTTP API tests, the agent's tests against the real Docker engine, and the end-to-end tests with real
#    node processes.
#
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh -p shared`).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/test-env.sh # the services' URLs (FN_TEST_*_URL), exported for the tests
bash scripts/provision.sh
# Provisioning itself, against throwaway servers of its own (beside the ones provisioned above).
bash scripts/test-provision.sh

# Reuse one target directory across clones of the repo (CI runs in a fresh clone on a warm machine).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fn-rs/target}"
export RUST_BACKTRACE=1

# Throwaway databases and files that earlier runs' tests made (each test makes its own).
url_parts "$FN_TEST_POSTGRES_URL" 5432
export PGHOST=$URL_HOST PGPORT=$URL_PORT PGUSER=$URL_USER PGPASSWORD=$URL_PASS PGDATABASE=postgres
psql -X -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'fnt\_%' AND pg_get_userbyid(datdba) = current_user" |
  while read -r db; do psql -X -qc "DROP DATABASE \"$db\"" >/dev/null || echo "could not drop $db" >&2; done
unset PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE
url_parts "$FN_TEST_MYSQL_URL" 3306
my() { MYSQL_PWD=$URL_PASS mysql --no-defaults --protocol=tcp -h "$URL_HOST" -P "$URL_PORT" -u "$URL_USER" "$@"; }
my -N -e "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'fnt\_%'" |
  while read -r db; do my -e "DROP DATABASE \`$db\`" || echo "could not drop $db" >&2; done
rm -rf "${TMPDIR:-/tmp}/fn-tests"

# Function images for the Docker tests are static binaries in FROM scratch images (no registry needed).
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked \
  --target x86_64-unknown-linux-gnu -p test-functions
cargo fmt --all --check
cargo build --workspace --all-targets --all-features --locked
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
# Every test binary runs even when one fails, so a run reports all failures at once.
cargo test --workspace --all-features --locked --no-fail-fast "$@"
