#!/usr/bin/env bash
# Installs (if missing) and starts a real AMQP 1.0 broker for shadowbridge's tests: RabbitMQ from
# Debian with the rabbitmq_amqp1_0 plugin, bound to 127.0.0.1 only, plus Debian's
# python3-qpid-proton (the independent AMQP client of the interop test). Idempotent: run it as
# often as you like; a running broker is left alone. Production uses Apache Artemis
# (deployments/artemis/), which cannot be installed here.
#
# Environment: SHADOWBRIDGE_TEST_AMQP_PORT (5672), SHADOWBRIDGE_TEST_AMQP_ADMIN_PORT (15672).
set -euo pipefail

PORT="${SHADOWBRIDGE_TEST_AMQP_PORT:-5672}"
ADMIN_PORT="${SHADOWBRIDGE_TEST_AMQP_ADMIN_PORT:-15672}"
QUEUES=(shadowbridge-test-requests shadowbridge-test-confirmations)

log() { echo "test-broker: $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

missing=()
command -v rabbitmq-server >/dev/null 2>&1 || missing+=(rabbitmq-server)
/usr/bin/python3 -c 'import proton' >/dev/null 2>&1 || missing+=(python3-qpid-proton)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    log "missing ${missing[*]}; run as root, or: sudo apt-get install -y ${missing[*]}"
    exit 1
  fi
  log "installing ${missing[*]}"
  # Debian starts services on install; we start the broker ourselves, bound to loopback.
  created_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if ((created_policy)); then rm -f /usr/sbin/policy-rc.d; fi
fi

if ! port_open "$PORT"; then
  conf_dir=/etc/rabbitmq
  mkdir -p "$conf_dir"
  cat >"$conf_dir/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$PORT
management.tcp.ip = 127.0.0.1
management.tcp.port = $ADMIN_PORT
loopback_users.guest = true
CONF
  # The AMQP listener, epmd and the Erlang distribution port all stay on loopback.
  cat >"$conf_dir/rabbitmq-env.conf" <<'ENV'
NODE_IP_ADDRESS=127.0.0.1
SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
ENV
  rabbitmq-plugins enable --offline rabbitmq_amqp1_0 rabbitmq_management >/dev/null
  log "starting RabbitMQ on 127.0.0.1:$PORT"
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 ERL_EPMD_ADDRESS=127.0.0.1
  # Debian's wrapper drops to the rabbitmq user when started as root.
  rabbitmq-server -detached >/dev/null 2>&1 || true
  for _ in $(seq 1 120); do
    port_open "$PORT" && port_open "$ADMIN_PORT" && break
    sleep 0.5
  done
  rabbitmqctl -q await_startup >/dev/null 2>&1 || true
fi
port_open "$PORT" || { log "broker did not open 127.0.0.1:$PORT"; exit 1; }

for _ in $(seq 1 60); do
  curl -fsS -u guest:guest "http://127.0.0.1:$ADMIN_PORT/api/overview" >/dev/null 2>&1 && break
  sleep 0.5
done
for q in "${QUEUES[@]}"; do
  curl -fsS -u guest:guest -X PUT -H 'content-type: application/json' \
    -d '{"durable":true}' "http://127.0.0.1:$ADMIN_PORT/api/queues/%2F/$q" >/dev/null
done
log "ready: amqp://guest:guest@127.0.0.1:$PORT (addresses /amq/queue/<name>), admin http://127.0.0.1:$ADMIN_PORT"
