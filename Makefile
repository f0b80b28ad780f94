# servecap developer entry points. The README's quick start is `make quickstart` + `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Offline CIFAR-10 copy beside the checkout, when present; otherwise the Keras download is used.
SERVECAP_CIFAR10_DIR ?= $(abspath $(wildcard ../shared/datasets/cifar10-jpeg))
export SERVECAP_CIFAR10_DIR
MODEL_BASE ?= artifacts/models/cifar10_cnn

.PHONY: setup model quickstart test lint typecheck unit clean-results

setup: $(VENV)/.installed
	@scripts/system-deps.sh

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
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
	$(BIN)/pytest -m "not integration"

test: lint typecheck
	$(BIN)/pytest

clean-results:
	rm -rf results
