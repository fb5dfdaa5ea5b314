#!/usr/bin/env bash
# Tests scripts/provision.sh against throwaway PostgreSQL, MariaDB and Redis servers it starts on free
# loopback ports in a temporary directory (the shared servers on the default ports are not touched):
#   1. servers started without the test users (as on a machine where the owner runs them): the users
#      are created, the logins work, and the owner's users are unchanged;
#   2. a second run changes nothing;
#   3. test users it created, whose password and rights were broken since: repaired;
#   4. test users that the owner made and that work: used as they are, nothing changed;
#   5. test users that the owner made and that refuse the login: provisioning fails with a message and
#      leaves them alone.
# Prints one line per check and "provisioning test: PASS" or "FAIL"; exits non-zero on failure. Stops its
# servers and removes its directory whatever happens. Needs root (as provisioning does).
set -euo pipefail
cd "$(dirname "$0")/.."

T=$(mktemp -d "${TMPDIR:-/tmp}/fn-provision-test.XXXXXX")
chmod 755 "$T"
mkdir "$T/run-my" "$T/run-pg" "$T/pg" && chown mysql "$T/run-my" && chown postgres "$T/run-pg" "$T/pg"
MY_PID='' REDIS_PID='' PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
cleanup() {
  if [ -n "$MY_PID" ]; then kill "$MY_PID" 2>/dev/null || true; wait "$MY_PID" 2>/dev/null || true; fi
  if [ -n "$REDIS_PID" ]; then kill "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; fi
  if [ -f "$T/pg/postmaster.pid" ]; then
    (cd / && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$T/pg" -m immediate -w stop >/dev/null 2>&1) || true
  fi
  rm -rf "$T"
}
trap cleanup EXIT

FAILED=0
check() { # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@" >"$T/check.out" 2>&1; then echo "  ok    $what"; else
    echo "  FAIL  $what"; sed 's/^/        /' "$T/check.out"; FAILED=1
  fi
}
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
}
quiet() { # quiet LOG COMMAND...: runs COMMAND with its output in LOG, shown if it fails
  local log=$1; shift
  "$@" >"$log" 2>&1 || { cat "$log" >&2; echo "provisioning test: FAIL (setup: $*)"; exit 1; }
}
wait_until() { for _ in $(seq 1 100); do if "$@" >/dev/null 2>&1; then return 0; fi; sleep 0.2; done; "$@"; }

# --- throwaway servers -------------------------------------------------------------------------
MY_PORT=$(free_port) PG_PORT=$(free_port) REDIS_PORT=$(free_port)
quiet "$T/my-install.log" mariadb-install-db --no-defaults --datadir="$T/my" --user=mysql \
  --auth-root-authentication-method=socket --skip-test-db
mariadbd --no-defaults --datadir="$T/my" --user=mysql --port="$MY_PORT" --bind-address=127.0.0.1 \
  --socket="$T/run-my/sock" --pid-file="$T/run-my/pid" --log-error="$T/run-my/err" >"$T/my.log" 2>&1 &
MY_PID=$!
cd /
quiet "$T/pg-init.log" runuser -u postgres -- "$PG_BIN/initdb" -D "$T/pg" -U postgres --auth-local=peer \
  --auth-host=scram-sha-256
quiet "$T/pg-start.log" runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$T/pg" -l "$T/run-pg/log" -w \
  -o "-p $PG_PORT -k $T/run-pg -c listen_addresses=127.0.0.1" start
cd - >/dev/null
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --dir "$T" >"$T/redis.log" 2>&1 &
REDIS_PID=$!
wait_until mysqladmin --no-defaults -S "$T/run-my/sock" -u root ping
wait_until redis-cli -p "$REDIS_PORT" ping

# Administrator access, as the test sees it (not through the script under test).
my_root() { mysql --no-defaults -S "$T/run-my/sock" -u root -N -B -e "$1"; }
pg_root() { (cd / && runuser -u postgres -- psql -X -h "$T/run-pg" -p "$PG_PORT" -d postgres -Atq -v ON_ERROR_STOP=1 -c "$1"); }
redis_root() { redis-cli -p "$REDIS_PORT" "$@"; }

# Every account and its credentials and rights, on all three servers.
accounts() {
  my_root "SELECT User, Host, Priv FROM mysql.global_priv ORDER BY User, Host;
           SELECT User, Host, Db FROM mysql.db ORDER BY User, Host, Db"
  pg_root "SELECT rolname, rolpassword, rolcreatedb, rolcanlogin FROM pg_authid ORDER BY 1"
  redis_root ACL LIST
}
# The same, without the named user's entries.
accounts_but() { accounts | grep -v -w -e "$1" -e "user $1"; }

# Real logins, as the tests make them: create and drop a database, write a key.
my_login() {
  MYSQL_PWD=$2 mysql --no-defaults --protocol=tcp -h 127.0.0.1 -P "$MY_PORT" -u "$1" \
    -e "CREATE DATABASE fnt_provision_test; DROP DATABASE fnt_provision_test"
}
pg_login() {
  PGPASSWORD=$2 psql -X -w -h 127.0.0.1 -p "$PG_PORT" -U "$1" -d postgres -q \
    -c "CREATE DATABASE fnt_provision_test" -c "DROP DATABASE fnt_provision_test"
}
redis_login() {
  local out
  out=$(redis-cli -p "$REDIS_PORT" <<<"AUTH $1 $2"$'\n'"SET fnt:provision-test 1")
  [ "$out" = $'OK\nOK' ] || { echo "$out"; return 1; }
}
logins_work() { my_login "$@" && pg_login "$@" && redis_login "$@"; }
logins_refused() { ! my_login "$@" && ! pg_login "$@" && ! redis_login "$@"; }

provision() { # USER PASSWORD [SERVICES]: runs the script under test against the throwaway servers
  FN_PROVISION_SERVICES=${3:-postgres mariadb redis} FN_PROVISION_PG_SOCKET_DIR=$T/run-pg \
    FN_PROVISION_MYSQL_SOCKET="$T/run-my/sock" \
    FN_TEST_POSTGRES_URL="postgres://$1:$2@127.0.0.1:$PG_PORT" \
    FN_TEST_MYSQL_URL="mysql://$1:$2@127.0.0.1:$MY_PORT" \
    FN_TEST_REDIS_URL="redis://$1:$2@127.0.0.1:$REDIS_PORT" \
    bash scripts/provision.sh
}
fails_and_says() { # SERVICE USER PASSWORD: provisioning fails and says why
  local out
  if out=$(provision "$2" "$3" "$1" 2>&1); then echo "provisioning succeeded: $out"; return 1; fi
  echo "$out"
  [[ $out == *"left alone"* ]]
}
same() { [ "$1" = "$2" ] || { diff <(echo "$1") <(echo "$2"); return 1; }; }

echo "provisioning test (MariaDB :$MY_PORT, PostgreSQL :$PG_PORT, Redis :$REDIS_PORT in $T)"

# The owner's own users, which provisioning must never change.
my_root "CREATE USER 'owner'@'localhost' IDENTIFIED BY 'secret'; GRANT ALL ON *.* TO 'owner'@'localhost'"
pg_root "CREATE ROLE owner LOGIN SUPERUSER PASSWORD 'secret'"
redis_root ACL SETUSER owner on '>secret' '~*' '+@all' >/dev/null

echo "1. servers without the test users"
before=$(accounts)
check "the test logins are refused before provisioning" logins_refused fn fn
check "provisioning succeeds" provision fn fn
check "the test logins work" logins_work fn fn
check "no other account changed" same "$(echo "$before" | grep -v -w -e fn -e "user fn")" "$(accounts_but fn)"

echo "2. test users in place"
before=$(accounts)
check "provisioning succeeds" provision fn fn
check "nothing changed" same "$before" "$(accounts)"

echo "3. test users made by provisioning, since broken"
my_root "ALTER USER 'fn'@'localhost' IDENTIFIED BY 'broken'; ALTER USER 'fn'@'127.0.0.1' IDENTIFIED BY 'broken';
         REVOKE ALL ON \`fnt\\_%\`.* FROM 'fn'@'127.0.0.1'"
pg_root "ALTER ROLE fn NOCREATEDB PASSWORD 'broken'"
redis_root ACL SETUSER fn resetpass '>broken' >/dev/null
check "the test logins are refused" logins_refused fn fn
check "provisioning succeeds" provision fn fn
check "the test logins work again" logins_work fn fn

echo "4. test users the owner made, working"
my_root "CREATE USER 'mine'@'%' IDENTIFIED BY 'pw'; GRANT ALL ON *.* TO 'mine'@'%'"
pg_root "CREATE ROLE mine LOGIN CREATEDB PASSWORD 'pw'"
redis_root ACL SETUSER mine on '>pw' '~*' '+@all' >/dev/null
before=$(accounts)
check "provisioning succeeds" provision mine pw
check "nothing changed" same "$before" "$(accounts)"

echo "5. test users the owner made, refusing the login"
before=$(accounts)
for service in mariadb postgres redis; do
  check "$service: provisioning fails and says why" fails_and_says "$service" owner wrong
done
# An owner's account on another host only: no local account is added to shadow it.
my_root "CREATE USER 'remote'@'%' IDENTIFIED BY 'secret'"
check "mariadb: an account on another host only: provisioning fails and says why" fails_and_says mariadb remote wrong
check "nothing changed" same "$before" "$(accounts | grep -v -w remote)"
check "the owner's logins still work" logins_work owner secret

if [ "$FAILED" = 0 ]; then echo "provisioning test: PASS"; else echo "provisioning test: FAIL"; exit 1; fi
