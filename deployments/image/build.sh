#!/usr/bin/env bash
# Builds shadowbridge's container image without a registry or a daemon: a static binary
# (CGO off) and podman (installed from Debian if missing) building deployments/image/Containerfile
# FROM scratch. The image is tagged localhost/shadowbridge:<version> and :latest; with --save
# FILE it is also written as a docker-archive tarball (podman load / docker load take it).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
  echo "image: installing podman and runc (Debian)" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q podman runc >/dev/null
fi
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
CGO_ENABLED=0 go build -trimpath -buildvcs=auto -ldflags='-s -w' -o "$ctx/shadowbridge" ./cmd/shadowbridge
version="$("$ctx/shadowbridge" version --json | sed -n 's/.*"version": "\(.*\)".*/\1/p')"
cp deployments/image/Containerfile "$ctx/"
# --format docker keeps the HEALTHCHECK (the OCI image format has none).
podman build -q --format docker -f "$ctx/Containerfile" -t "localhost/shadowbridge:$version" -t localhost/shadowbridge:latest "$ctx" >/dev/null
echo "image: localhost/shadowbridge:$version"
if [ "${1:-}" = "--save" ]; then
  podman save --format docker-archive -o "$2" "localhost/shadowbridge:$version"
  echo "image: saved to $2"
fi
