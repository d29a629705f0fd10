#!/usr/bin/env bash
# Try shadowbridge on a 3-node JetStream cluster on this machine: three nats-server processes
# (built from the nats-server module this project depends on) configured like cluster.conf with
# accounts.conf, TLS on for clients and routes (a CA and a certificate for 127.0.0.1 made here
# with openssl), and three `shadowbridge serve` instances with replicas 3 and the sample target,
# connecting over TLS.
#
#   deployments/nats/cluster.sh start    build, start, wait until ready, print how to use it
#   deployments/nats/cluster.sh stop     SIGTERM everything (graceful), then forget the pids
#   deployments/nats/cluster.sh status
#
# State (configs, JetStream files, logs) lives in $SHADOWBRIDGE_CLUSTER_DIR
# (default ~/.cache/shadowbridge/cluster); `rm -rf` it for a fresh cluster.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
state=${SHADOWBRIDGE_CLUSTER_DIR:-$HOME/.cache/shadowbridge/cluster}
export SHADOWBRIDGE_NATS_PASSWORD=${SHADOWBRIDGE_NATS_PASSWORD:-cluster-demo-service}
export IDM_NATS_PASSWORD=${IDM_NATS_PASSWORD:-cluster-demo-idm}
export AUDITOR_NATS_PASSWORD=${AUDITOR_NATS_PASSWORD:-cluster-demo-auditor}
say() { echo "cluster: $*"; }

running() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_port() {
	for _ in $(seq 1 600); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	say "nothing listens on port $1 after 60 s; see $state/*.log"
	return 1
}

# certs makes (once) a CA and a certificate for 127.0.0.1/localhost signed by it in $state/tls,
# good for the nodes as servers and, on routes, as clients.
certs() {
	local d="$state/tls"
	[[ -f "$d/server.pem" ]] && return 0
	mkdir -p "$d"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 -subj "/CN=shadowbridge cluster CA" \
		-keyout "$d/ca-key.pem" -out "$d/ca.pem" 2>/dev/null
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
		-keyout "$d/server-key.pem" -out "$d/server.csr" 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >"$d/ext.cnf"
	openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca-key.pem" -CAcreateserial -days 365 \
		-extfile "$d/ext.cnf" -out "$d/server.pem" 2>/dev/null
	chmod 600 "$d"/*-key.pem
}

# wait_ready waits until the instance on the port says it is ready (serve waits for the cluster
# to elect its leaders, /readyz 503 meanwhile).
wait_ready() {
	for _ in $(seq 1 1200); do
		"$state/bin/shadowbridge" health --url "http://127.0.0.1:$1/readyz" --timeout 1s >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	say "the instance on port $1 is not ready after 120 s; see $state/serve*.log"
	return 1
}

start() {
	mkdir -p "$state/bin"
	certs
	export NATS_TLS_CERT="$state/tls/server.pem" NATS_TLS_KEY="$state/tls/server-key.pem" NATS_TLS_CA="$state/tls/ca.pem"
	(cd "$root" && go build -o "$state/bin/nats-server" github.com/nats-io/nats-server/v2 && go build -o "$state/bin/shadowbridge" ./cmd/shadowbridge)
	cp "$here/accounts.conf" "$state/accounts.conf"
	urls=""
	for i in 1 2 3; do urls="$urls,tls://127.0.0.1:$((4221 + i))"; done
	urls=${urls#,}
	for i in 1 2 3; do
		cat >"$state/n$i.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:$((4221 + i))
max_payload: 8MB
jetstream { store_dir: "$state/n$i" }
tls { cert_file: \$NATS_TLS_CERT, key_file: \$NATS_TLS_KEY, ca_file: \$NATS_TLS_CA, timeout: 2 }
cluster {
  name: shadowbridge
  listen: 127.0.0.1:$((6221 + i))
  tls { cert_file: \$NATS_TLS_CERT, key_file: \$NATS_TLS_KEY, ca_file: \$NATS_TLS_CA, verify: true, timeout: 2 }
  routes: [nats-route://127.0.0.1:6222, nats-route://127.0.0.1:6223, nats-route://127.0.0.1:6224]
}
include accounts.conf
CONF
		if running "$state/n$i.pid"; then say "n$i already running"; continue; fi
		"$state/bin/nats-server" -c "$state/n$i.conf" >"$state/n$i.log" 2>&1 &
		echo $! >"$state/n$i.pid"
	done
	for i in 1 2 3; do wait_port $((4221 + i)); done
	for i in 1 2 3; do
		cat >"$state/serve$i.yaml" <<CONF
nats: {url: "$urls", user: shadowbridge, password: "$SHADOWBRIDGE_NATS_PASSWORD", replicas: 3, tls: {ca: "$state/tls/ca.pem"}}
http: {listen: "127.0.0.1:$((8080 + i))"}
resources:
  - name: demo
    objectClasses: [{name: AccountObjectClass, secondaryIdentifier: login, primaryIdentifier: uid}]
    target: {sample: {}}
CONF
		if running "$state/serve$i.pid"; then say "serve$i already running"; continue; fi
		# serve waits for the cluster to elect its leader before it creates the R3 stream.
		"$state/bin/shadowbridge" serve --config "$state/serve$i.yaml" >"$state/serve$i.log" 2>&1 &
		echo $! >"$state/serve$i.pid"
	done
	for i in 1 2 3; do wait_ready $((8080 + i)); done
	say "3 NATS nodes on $urls, 3 instances (dashboards http://127.0.0.1:8081/ 8082/ 8083/)"
	say "TLS on for clients and routes (CA: $state/tls/ca.pem)"
	say "try: $state/bin/shadowbridge add demo login=anne --server $urls --tls-ca $state/tls/ca.pem --user idm --password $IDM_NATS_PASSWORD"
	say "stop: deployments/nats/cluster.sh stop"
}

stop() {
	for f in "$state"/serve*.pid "$state"/n*.pid; do
		[[ -f "$f" ]] || continue
		pkill -TERM -P "$(cat "$f")" 2>/dev/null || true
		kill -TERM "$(cat "$f")" 2>/dev/null || true
		rm -f "$f"
	done
	say "stopped"
}

status() {
	for f in "$state"/n*.pid "$state"/serve*.pid; do
		[[ -f "$f" ]] || continue
		if running "$f"; then say "$(basename "$f" .pid) running (pid $(cat "$f"))"; else say "$(basename "$f" .pid) not running"; fi
	done
}

case "${1:-start}" in
start) start ;;
stop) stop ;;
status) status ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
