#!/usr/bin/env bash
# Try shadowbridge on a 3-node JetStream cluster on this machine: three nats-server processes
# (built from the nats-server module this project depends on) configured like cluster.conf with
# accounts.conf, and three `shadowbridge serve` instances with replicas 3 and the sample target.
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

start() {
	mkdir -p "$state/bin"
	(cd "$root" && go build -o "$state/bin/nats-server" github.com/nats-io/nats-server/v2 && go build -o "$state/bin/shadowbridge" ./cmd/shadowbridge)
	cp "$here/accounts.conf" "$state/accounts.conf"
	urls=""
	for i in 1 2 3; do urls="$urls,nats://127.0.0.1:$((4221 + i))"; done
	urls=${urls#,}
	for i in 1 2 3; do
		cat >"$state/n$i.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:$((4221 + i))
max_payload: 8MB
jetstream { store_dir: "$state/n$i" }
cluster {
  name: shadowbridge
  listen: 127.0.0.1:$((6221 + i))
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
nats: {url: "$urls", user: shadowbridge, password: "$SHADOWBRIDGE_NATS_PASSWORD", replicas: 3}
http: {listen: "127.0.0.1:$((8080 + i))"}
resources:
  - name: demo
    objectClasses: [{name: AccountObjectClass, secondaryIdentifier: login, primaryIdentifier: uid}]
    target: {sample: {}}
CONF
		if running "$state/serve$i.pid"; then say "serve$i already running"; continue; fi
		# The first start creates the R3 stream while the cluster elects its leader: retry a while.
		(for _ in $(seq 1 30); do "$state/bin/shadowbridge" serve --config "$state/serve$i.yaml" && break; sleep 1; done) >"$state/serve$i.log" 2>&1 &
		echo $! >"$state/serve$i.pid"
	done
	for i in 1 2 3; do wait_port $((8080 + i)); done
	say "3 NATS nodes on $urls, 3 instances (dashboards http://127.0.0.1:8081/ 8082/ 8083/)"
	say "try: $state/bin/shadowbridge add demo login=anne --server $urls --user idm --password $IDM_NATS_PASSWORD"
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
