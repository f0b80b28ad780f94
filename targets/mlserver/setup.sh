#!/usr/bin/env bash
# Makes VENV/mlserver, the environment the `mlserver` kind runs in (called by `make setup`):
# MLServer 1.7.1 and requirements-env.txt, seeing the project venv's TensorFlow through a .pth
# file (targets/common/framework_env.sh). MLServer needs fastapi < 0.116, which clashes with the
# project's pin, so it cannot live in the project venv.
# Usage: targets/mlserver/setup.sh [VENV [MORE_REQUIREMENTS...]]   (default .venv). Idempotent.
# A container image adds requirements-image.txt: what the project venv gives a host but the
# runtime image lacks.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec bash "$here/../common/framework_env.sh" mlserver \
  'import mlserver.server; assert mlserver.__version__ == "1.7.1", mlserver.__version__' \
  "${1:-.venv}" "$here/requirements-env.txt" "${@:2}"
