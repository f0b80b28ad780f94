#!/usr/bin/env bash
# Makes VENV/kserve, the environment the `kserve` kind runs in (called by `make setup`):
# kserve 0.21.0 and requirements-env.txt, seeing the project venv's TensorFlow through a .pth file
# (targets/common/framework_env.sh). KServe needs pandas < 3 and psutil < 6, which clash with
# the project's pins, so it cannot live in the project venv.
# Usage: targets/kserve/setup.sh [VENV]   (default .venv). Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec bash "$here/../common/framework_env.sh" kserve "$here/requirements-env.txt" \
  'from importlib.metadata import version; import kserve.model_server; assert version("kserve") == "0.21.0"' \
  "${1:-.venv}"
