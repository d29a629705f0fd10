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
if out="$(podman run --rm "$img" version 2>&1)"; then
  echo "$out" | grep -q '^shadowbridge ' || fail "podman run: $out"
  name="sb-image-test-$$"
  podman run -d --name "$name" "$img" dev --nats 127.0.0.1:4222 --http 127.0.0.1:8080 --data /tmp/sb >/dev/null
  trap 'podman rm -f "$name" >/dev/null 2>&1; rm -rf "$tmp"' EXIT
  for _ in $(seq 60); do
    podman healthcheck run "$name" >/dev/null 2>&1 && { echo "image test: ok (ran it: healthy)"; exit 0; }
    sleep 1
  done
  fail "the running image never became healthy: $(podman logs "$name" 2>&1 | tail -5)"
else
  echo "image test: ok (built and checked; not run: this machine does not let podman run containers: $(echo "$out" | tail -1))"
fi
