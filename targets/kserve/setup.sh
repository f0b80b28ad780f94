#!/usr/bin/env bash
# Makes VENV/kserve, the environment the `kserve` kind runs in (called by `make setup`):
# kserve 0.21.0 and requirements-env.txt, seeing the project venv's TensorFlow through a .pth file
# (targets/common/framework_env.sh). KServe needs pandas < 3 and psutil < 6, which clash with
# the project's pins, so it cannot live in the project venv.
# Usage: targets/kserve/setup.sh [VENV [MORE_REQUIREMENTS...]]   (default .venv). Idempotent.
# A container image adds requirements-image.txt: what the project venv gives a host but the
# runtime image lacks.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec bash "$here/../common/framework_env.sh" kserve \
  'import importlib.metadata as m, kserve.model_server; assert m.version("kserve") == "0.21.0"' \
  "${1:-.venv}" "$here/requirements-env.txt" "${@:2}"
