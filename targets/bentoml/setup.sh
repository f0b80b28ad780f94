#!/usr/bin/env bash
# Makes the `bentoml` kind's own environment, VENV/bentoml (called by `make setup`): a venv of
# the project venv's interpreter holding BentoML and what it pins differently from the project
# (requirements-env.txt), which sees TensorFlow and the rest of the project venv through a .pth
# file (no second TensorFlow install). The .pth is written first, so pip counts the project's
# packages as installed and adds only what BentoML needs beside them.
#
# Usage: targets/bentoml/setup.sh [VENV]   (default .venv). Idempotent: a second run with the
# same requirements returns at once. pip honours PIP_* variables.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=$(cd "${1:-.venv}" && pwd)
env="$venv/bentoml"
stamp="$env/.servecap-requirements"
if [ -x "$env/bin/python" ] && cmp -s "$here/requirements-env.txt" "$stamp"; then
  exit 0
fi
base=$("$venv/bin/python" -c 'import sys; print(sys._base_executable)')
[ -x "$env/bin/python" ] || "$base" -m venv "$env"
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
env_site=$("$env/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$site" > "$env_site/servecap-project.pth"
"$env/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements-env.txt"
"$env/bin/python" -c 'import bentoml, numpy, pydantic'
cp "$here/requirements-env.txt" "$stamp"
