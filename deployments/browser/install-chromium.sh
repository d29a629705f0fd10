#!/usr/bin/env bash
# Installs (if missing) Debian's Chromium for the dashboard's browser test. Idempotent.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install-chromium: chromium is missing; run as root, or: sudo apt-get install -y chromium" >&2
  exit 1
fi
echo "install-chromium: installing chromium from Debian" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
