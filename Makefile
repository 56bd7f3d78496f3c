# Developer entry points. Everything runs from .venv, which `make venv` creates.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
APT_TEST_PKGS := postgresql openssh-server wrk chromium fonts-wqy-zenhei
# bench/ may not exist yet; ruff errors on missing paths.
LINT_PATHS := $(wildcard src tests bench)

.PHONY: help venv run test lint bench clean apt-deps test-pg-stop

help:
	@echo "make venv   create/refresh .venv (pip install -e '.[dev]')"
	@echo "make run    migrate the DB, print demo credentials, serve (NODEOPS_* env vars apply)"
	@echo "make test   apt deps + throwaway PostgreSQL + ruff + mypy + pytest"
	@echo "make lint   ruff + mypy"
	@echo "make bench  log API benchmark"
	@echo "make clean  stop/delete the test PostgreSQL, remove var/ and caches (keeps .venv)"

venv: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-install only when pyproject.toml changed since the last successful install.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -q --upgrade pip
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	touch $@

run: venv
	$(BIN)/nodeops db upgrade
	exec $(BIN)/nodeops serve --demo

apt-deps:
	bash scripts/ensure-apt.sh $(APT_TEST_PKGS)

lint: venv
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/mypy

test: venv apt-deps
	bash scripts/test-postgres.sh start
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/mypy
	NODEOPS_TEST_PG_URL="$$(cat var/test-pg/url)" $(BIN)/pytest

bench: venv
	$(BIN)/python bench/log_api.py

test-pg-stop:
	bash scripts/test-postgres.sh stop

clean:
	bash scripts/test-postgres.sh destroy
	rm -rf var test-artifacts .pytest_cache .mypy_cache .ruff_cache .hypothesis
