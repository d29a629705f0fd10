#!/usr/bin/env bash
# Builds the image (build.sh) and checks it: a scratch image holding only the static binary, run
# as a non-root user, with a health check; the binary taken out of the image runs on its own
# (static: no libc); and, where the machine lets podman run containers, the image itself answers
# `version` and, serving dev, its health check turns healthy.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deployments/image/build.sh
img=localhost/shadowbridge:latest
fail() { echo "image test: FAIL: $*" >&2; exit 1; }
user="$(podman image inspect -f '{{.Config.User}}' "$img")"
[ "$user" = "65532:65532" ] || fail "runs as '$user', want 65532:65532"
health="$(podman image inspect -f '{{json .Config.Healthcheck}}' "$img")"
case "$health" in *'"/shadowbridge","health"'*) ;; *) fail "health check $health" ;; esac
entry="$(podman image inspect -f '{{json .Config.Entrypoint}}' "$img")"
[ "$entry" = '["/shadowbridge"]' ] || fail "entrypoint $entry"
layers="$(podman image inspect -f '{{len .RootFS.Layers}}' "$img")"
[ "$layers" = 1 ] || fail "$layers layers, want one (the binary on an empty base)"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
podman save --format docker-archive -o "$tmp/image.tar" "$img"
mkdir "$tmp/x" && tar -xf "$tmp/image.tar" -C "$tmp/x"
layer="$(find "$tmp/x" -name '*.tar' -not -name image.tar | head -1)"
files="$(tar -tf "$layer" | grep -v '/$' | tr '\n' ' ')"
[ "$files" = "shadowbridge " ] || fail "the image holds: $files"
tar -xf "$layer" -C "$tmp" shadowbridge
file "$tmp/shadowbridge" | grep -q 'statically linked' || fail "the binary is not static: $(file "$tmp/shadowbridge")"
"$tmp/shadowbridge" version | grep -q '^shadowbridge ' || fail "the image's binary does not run"
# Run it. Podman's defaults cannot run a container everywhere: in a sandbox (this project's CI
# machines) crun refuses a host whose cgroups are in hybrid mode, and limits above the sandbox's
# hard limits; runc with limits below them can. Each way is tried, the first that runs is used.
pod=(podman) opts=()
run_version() { "${pod[@]}" run --rm "${opts[@]}" "$img" version 2>&1 | grep -v 'level=error'; }
if ! out="$(run_version)"; then
  why="$(echo "$out" | tail -1)"
  pod=(podman --runtime runc) opts=(--ulimit nofile=1024:1024 --ulimit nproc=4096:4096)
  out="$(run_version)" || { echo "image test: ok (built and checked; not run: podman cannot run containers here: $why; with runc: $(echo "$out" | tail -1))"; exit 0; }
fi
echo "$out" | grep -q '^shadowbridge ' || fail "podman run: $out"
name="sb-image-test-$$"
"${pod[@]}" run -d --name "$name" "${opts[@]}" --tmpfs /data:rw,mode=1777 "$img" dev --nats 127.0.0.1:4222 --http 127.0.0.1:8080 --data /data/sb >/dev/null
trap '"${pod[@]}" rm -f "$name" >/dev/null 2>&1; rm -rf "$tmp"' EXIT
healthy=
for _ in $(seq 60); do
  if "${pod[@]}" healthcheck run "$name" >/dev/null 2>&1; then healthy=1; break; fi
  sleep 1
done
[ -n "$healthy" ] || fail "the running image never became healthy: $("${pod[@]}" logs "$name" 2>&1 | tail -5)"
# The running image serves: an add through its own CLI comes back live from its sample target.
reply="$("${pod[@]}" exec "$name" /shadowbridge add demo login=image-test -o json 2>&1)" || fail "add in the container: $reply"
id="$(echo "$reply" | sed -n 's/.*"shadowId": "\(.*\)".*/\1/p')"
[ -n "$id" ] || fail "add in the container: $reply"
for _ in $(seq 30); do
  if "${pod[@]}" exec "$name" /shadowbridge get "$id" -o json 2>/dev/null | grep -q '"lifecycleState": "live"'; then
    echo "image test: ok (ran it with ${pod[*]}: healthy, and an add in it came back live)"
    exit 0
  fi
  sleep 1
done
fail "the add in the container never came back live: $("${pod[@]}" exec "$name" /shadowbridge get "$id" 2>&1 | tail -5)"
