#!/usr/bin/env bash
# The production example on one machine, TLS everywhere, from the files we ship:
#   - three nats-server nodes (JetStream R3) from deployments/nats/cluster.conf and accounts.conf,
#     TLS for clients and routes;
#   - Apache Artemis 2.40 (from Maven Central) with deployments/artemis/broker.xml.fragment, its
#     acceptor TLS-only (AMQP for shadowbridge, CORE for the target system), one user per role;
#   - three `shadowbridge serve` instances from deployments/production/shadowbridge.yaml, their
#     secrets in a credentials directory as systemd's LoadCredential= gives them;
#   - a target system: the JMS application of deployments/artemis/jms-target, over TLS.
# Host names, ports and paths of the shipped files are rewritten for 127.0.0.1 (sed, below);
# nothing else in them changes. A CA and a certificate for 127.0.0.1/localhost are made here.
#
#   deployments/production/up.sh start    build, start, wait until every instance is ready
#   deployments/production/up.sh stop     SIGTERM everything (graceful)
#   deployments/production/up.sh status
#
# State (configs, certificates, JetStream files, the broker's journal, logs) lives in
# $SHADOWBRIDGE_CLUSTER_DIR (default ~/.cache/shadowbridge/cluster); `rm -rf` it for a fresh start.
# Ports: SHADOWBRIDGE_EXAMPLE_NATS_PORTS ("4222 4223 4224"), ..._ROUTE_PORTS ("6222 6223 6224"),
# ..._HTTP_PORTS ("8081 8082 8083"), ..._ARTEMIS_PORT (5671).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
state=${SHADOWBRIDGE_CLUSTER_DIR:-$HOME/.cache/shadowbridge/cluster}
read -r -a nats_ports <<<"${SHADOWBRIDGE_EXAMPLE_NATS_PORTS:-4222 4223 4224}"
read -r -a route_ports <<<"${SHADOWBRIDGE_EXAMPLE_ROUTE_PORTS:-6222 6223 6224}"
read -r -a http_ports <<<"${SHADOWBRIDGE_EXAMPLE_HTTP_PORTS:-8081 8082 8083}"
artemis_port=${SHADOWBRIDGE_EXAMPLE_ARTEMIS_PORT:-5671}
export SHADOWBRIDGE_NATS_PASSWORD=${SHADOWBRIDGE_NATS_PASSWORD:-cluster-demo-service}
export IDM_NATS_PASSWORD=${IDM_NATS_PASSWORD:-cluster-demo-idm}
export AUDITOR_NATS_PASSWORD=${AUDITOR_NATS_PASSWORD:-cluster-demo-auditor}
artemis_shadowbridge_password=${ARTEMIS_SHADOWBRIDGE_PASSWORD:-cluster-demo-broker}
artemis_target_password=${ARTEMIS_TARGET_PASSWORD:-cluster-demo-target}
say() { echo "production: $*"; }

running() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_port() {
	for _ in $(seq 1 600); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	say "nothing listens on port $1 after 60 s; see $state/*.log"
	return 1
}

# certs makes (once) a CA and a certificate for 127.0.0.1/localhost signed by it: the NATS nodes
# (servers, and clients on routes) and Artemis use it; the broker's PKCS#12 keystore and the JMS
# client's truststore are made from them.
certs() {
	local d="$state/tls"
	[[ -f "$d/truststore.p12" ]] && return 0
	mkdir -p "$d"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 -subj "/CN=shadowbridge example CA" \
		-keyout "$d/ca-key.pem" -out "$d/ca.pem" 2>/dev/null
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
		-keyout "$d/server-key.pem" -out "$d/server.csr" 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' >"$d/ext.cnf"
	openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca-key.pem" -CAcreateserial -days 365 \
		-extfile "$d/ext.cnf" -out "$d/server.pem" 2>/dev/null
	openssl pkcs12 -export -in "$d/server.pem" -inkey "$d/server-key.pem" -passout pass:changeit -out "$d/server.p12"
	keytool -importcert -noprompt -alias ca -file "$d/ca.pem" -keystore "$d/truststore.p12" -storetype PKCS12 \
		-storepass changeit >/dev/null 2>&1
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

nats_nodes() {
	cp "$root/deployments/nats/accounts.conf" "$state/accounts.conf"
	for i in 0 1 2; do
		local n=$((i + 1))
		sed -e "s/^server_name: .*/server_name: n$n/" \
			-e "s#listen: 0.0.0.0:4222#listen: 127.0.0.1:${nats_ports[$i]}#" \
			-e "/^http: /d" \
			-e "s#store_dir: /var/lib/nats/jetstream#store_dir: \"$state/n$n\"#" \
			-e "s#listen: 0.0.0.0:6222#listen: 127.0.0.1:${route_ports[$i]}#" \
			-e "s#nats-route://nats-1:6222#nats-route://127.0.0.1:${route_ports[0]}#" \
			-e "s#nats-route://nats-2:6222#nats-route://127.0.0.1:${route_ports[1]}#" \
			-e "s#nats-route://nats-3:6222#nats-route://127.0.0.1:${route_ports[2]}#" \
			"$root/deployments/nats/cluster.conf" >"$state/n$n.conf"
		if running "$state/n$n.pid"; then say "n$n already running"; continue; fi
		"$state/bin/nats-server" -c "$state/n$n.conf" >"$state/n$n.log" 2>&1 &
		echo $! >"$state/n$n.pid"
	done
	for p in "${nats_ports[@]}"; do wait_port "$p"; done
}

# artemis makes (once) a broker instance from the shipped fragment, its acceptor TLS-only, with
# the users of the fragment's roles, and runs it.
artemis() {
	local inst="$state/artemis" dist
	dist=$(bash "$root/deployments/artemis/test-broker.sh" dist)
	if [[ ! -f "$inst/.made" ]]; then
		rm -rf "$inst"
		"$dist/bin/artemis" create "$inst" --silent --force --user admin --password "$(openssl rand -hex 16)" \
			--require-login --host 127.0.0.1 --default-port "$artemis_port" --no-amqp-acceptor --no-stomp-acceptor \
			--no-mqtt-acceptor --no-hornetq-acceptor --no-web --nio --no-autotune --java-memory 512M >/dev/null
		python3 "$root/deployments/artemis/merge-fragment.py" --tls "$state/tls/server.p12" changeit \
			"$inst/etc/broker.xml" "$root/deployments/artemis/broker.xml.fragment" 127.0.0.1 "$artemis_port"
		printf '\nshadowbridge = %s\ntarget = %s\n' "$artemis_shadowbridge_password" "$artemis_target_password" >>"$inst/etc/artemis-users.properties"
		printf '\nshadowbridge = shadowbridge\nfilesystem-target = target\n' >>"$inst/etc/artemis-roles.properties"
		touch "$inst/.made"
	fi
	if running "$state/artemis.pid"; then say "artemis already running"; return 0; fi
	mkdir -p "$inst/log"
	: >"$inst/log/console.log"
	setsid nohup "$inst/bin/artemis" run >>"$inst/log/console.log" 2>&1 </dev/null &
	echo $! >"$state/artemis.pid"
	for _ in $(seq 1 480); do
		grep -q AMQ221007 "$inst/log/console.log" 2>/dev/null && return 0
		running "$state/artemis.pid" || break
		sleep 0.25
	done
	say "artemis did not start; the end of its log:"
	tail -n 30 "$inst/log/console.log"
	return 1
}

instances() {
	local urls="" i
	for p in "${nats_ports[@]}"; do urls="$urls,tls://127.0.0.1:$p"; done
	urls=${urls#,}
	mkdir -p "$state/credentials"
	printf '%s\n' "$SHADOWBRIDGE_NATS_PASSWORD" >"$state/credentials/nats-password"
	printf '%s\n' "$artemis_shadowbridge_password" >"$state/credentials/artemis-password"
	chmod 600 "$state/credentials"/*
	for i in 0 1 2; do
		local n=$((i + 1))
		sed -e "s#url: tls://nats-1:4222,tls://nats-2:4222,tls://nats-3:4222#url: $urls#" \
			-e "s#/etc/shadowbridge/tls/ca.pem#$state/tls/ca.pem#g" \
			-e "s#listen: 127.0.0.1:8080#listen: 127.0.0.1:${http_ports[$i]}#" \
			-e "s#amqps://artemis:5671#amqps://127.0.0.1:$artemis_port#" \
			"$here/shadowbridge.yaml" >"$state/serve$n.yaml"
		if running "$state/serve$n.pid"; then say "serve$n already running"; continue; fi
		# As systemd runs it: secrets in $CREDENTIALS_DIRECTORY (LoadCredential=).
		CREDENTIALS_DIRECTORY="$state/credentials" "$state/bin/shadowbridge" serve --config "$state/serve$n.yaml" >"$state/serve$n.log" 2>&1 &
		echo $! >"$state/serve$n.pid"
	done
	echo "$urls" >"$state/urls"
}

# target runs the target system: Artemis' own JMS client over TLS (the CA in a truststore).
target() {
	if running "$state/target.pid"; then return 0; fi
	local cp
	cp=$(bash "$root/deployments/artemis/test-broker.sh" jms)
	java -cp "$cp" shadowbridge.JmsTarget \
		"tcp://127.0.0.1:$artemis_port?sslEnabled=true;trustStorePath=$state/tls/truststore.p12;trustStorePassword=changeit;trustStoreType=PKCS12" \
		target "$artemis_target_password" FileSystemRequestsQueue FileSystemResponses -1 >"$state/target.log" 2>&1 &
	echo $! >"$state/target.pid"
}

start() {
	mkdir -p "$state/bin"
	certs
	export NATS_TLS_CERT="$state/tls/server.pem" NATS_TLS_KEY="$state/tls/server-key.pem" NATS_TLS_CA="$state/tls/ca.pem"
	(cd "$root" && go build -o "$state/bin/nats-server" github.com/nats-io/nats-server/v2 && go build -o "$state/bin/shadowbridge" ./cmd/shadowbridge)
	nats_nodes
	artemis
	instances
	target
	for p in "${http_ports[@]}"; do wait_ready "$p"; done
	local urls
	urls=$(cat "$state/urls")
	say "3 NATS nodes on $urls (TLS for clients and routes), Artemis on amqps://127.0.0.1:$artemis_port (TLS only)"
	say "3 instances (dashboards http://127.0.0.1:${http_ports[0]}/ ${http_ports[1]}/ ${http_ports[2]}/), the JMS target system over TLS"
	say "try: $state/bin/shadowbridge add filesystem login=anne --server $urls --tls-ca $state/tls/ca.pem --user idm --password $IDM_NATS_PASSWORD"
	say "stop: deployments/production/up.sh stop"
}

# stop stops in order (the target, the instances, the broker, the nodes), each gracefully, and
# waits for it: up to 30 s, then SIGKILL.
stop() {
	local f pid
	for f in "$state"/target.pid "$state"/serve*.pid "$state"/artemis.pid "$state"/n*.pid; do
		[[ -f "$f" ]] || continue
		pid=$(cat "$f")
		pkill -TERM -P "$pid" 2>/dev/null || true
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 300); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -9 "$pid" 2>/dev/null || true
		rm -f "$f"
	done
	say "stopped"
}

status() {
	for f in "$state"/n*.pid "$state"/artemis.pid "$state"/serve*.pid "$state"/target.pid; do
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
