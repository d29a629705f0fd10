#!/usr/bin/env bash
# Apache ActiveMQ Artemis 2.40.0 for shadowbridge's tests: fetched from Maven Central with Maven's
# dependency plugin, one instance per NAME bound to 127.0.0.1 only (login required, no web
# console), its etc/broker.xml built from deployments/artemis/broker.xml.fragment (the file we
# ship to users) by merge-fragment.py. Idempotent: a running instance is left alone; an instance
# whose fragment or settings changed is made again.
#
#   test-broker.sh [start|stop|kill|status|url] [NAME]
#   test-broker.sh dist    install the tools and fetch the distribution; print its directory
#   test-broker.sh jms     build the JMS target system; print its class path
#
# NAME (default main): main  AMQP+CORE on 5673, TLS (amqps) on 5674, auto-creation of test queues
#                            except for addresses starting with "nocreate."
#                      crash 5675 (tests kill -9 it)
#                      primary / backup  5676 / 5677: a shared-store HA pair (same journal)
# kill is kill -9 of the broker's JVM (by its PID file), for crash tests; stop is a clean stop.
# start main also builds the JMS target system the tests use (deployments/artemis/jms-target).
# Environment: SHADOWBRIDGE_ARTEMIS_DIR (default ~/.cache/shadowbridge/artemis): distribution and
# instances. The test user is shadow/shadow; the TLS CA is $DIR/NAME/tls/ca.pem.
set -euo pipefail

VERSION=2.40.0
HERE="$(cd "$(dirname "$0")" && pwd)"
DIR="${SHADOWBRIDGE_ARTEMIS_DIR:-${HOME:-/root}/.cache/shadowbridge/artemis}"
DIST="$DIR/apache-artemis-$VERSION"
ACTION="${1:-start}"
NAME="${2:-main}"
USER_NAME=shadow
USER_PASS=shadow

case "$NAME" in
  main) PORT=5673 TLS_PORT=5674 ;;
  crash) PORT=5675 TLS_PORT= ;;
  primary) PORT=5676 TLS_PORT= ;;
  backup) PORT=5677 TLS_PORT= ;;
  *) echo "test-broker: unknown instance $NAME (main, crash, primary, backup)" >&2; exit 2 ;;
esac
INSTANCE="$DIR/$NAME"
PIDFILE="$INSTANCE/broker.pid"
LOG="$INSTANCE/log/console.log"

log() { echo "artemis-test-broker[$NAME]: $*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
running() { [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

install_tools() {
  local missing=()
  command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null 2>&1 || missing+=(maven)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
      log "missing ${missing[*]}; run as root, or: sudo apt-get install -y ${missing[*]}"
      exit 1
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

fetch() {
  [[ -x "$DIST/bin/artemis" ]] && return
  mkdir -p "$DIR"
  log "fetching org.apache.activemq:apache-artemis:$VERSION:tar.gz:bin from Maven Central"
  mvn -q -B -Dstyle.color=never org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy \
    -Dartifact="org.apache.activemq:apache-artemis:$VERSION:tar.gz:bin" -DoutputDirectory="$DIR" >&2
  tar -xzf "$DIR/apache-artemis-$VERSION-bin.tar.gz" -C "$DIR"
  rm -f "$DIR/apache-artemis-$VERSION-bin.tar.gz"
}

# tls makes a CA and a server certificate for 127.0.0.1/localhost, and the PKCS#12 keystore the
# acceptor reads.
tls() {
  local d="$INSTANCE/tls"
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=shadowbridge test CA" \
    -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$d/san.ext"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 3650 \
    -extfile "$d/san.ext" -out "$d/server.pem" 2>/dev/null
  openssl pkcs12 -export -in "$d/server.pem" -inkey "$d/server.key" -passout pass:changeit -out "$d/server.p12"
}

# The instance's identity: when any of it changes, the instance is made again.
fingerprint() {
  cat "$HERE/broker.xml.fragment" "$HERE/merge-fragment.py" "$0" | sha256sum | cut -d' ' -f1
}

create() {
  local want
  want="$(fingerprint)"
  if [[ -f "$INSTANCE/.fingerprint" && "$(cat "$INSTANCE/.fingerprint")" == "$want" ]]; then
    return
  fi
  log "creating the instance in $INSTANCE"
  rm -rf "$INSTANCE"
  local ha=()
  case "$NAME" in
    primary) ha=(--shared-store --failover-on-shutdown --data "$DIR/shared-data") ;;
    backup) ha=(--shared-store --backup --data "$DIR/shared-data") ;;
  esac
  "$DIST/bin/artemis" create "$INSTANCE" --silent --force --user "$USER_NAME" --password "$USER_PASS" \
    --require-login --host 127.0.0.1 --default-port "$PORT" --no-amqp-acceptor --no-stomp-acceptor \
    --no-mqtt-acceptor --no-hornetq-acceptor --no-web --nio --no-autotune --java-memory 512M \
    "${ha[@]}" >/dev/null
  local extra="$INSTANCE/etc/test-extra.xml"
  {
    echo "<extra><acceptors>"
    if [[ -n "$TLS_PORT" ]]; then
      tls
      echo "<acceptor name=\"amqps\">tcp://127.0.0.1:$TLS_PORT?protocols=AMQP;sslEnabled=true;keyStoreType=PKCS12;keyStorePath=$INSTANCE/tls/server.p12;keyStorePassword=changeit;amqpDuplicateDetection=true</acceptor>"
    fi
    echo "</acceptors><address-settings>"
    echo "<address-setting match=\"nocreate.#\"><auto-create-queues>false</auto-create-queues><auto-create-addresses>false</auto-create-addresses></address-setting>"
    echo "</address-settings>"
    # Tests count a delivery the broker repeats (the target's accept lost in a crash) apart from
    # a second message of one operation (a re-send that duplicate detection missed): the
    # delivery count must survive a kill -9 of the broker.
    echo "<persist-delivery-count-before-delivery>true</persist-delivery-count-before-delivery>"
    echo "</extra>"
  } >"$extra"
  python3 "$HERE/merge-fragment.py" "$INSTANCE/etc/broker.xml" "$HERE/broker.xml.fragment" 127.0.0.1 "$PORT" "$extra"
  if [[ "$NAME" == primary || "$NAME" == backup ]]; then
    # artemis create wrote the HA policy; the pair shares one journal and needs no cluster
    # connection for clients that fail over by themselves (an ordered list of URLs).
    sed -i 's#<cluster-connections>.*</cluster-connections>##' "$INSTANCE/etc/broker.xml"
  fi
  echo "$want" >"$INSTANCE/.fingerprint"
}

start() {
  install_tools
  if running && port_open "$PORT"; then
    if [[ -f "$INSTANCE/.fingerprint" && "$(cat "$INSTANCE/.fingerprint")" == "$(fingerprint)" ]]; then
      return
    fi
    # Made by an older configuration: make it again now, not on a later restart (which would
    # lose what a crash test expects to find in its journal).
    stop
  fi
  fetch
  create
  if running; then kill -9 "$(cat "$PIDFILE")" 2>/dev/null || true; fi
  mkdir -p "$INSTANCE/log"
  : >"$LOG"
  log "starting on 127.0.0.1:$PORT"
  # run stays in the foreground; its PID is the JVM's. setsid: not killed with the caller's group.
  setsid nohup "$INSTANCE/bin/artemis" run >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  local want=AMQ221007
  [[ "$NAME" == backup ]] && want=AMQ221031 # "backup announced": it waits for the primary's lock
  for _ in $(seq 1 240); do
    if grep -q "$want" "$LOG" 2>/dev/null; then
      log "ready (pid $(cat "$PIDFILE"))"
      return
    fi
    if ! running; then break; fi
    sleep 0.25
  done
  log "did not become ready; the end of its log:"
  tail -n 40 "$LOG" >&2
  exit 1
}

# jms_fixture builds the JMS target system of the tests (Artemis' own JMS client, from Maven
# Central) when its sources are newer than its jar.
jms_fixture() {
  local d="$HERE/jms-target"
  local jar="$d/target/jms-target-1.jar"
  if [[ -f "$jar" && -z "$(find "$d/pom.xml" "$d/src" -newer "$jar" -print -quit)" && -d "$d/target/lib" ]]; then
    return
  fi
  log "building the JMS test fixture ($d)"
  (cd "$d" && mvn -q -B -Dstyle.color=never package dependency:copy-dependencies \
    -DoutputDirectory=target/lib -DincludeScope=runtime >&2)
}

stop() {
  running || return 0
  local pid
  pid="$(cat "$PIDFILE")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 120); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; return; }
    sleep 0.25
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
}

case "$ACTION" in
  start)
    start
    if [[ "$NAME" == main ]]; then jms_fixture; fi
    ;;
  stop) stop ;;
  kill) if running; then kill -9 "$(cat "$PIDFILE")"; fi ;;
  status) if running; then echo "running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"; else echo stopped; exit 1; fi ;;
  url) echo "amqp://$USER_NAME:$USER_PASS@127.0.0.1:$PORT" ;;
  dist) install_tools; fetch; echo "$DIST" ;;
  jms) install_tools; jms_fixture; echo "$HERE/jms-target/target/classes:$HERE/jms-target/target/lib/*" ;;
  *) echo "usage: $0 [start|stop|kill|status|url|dist|jms] [main|crash|primary|backup]" >&2; exit 2 ;;
esac
