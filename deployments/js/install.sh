#!/usr/bin/env bash
# Installs (if missing) the official NATS JavaScript client for the tests that use it as an
# independent client: deployments/js/node_modules/nats (npm registry), and Node.js from Debian if
# the machine has none. Idempotent.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "js-client: node and npm are missing; run as root, or: sudo apt-get install -y nodejs npm" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
if [[ ! -f "$HERE/node_modules/nats/package.json" ]]; then
  echo "js-client: installing the NATS JavaScript client (nats@2) in $HERE" >&2
  (cd "$HERE" && npm install --silent --no-audit --no-fund --no-save nats@2 >&2)
fi
