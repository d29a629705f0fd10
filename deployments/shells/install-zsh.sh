#!/usr/bin/env bash
# Installs (if missing) Debian's zsh, so the CLI test can load the zsh completion script. Idempotent.
set -euo pipefail
if command -v zsh >/dev/null 2>&1; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install-zsh: zsh is missing; run as root, or: sudo apt-get install -y zsh" >&2
  exit 1
fi
echo "install-zsh: installing zsh from Debian" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends zsh >/dev/null 2>&1 || { apt-get update -qq >/dev/null; apt-get install -y -qq --no-install-recommends zsh >/dev/null; }
