#!/usr/bin/env bash
# Makes a framework's own environment beside the project's (the setup.sh of a kind whose
# framework clashes with the project's pins calls it; see targets/common/framework.py):
#
#   VENV/NAME   a venv of the interpreter the project venv is built on, holding exactly the
#               packages of the REQUIREMENTS files (installed with --no-deps: the pinned set
#               is the whole of it), and seeing TensorFlow and the rest of the project venv
#               through a .pth file, after its own packages (so its own versions of the
#               clashing ones win and the model needs no second TensorFlow).
#
# Usage: framework_env.sh NAME CHECK VENV REQUIREMENTS [REQUIREMENTS...]
#   CHECK  Python code run in the new environment that fails when it is unusable.
# Idempotent: quick when VENV/NAME already holds these REQUIREMENTS (it is made afresh whenever
# they change). pip honours PIP_* variables (a container build sets PIP_NO_INDEX and
# PIP_FIND_LINKS to the wheelhouse).
set -euo pipefail
name=$1 check=$2
venv=$(cd "$3" && pwd)
shift 3
env="$venv/$name"
stamp="$env/servecap-requirements.txt"
wanted=$(cat "$@")

if [ -x "$env/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  exit 0
fi
args=()
for file in "$@"; do args+=(-r "$file"); done
base_python=$("$venv/bin/python" -c 'import sys; print(sys._base_executable)')
rm -rf "$env"
"$base_python" -m venv --without-pip "$env"
"$venv/bin/python" -m pip --python "$env/bin/python" install --quiet --no-deps \
  --disable-pip-version-check "${args[@]}"
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
env_site=$("$env/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$site" > "$env_site/servecap-project.pth"
"$env/bin/python" -c "$check"
printf '%s\n' "$wanted" > "$stamp"
