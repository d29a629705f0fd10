#!/usr/bin/env bash
# Installs (if missing) the nats CLI (github.com/nats-io/natscli), an independent client of the
# tests (`nats micro info`, `nats micro stats`, `nats req`), built with the machine's Go into
# deployments/natscli/bin/nats. Idempotent; the version is pinned.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
VERSION=v0.5.0
if [[ -x "$HERE/bin/nats" ]] && "$HERE/bin/nats" --version 2>&1 | grep -q "${VERSION#v}"; then
  exit 0
fi
echo "natscli: installing the nats CLI $VERSION in $HERE/bin" >&2
GOBIN="$HERE/bin" GOFLAGS=-mod=mod go install "github.com/nats-io/natscli/nats@$VERSION"
"$HERE/bin/nats" --version >&2
