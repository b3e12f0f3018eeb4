#!/bin/sh
# The Kafka principals and ACLs of one flights-app deployment, made by Kafka's own tools as a super user.
#
# docker-compose.yml's kafka-setup service runs it in the apache/kafka image against the brokers'
# internal TLS listener (mutual TLS with the brokers' certificate); the embedded broker runs it with
# its own jars (FLIGHTS_EMBEDDED_BROKER_SASL=1). Running it again changes nothing.
#
#   KAFKA_TOOLS         directory of kafka-configs.sh and kafka-acls.sh (default /opt/kafka/bin)
#   SETUP_BOOTSTRAP     host:port list of a listener the tools log in to as a super user (default: the
#                       hosts of FLIGHTS_BROKER on the internal listener's port 9094)
#   SETUP_CONFIG        the tools' client config; unset: one for mutual TLS is written from
#                       SETUP_KEYSTORE (a PEM key and certificate) and SETUP_TRUSTSTORE (the CA, PEM)
#   SETUP_PASSWORDS     directory of kafka-<user>-password files: each user there is given that SCRAM
#                       password (admin, worker, dashboard); unset: no user is made (the embedded
#                       broker makes them when it formats its storage)
#   FLIGHTS_APP_ID, FLIGHTS_TOPIC_PREFIX   the app's settings of the same names
#
# The ACLs: the worker owns the app's topics (their prefix, or "flight-" without one), its changelogs
# and internal topics (the app id) and its consumer group, and may create topics; the dashboard may
# read the three output topics it shows and nothing else; the admin is a super user (the brokers'
# config). Anyone else, and no login, gets nothing.
set -eu

TOOLS=${KAFKA_TOOLS:-/opt/kafka/bin}
APP_ID=${FLIGHTS_APP_ID:-flights-app}
PREFIX=${FLIGHTS_TOPIC_PREFIX:-}
BOOTSTRAP=${SETUP_BOOTSTRAP:-$(printf '%s' "${FLIGHTS_BROKER:-kafka://kafka-1:9092;kafka-2:9092;kafka-3:9092}" \
  | sed -E -e 's|kafka://||' -e 's|;|,|g' -e 's/:[0-9]+(,|$)/:9094\1/g')}
MECHANISM=SCRAM-SHA-512

umask 077  # the files below hold secrets
credential=$(mktemp)
trap 'rm -f "$credential"' EXIT
if [ -z "${SETUP_CONFIG:-}" ]; then
  SETUP_CONFIG=$(mktemp)
  trap 'rm -f "$credential" "$SETUP_CONFIG"' EXIT
  printf '%s\n' security.protocol=SSL ssl.keystore.type=PEM "ssl.keystore.location=${SETUP_KEYSTORE:?}" \
    ssl.truststore.type=PEM "ssl.truststore.location=${SETUP_TRUSTSTORE:?}" > "$SETUP_CONFIG"
fi

# Each of Kafka's tools, as the super user. The cluster may still be starting: the first call is
# tried for up to 5 minutes.
ready=
run() {  # run NAME ARGS...
  name=$1; shift
  "$TOOLS/$name" --bootstrap-server "$BOOTSTRAP" --command-config "$SETUP_CONFIG" "$@"
}
tool() {  # tool NAME ARGS...
  if [ -n "$ready" ]; then
    run "$@"
    return
  fi
  answer=$(mktemp)
  tries=0
  until run "$@" > "$answer" 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge 60 ]; then
      echo "kafka-setup: no answer from Kafka at $BOOTSTRAP as the super user after 5 minutes:" >&2
      tail -n 5 "$answer" >&2
      exit 1
    fi
    sleep 5
  done
  cat "$answer"
  rm -f "$answer"
  ready=1
}

if [ -n "${SETUP_PASSWORDS:-}" ]; then
  for user in admin worker dashboard; do
    file="$SETUP_PASSWORDS/kafka-$user-password"
    [ -r "$file" ] || { echo "kafka-setup: cannot read $file (make secrets writes it)" >&2; exit 1; }
    password=$(cat "$file")
    case "$password" in
      "" | *,* | *=*) echo "kafka-setup: $file: a password must not be empty nor hold ',' or '='" >&2; exit 1 ;;
    esac
    # Through a file (printf is the shell's own): a password never shows in a process's arguments.
    printf '%s=iterations=8192,password=%s\n' "$MECHANISM" "$password" > "$credential"
    tool kafka-configs.sh --alter --entity-type users --entity-name "$user" --add-config-file "$credential" \
      > /dev/null
    echo "kafka-setup: $MECHANISM login of $user set"
  done
fi

topics=${PREFIX:-flight-}
tool kafka-acls.sh --add --force --allow-principal User:worker --operation All \
  --resource-pattern-type prefixed --topic "$topics" --topic "$APP_ID-" --group "$APP_ID" > /dev/null
tool kafka-acls.sh --add --force --allow-principal User:worker --operation Create --operation Describe \
  --operation DescribeConfigs --operation IdempotentWrite --cluster > /dev/null
tool kafka-acls.sh --add --force --allow-principal User:dashboard --operation Read --operation Describe \
  --topic "${PREFIX}flight-processed-data" --topic "${PREFIX}flight-aggregated-data" \
  --topic "${PREFIX}flight-invalid-data" > /dev/null
echo "kafka-setup: ACLs of $APP_ID set (the worker: topics $topics* and $APP_ID-*, group $APP_ID; the dashboard: its three output topics)"
