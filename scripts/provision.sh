#!/usr/bin/env bash
# Installs and starts, on loopback, what the test suite needs and the machine lacks:
# the Docker engine, PostgreSQL, MariaDB, Redis and a Docker registry, from Debian's packages.
# Idempotent: each service is installed only when missing and started only when not answering.
# Writes the connection URLs it set up to target/test-env.sh for the test command to source.
set -euo pipefail

log() { printf '[provision] %s\n' "$*" >&2; }

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

if ! command -v curl >/dev/null 2>&1; then apt_install curl ca-certificates; fi

# --- Docker engine -------------------------------------------------------------------------
if ! command -v dockerd >/dev/null 2>&1; then apt_install docker.io; fi
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd"
  mkdir -p /var/log
  nohup dockerd >/var/log/dockerd.log 2>&1 &
  wait_for "dockerd" docker info
fi

# --- PostgreSQL ----------------------------------------------------------------------------
if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  apt_install postgresql
fi
if ! pg_isready -h 127.0.0.1 -q 2>/dev/null; then
  ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
  if ! pg_lsclusters -h | grep -q "^$ver main"; then pg_createcluster "$ver" main >/dev/null; fi
  log "starting postgresql $ver"
  pg_ctlcluster "$ver" main start || true
  wait_for "postgresql" pg_isready -h 127.0.0.1 -q
fi
su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null

# --- MariaDB -------------------------------------------------------------------------------
if ! command -v mariadbd >/dev/null 2>&1 && ! command -v mysqld >/dev/null 2>&1; then
  apt_install mariadb-server
fi
if ! mysqladmin --protocol=tcp -h 127.0.0.1 -ufn -pfn ping >/dev/null 2>&1; then
  if ! mysqladmin ping >/dev/null 2>&1; then
    log "starting mariadb"
    mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
    nohup mysqld_safe --bind-address=127.0.0.1 >/var/log/mariadb-start.log 2>&1 &
    wait_for "mariadb" mysqladmin ping
  fi
  mysql -e "CREATE USER IF NOT EXISTS 'fn'@'127.0.0.1' IDENTIFIED BY 'fn';
            CREATE USER IF NOT EXISTS 'fn'@'localhost' IDENTIFIED BY 'fn';
            GRANT ALL ON *.* TO 'fn'@'127.0.0.1'; GRANT ALL ON *.* TO 'fn'@'localhost'; FLUSH PRIVILEGES;"
fi

# --- Redis ---------------------------------------------------------------------------------
if ! command -v redis-server >/dev/null 2>&1; then apt_install redis-server; fi
if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
  log "starting redis"
  redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save '' >/dev/null
  wait_for "redis" redis-cli -h 127.0.0.1 ping
fi

# --- A local Docker registry (for the agent's image-pull path) --------------------------------
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

log "services ready"
