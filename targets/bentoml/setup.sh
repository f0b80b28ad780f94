#!/usr/bin/env bash
# Makes VENV/bentoml, the environment the `bentoml` kind runs in (called by `make setup`):
# BentoML 1.4.40 and requirements-env.txt, seeing the project venv's TensorFlow through a .pth
# file (targets/common/framework_env.sh). BentoML 1.4.40 needs opentelemetry-api 1.45.1 where
# the project (fastapi) has 1.45.2, so it cannot live in the project venv.
# Usage: targets/bentoml/setup.sh [VENV]   (default .venv). Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec bash "$here/../common/framework_env.sh" bentoml \
  'import bentoml; assert bentoml.__version__ == "1.4.40", bentoml.__version__' \
  "${1:-.venv}" "$here/requirements-env.txt"
