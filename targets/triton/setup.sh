#!/usr/bin/env bash
# Installs what the `triton` kind runs, into the project venv (called by `make setup`):
#
#   1. the real `tritonserver` binary and its Python backend, from nvidia-pytriton (--no-deps:
#      only its binaries are used, not its Python API);
#   2. the Python backend's own environment, VENV/triton-backend: a venv of the interpreter
#      the project venv is built on, which must be the one whose libpython3.11.so.1.0 the
#      backend stub loads (Debian's python3.11 with libpython3.11, or the official image's
#      /usr/local build), holding numpy<2 (the stub's pybind11 corrupts numpy 2 arrays) and
#      seeing TensorFlow and the rest of the project venv through a .pth file (no second
#      TensorFlow install).
#
# Usage: targets/triton/setup.sh [VENV]   (default .venv). Idempotent. pip honours PIP_*
# variables (the container build sets PIP_NO_INDEX and PIP_FIND_LINKS to the wheelhouse).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=$(cd "${1:-.venv}" && pwd)
stub_python=${TRITON_STUB_PYTHON:-$("$venv/bin/python" -c 'import sys; print(sys._base_executable)')}

"$venv/bin/pip" install --quiet --no-deps -r "$here/requirements-server.txt"

libpython=$("$stub_python" -c 'import sysconfig as s; print(s.get_config_var("INSTSONAME"))')
# grep reads it all: with pipefail, `grep -q` quitting at the match can SIGPIPE ldconfig and
# fail the pipeline although the library is there (it did in a CI image build)
if ! ldconfig -p | grep -F "$libpython" >/dev/null; then
  echo "triton: no shared $libpython for $stub_python: the Triton backend stub loads it" \
       "(Debian: apt-get install libpython3.11); skipping the backend environment" >&2
  exit 0
fi
env="$venv/triton-backend"
if [ ! -x "$env/bin/python" ]; then
  "$stub_python" -m venv "$env"
fi
"$env/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements-backend.txt"
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
env_site=$("$env/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# After the environment's own site-packages (numpy<2 first), the project's packages.
echo "$site" > "$env_site/servecap-project.pth"
"$env/bin/python" -c 'import numpy; assert numpy.__version__.startswith("1."), numpy.__version__'
