#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine or a warm one.
#
# 1. Provisions what the tests need and the machine lacks (Docker engine, PostgreSQL, MariaDB, Redis from
#    Debian's packages, started on loopback; see scripts/provision.sh).
# 2. Builds the workspace once and runs every test: unit tests, the datastore conformance suite on SQLite,
#    PostgreSQL and MariaDB, the HTTP API tests, and the agent's tests against the real Docker engine.
#
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh -p shared`).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/provision.sh

# Reuse one target directory across clones of the repo (CI runs in a fresh clone on a warm machine).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/fn-rs/target}"
export FN_TEST_POSTGRES_URL="${FN_TEST_POSTGRES_URL:-postgres://postgres:postgres@127.0.0.1:5432}"
export FN_TEST_MYSQL_URL="${FN_TEST_MYSQL_URL:-mysql://fn:fn@127.0.0.1:3306}"
export FN_TEST_REDIS_URL="${FN_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
export RUST_BACKTRACE=1

# Throwaway databases and files that earlier runs' tests made (each test makes its own).
PGPASSWORD=postgres psql -h 127.0.0.1 -U postgres -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'fnt\_%'" |
  while read -r db; do PGPASSWORD=postgres psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE \"$db\"" >/dev/null; done
mysql -ufn -pfn -h 127.0.0.1 -N -e "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'fnt\_%'" |
  while read -r db; do mysql -ufn -pfn -h 127.0.0.1 -e "DROP DATABASE \`$db\`"; done
rm -rf "${TMPDIR:-/tmp}/fn-tests"

# Function images for the Docker tests are static binaries in FROM scratch images (no registry needed).
RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --locked \
  --target x86_64-unknown-linux-gnu -p test-functions
cargo build --workspace --all-targets --all-features --locked
cargo test --workspace --all-features --locked "$@"
