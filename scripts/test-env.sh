# Sourced by the scripts that reach the test services: the services' URLs (each settable from the
# environment, defaults as below) and a splitter for them, so every address and login is written once.
# The PostgreSQL and MariaDB logins are the project's own test users (`fn`), which scripts/provision.sh
# creates when missing; Redis is reached as its default user unless the URL names one.

: "${FN_TEST_POSTGRES_URL:=postgres://fn:fn@127.0.0.1:5432}"
: "${FN_TEST_MYSQL_URL:=mysql://fn:fn@127.0.0.1:3306}"
: "${FN_TEST_REDIS_URL:=redis://127.0.0.1:6379}"
export FN_TEST_POSTGRES_URL FN_TEST_MYSQL_URL FN_TEST_REDIS_URL

# url_parts URL DEFAULT_PORT: sets URL_USER, URL_PASS (percent-decoded), URL_HOST and URL_PORT.
url_parts() {
  local rest=${1#*://} auth='' hostport
  rest=${rest%%/*}
  if [[ $rest == *@* ]]; then auth=${rest%@*}; hostport=${rest##*@}; else hostport=$rest; fi
  URL_USER=${auth%%:*}
  URL_PASS=''
  if [[ $auth == *:* ]]; then URL_PASS=${auth#*:}; fi
  URL_USER=$(printf '%b' "${URL_USER//%/\\x}")
  URL_PASS=$(printf '%b' "${URL_PASS//%/\\x}")
  URL_HOST=${hostport%:*}
  URL_PORT=$2
  if [[ $hostport == *:* ]]; then URL_PORT=${hostport##*:}; fi
}
