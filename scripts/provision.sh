#!/usr/bin/env bash
# Installs and starts, on loopback, what the test suite needs and the machine lacks: the Docker engine,
# PostgreSQL, MariaDB, Redis and a Docker registry, from Debian's packages. Then makes sure the test logins
# in FN_TEST_POSTGRES_URL, FN_TEST_MYSQL_URL and FN_TEST_REDIS_URL (defaults in scripts/test-env.sh) work,
# also beside servers that were already running with their owner's users.
#
# Idempotent: each service is installed only when missing and started only when not answering. Each login
# is checked with a real query as the test user (a server that answers `ping` may still refuse the login);
# when that fails, the user is created, or repaired (password, grants) if this script created it before.
# Users it did not create are never changed: it stops with a message saying what to fix instead. Created
# users carry a marker named `fnrs-provisioned`: the PostgreSQL role's comment, a grant on a (nonexistent)
# MariaDB database of that name, a Redis ACL selector on keys of that name that allows no command (Redis 7).
#
# Settings (environment): the three URLs; FN_PROVISION_SERVICES, the services to handle (default: all of
# "docker postgres mariadb redis registry"); FN_PROVISION_PG_SOCKET_DIR (default /var/run/postgresql) and
# FN_PROVISION_MYSQL_SOCKET (default /run/mysqld/mysqld.sock), where the administrator (OS user postgres,
# MariaDB's root over its socket) reaches the servers to create users.
set -euo pipefail
. "$(dirname "$0")/test-env.sh"

: "${FN_PROVISION_SERVICES:=docker postgres mariadb redis registry}"
: "${FN_PROVISION_PG_SOCKET_DIR:=/var/run/postgresql}"
: "${FN_PROVISION_MYSQL_SOCKET:=/run/mysqld/mysqld.sock}"
MARKER=fnrs-provisioned

log() { printf '[provision] %s\n' "$*" >&2; }
fail() { log "ERROR: $*"; exit 1; }
wants() { [[ " $FN_PROVISION_SERVICES " == *" $1 "* ]]; }
is_loopback() { [[ $1 == 127.0.0.1 || $1 == localhost || $1 == ::1 ]]; }

APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  log "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

wait_for() { # wait_for DESCRIPTION COMMAND...
  local what=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  log "$what did not come up"; return 1
}

# A user name safe to splice into SQL and ACL commands as is.
check_user_name() { [[ $1 =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || fail "$2: test user name '$1' must be letters, digits and _"; }

if ! command -v curl >/dev/null 2>&1; then apt_install curl ca-certificates; fi

# --- Docker engine -------------------------------------------------------------------------
provision_docker() {
  if ! command -v dockerd >/dev/null 2>&1; then apt_install docker.io; fi
  if ! docker info >/dev/null 2>&1; then
    log "starting dockerd"
    mkdir -p /var/log
    nohup dockerd >/var/log/dockerd.log 2>&1 &
    wait_for "dockerd" docker info
  fi
}

# --- PostgreSQL ----------------------------------------------------------------------------
pg_lit() { printf "'%s'" "${1//\'/\'\'}"; } # a string literal (standard_conforming_strings)

pg_login_ok() { # the test role logs in and may create databases
  [ "$(cd / && PGPASSWORD=$URL_PASS PGCONNECT_TIMEOUT=5 psql -X -w -h "$URL_HOST" -p "$URL_PORT" -U "$URL_USER" \
       -d postgres -Atqc "SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user" 2>/dev/null)" = t ]
}

pg_admin() { # SQL on stdin, as the OS user postgres over the local socket
  (cd / && runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -h "$FN_PROVISION_PG_SOCKET_DIR" -p "$URL_PORT" -d postgres -Atq)
}

provision_postgres() {
  url_parts "$FN_TEST_POSTGRES_URL" 5432
  if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    apt_install postgresql
  fi
  if ! pg_isready -h "$URL_HOST" -p "$URL_PORT" -q 2>/dev/null && is_loopback "$URL_HOST"; then
    local ver
    ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
    if ! pg_lsclusters -h | grep -q "^$ver main"; then pg_createcluster "$ver" main >/dev/null; fi
    log "starting postgresql $ver"
    pg_ctlcluster "$ver" main start || true
    wait_for "postgresql" pg_isready -h "$URL_HOST" -p "$URL_PORT" -q
  fi
  if pg_login_ok; then return 0; fi
  local where="PostgreSQL at $URL_HOST:$URL_PORT" user=$URL_USER
  check_user_name "$user" "$where"
  is_loopback "$URL_HOST" || fail "$where refuses the test login as $user and is not on this machine: create that role there"
  local state query="SELECT CASE WHEN NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$user') THEN 'absent'
      WHEN (SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = '$user') = '$MARKER'
      THEN 'ours' ELSE 'theirs' END"
  state=$(pg_admin <<<"$query") || fail "$where: cannot reach it as the OS user postgres over $FN_PROVISION_PG_SOCKET_DIR"
  case $state in
    absent)
      log "$where: creating the test role $user"
      pg_admin >/dev/null <<SQL
CREATE ROLE "$user" LOGIN CREATEDB PASSWORD $(pg_lit "$URL_PASS");
COMMENT ON ROLE "$user" IS '$MARKER';
SQL
      ;;
    ours)
      log "$where: repairing the test role $user (login, password, CREATEDB)"
      pg_admin >/dev/null <<<"ALTER ROLE \"$user\" LOGIN CREATEDB PASSWORD $(pg_lit "$URL_PASS");"
      ;;
    *) fail "$where refuses the login in FN_TEST_POSTGRES_URL, and role $user was not created by this script, so it is left alone: fix its password (and CREATEDB), or point FN_TEST_POSTGRES_URL at another role" ;;
  esac
  pg_login_ok || fail "$where still refuses $user after provisioning: does pg_hba.conf allow password logins from $URL_HOST?"
}

# --- MariaDB -------------------------------------------------------------------------------
my_lit() { local s=${1//\\/\\\\}; printf "'%s'" "${s//\'/\\\'}"; }

my_login_ok() { # the test user logs in and may create (and drop) the tests' databases
  local db="fnt_provision_$$"
  MYSQL_PWD=$URL_PASS mysql --no-defaults --protocol=tcp --connect-timeout=5 -h "$URL_HOST" -P "$URL_PORT" \
    -u "$URL_USER" -e "CREATE DATABASE IF NOT EXISTS $db; DROP DATABASE $db" >/dev/null 2>&1
}

my_admin() { # SQL on stdin, as MariaDB's root over its socket
  mysql --no-defaults --protocol=socket -S "$FN_PROVISION_MYSQL_SOCKET" -u root -N -B
}

provision_mariadb() {
  url_parts "$FN_TEST_MYSQL_URL" 3306
  if ! command -v mariadbd >/dev/null 2>&1 && ! command -v mysqld >/dev/null 2>&1; then
    apt_install mariadb-server
  fi
  # `ping` answers whether the server is up, even when it refuses the login: right here, not below.
  local ping=(mysqladmin --no-defaults --protocol=tcp -h "$URL_HOST" -P "$URL_PORT" ping)
  if ! "${ping[@]}" >/dev/null 2>&1 && is_loopback "$URL_HOST"; then
    log "starting mariadb"
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    nohup mysqld_safe --bind-address=127.0.0.1 --port="$URL_PORT" >/var/log/mariadb-start.log 2>&1 &
    wait_for "mariadb" "${ping[@]}"
  fi
  if my_login_ok; then return 0; fi
  local where="MariaDB at $URL_HOST:$URL_PORT" user=$URL_USER hosts=(localhost 127.0.0.1) h states=()
  check_user_name "$user" "$where"
  is_loopback "$URL_HOST" || fail "$where refuses the test login as $user and is not on this machine: create that user there"
  # An account of that name on any other host is the owner's too: new local ones would shadow it.
  local others query="SELECT COUNT(*) FROM mysql.user WHERE User = '$user' AND Host NOT IN ('localhost', '127.0.0.1')"
  others=$(my_admin <<<"$query") || fail "$where: cannot reach it as root over $FN_PROVISION_MYSQL_SOCKET"
  [ "$others" = 0 ] ||
    fail "$where refuses the login in FN_TEST_MYSQL_URL, and user '$user' has accounts this script did not create, so it is left alone: fix its password and grants, or point FN_TEST_MYSQL_URL at another user"
  for h in "${hosts[@]}"; do
    local state
    query="SELECT IF(NOT EXISTS (SELECT 1 FROM mysql.user WHERE User = '$user' AND Host = '$h'), 'absent',
      IF(EXISTS (SELECT 1 FROM mysql.db WHERE User = '$user' AND Host = '$h' AND Db = '$MARKER'), 'ours', 'theirs'))"
    state=$(my_admin <<<"$query") || fail "$where: cannot reach it as root over $FN_PROVISION_MYSQL_SOCKET"
    [ "$state" != theirs ] ||
      fail "$where refuses the login in FN_TEST_MYSQL_URL, and user '$user'@'$h' was not created by this script, so it is left alone: fix its password and grants, or point FN_TEST_MYSQL_URL at another user"
    states+=("$state")
  done
  local i sql=''
  for i in "${!hosts[@]}"; do
    local account="'$user'@'${hosts[$i]}'"
    if [ "${states[$i]}" = absent ]; then
      log "$where: creating the test user $account"
      sql+="CREATE USER $account IDENTIFIED BY $(my_lit "$URL_PASS"); GRANT SELECT ON \`$MARKER\`.* TO $account;"
    else
      log "$where: repairing the test user $account (password, grants)"
      sql+="ALTER USER $account IDENTIFIED BY $(my_lit "$URL_PASS");"
    fi
    # Only the tests' own databases (fresh ones named fnt_…), nothing else on the server.
    sql+="GRANT ALL ON \`fnt\\_%\`.* TO $account;"
  done
  my_admin <<<"$sql" >/dev/null
  my_login_ok || fail "$where still refuses $user after provisioning"
}

# --- Redis ---------------------------------------------------------------------------------
redis_login_ok() { # the test login (AUTH first when the URL has a password) may write a key
  local auth='' expect=OK
  if [ -n "$URL_PASS" ]; then auth="AUTH ${URL_USER:+$URL_USER }\"$URL_PASS\""$'\n'; expect=$'OK\nOK'; fi
  # An AUTH that fails does not end redis-cli's session, so each reply is checked, not the exit status.
  [ "$(redis-cli -h "$URL_HOST" -p "$URL_PORT" <<<"${auth}SET fnt:provision-check 1 EX 10" 2>/dev/null)" = "$expect" ]
}

redis_admin() { redis-cli -h "$URL_HOST" -p "$URL_PORT"; } # commands on stdin, as the default user

provision_redis() {
  url_parts "$FN_TEST_REDIS_URL" 6379
  if ! command -v redis-server >/dev/null 2>&1; then apt_install redis-server; fi
  if ! redis-cli -h "$URL_HOST" -p "$URL_PORT" ping >/dev/null 2>&1 && is_loopback "$URL_HOST"; then
    log "starting redis"
    redis-server --bind 127.0.0.1 --port "$URL_PORT" --daemonize yes --save '' >/dev/null
    wait_for "redis" redis-cli -h "$URL_HOST" -p "$URL_PORT" ping
  fi
  [[ $URL_PASS != *[[:space:]\"\\]* ]] || fail "Redis: the test password must not contain blanks, quotes or backslashes"
  if redis_login_ok; then return 0; fi
  local where="Redis at $URL_HOST:$URL_PORT" user=$URL_USER
  if [ -z "$user" ] || [ "$user" = default ]; then
    fail "$where refuses the test login as its default user, which this script does not change: put a user in FN_TEST_REDIS_URL (redis://fn:fn@$URL_HOST:$URL_PORT) to have it created"
  fi
  check_user_name "$user" "$where"
  local acl
  acl=$(redis_admin <<<"ACL GETUSER $user" 2>&1) || fail "$where: cannot administer it as the default user"
  case $acl in
    *NOAUTH* | *NOPERM* | *ERR*) fail "$where: cannot administer it as the default user ($acl)" ;;
    '') log "$where: creating the test user $user"
        redis_admin >/dev/null <<<"ACL SETUSER $user reset on \">$URL_PASS\" ~* &* +@all (~$MARKER)" ;;
    *"$MARKER"*) log "$where: repairing the test user $user (password, rights)"
        redis_admin >/dev/null <<<"ACL SETUSER $user reset on \">$URL_PASS\" ~* &* +@all (~$MARKER)" ;;
    *) fail "$where refuses the login in FN_TEST_REDIS_URL, and user $user was not created by this script, so it is left alone: fix it, or point FN_TEST_REDIS_URL at another user" ;;
  esac
  redis_login_ok || fail "$where still refuses $user after provisioning"
}

# --- A local Docker registry (for the agent's image-pull path) --------------------------------
provision_registry() {
  if ! command -v docker-registry >/dev/null 2>&1; then apt_install docker-registry; fi
  if ! curl -fs http://127.0.0.1:5000/v2/ >/dev/null 2>&1; then
    log "starting a docker registry on 127.0.0.1:5000"
    mkdir -p /var/lib/fn-test-registry
    cat > /etc/fn-test-registry.yml <<'YML'
version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/fn-test-registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5000
YML
    nohup docker-registry serve /etc/fn-test-registry.yml >/var/log/fn-test-registry.log 2>&1 &
    wait_for "docker registry" curl -fs http://127.0.0.1:5000/v2/
  fi
}

for service in docker postgres mariadb redis registry; do
  if wants "$service"; then "provision_$service"; fi
done
log "services ready"
