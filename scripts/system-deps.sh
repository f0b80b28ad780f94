#!/usr/bin/env bash
# Installs the system programs the process-mode targets run: nginx (in front of Django),
# redis-server (the job queue) and, for Triton's Python backend, Debian's shared libpython3.11
# (and python3.11-venv to make its environment). Idempotent; does nothing when all are present.
set -euo pipefail
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ -x /usr/bin/python3.11 ]; then
  ldconfig -p 2>/dev/null | grep -F libpython3.11.so.1.0 >/dev/null || missing+=(libpython3.11)
  /usr/bin/python3.11 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3.11-venv)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "servecap: please install ${missing[*]} with your package manager" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "servecap: installing ${missing[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
