# servecap developer entry points. The README's quick start is `make quickstart` + `make test`.
# Debian's python3.11 when there is one: Triton's Python backend stub embeds its libpython, so
# the venv its backend environment is made from must be built on it (targets/triton/setup.sh).
PYTHON ?= $(firstword $(wildcard /usr/bin/python3.11) python3)
VENV ?= .venv
BIN := $(VENV)/bin
# Offline CIFAR-10 copy beside the checkout, when present; otherwise the Keras download is used.
SERVECAP_CIFAR10_DIR ?= $(abspath $(wildcard ../shared/datasets/cifar10-jpeg))
export SERVECAP_CIFAR10_DIR
MODEL_BASE ?= artifacts/models/cifar10_cnn
# pytest-xdist workers for `make test` and `make unit`: the integration tests mostly wait on
# timed load and the unit tests on sleeps and subprocesses, so three beat two on a 2-core
# machine (measured: issue 24).
TEST_WORKERS ?= 3
# Bytecode caches (pytest's rewritten tests too) are written even where the environment says
# not to: otherwise each xdist worker, and every server and Locust process a test starts,
# compiles the same modules again (unit tier from a fresh tree: 58.5 s against 69 s).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup model quickstart test lint typecheck unit clean-results typecheck-low pytest-all

setup: $(VENV)/.installed
	@scripts/system-deps.sh

# System packages, the project, then each kind's own install step (targets/<kind>/setup.sh).
$(VENV)/.installed: pyproject.toml $(wildcard targets/*/setup.sh targets/*/requirements-*.txt targets/common/*.sh)
	@scripts/system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	@for script in targets/*/setup.sh; do echo "setup: $$script"; bash $$script $(VENV); done
	touch $@

model: setup
	@if ls $(MODEL_BASE)/*/saved_model.pb >/dev/null 2>&1; then \
	  echo "model: using $$(ls -d $(MODEL_BASE)/*/ | sort -V | tail -1)"; \
	else $(BIN)/servecap model train --model-base $(MODEL_BASE); fi

quickstart: model
	$(BIN)/servecap run quickstart

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy loadtests targets analysis benchmarks

unit: setup
	$(BIN)/pytest -m "not integration and not docker" -n $(TEST_WORKERS) --dist loadscope

# Docker tests are the CI docker stage's (targets/docker/ci.sh: pytest -m docker). loadscope:
# a module's tests share a worker, so module-scoped servers start once; no reorder: modules
# holding `slow` tests go first (tests/conftest.py), not the modules with the most tests.
# mypy runs beside pytest at low priority: the integration tests mostly wait on timed load and
# mypy fills that time (fresh clone: make test 6:13 with the two one after the other).
test: lint
	@$(MAKE) --no-print-directory -j2 typecheck-low pytest-all

typecheck-low: setup
	nice -n 10 $(BIN)/mypy loadtests targets analysis benchmarks

pytest-all: setup
	$(BIN)/pytest -m "not docker" -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

clean-results:
	rm -rf results
