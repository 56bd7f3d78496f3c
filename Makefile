# Developer entry points. Everything runs from .venv, which `make venv` creates.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SERVICE_STAMP := $(VENV)/.installed-service
DEV_STAMP     := $(VENV)/.installed-dev
UV_PIN    := uv==0.13.9
LOCK_OPTS := --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes --no-header
APT_TEST_PKGS := postgresql redis-server openssh-server sudo iproute2 wrk chromium fonts-wqy-zenhei
# bench/ may not exist yet; ruff errors on missing paths.
LINT_PATHS := $(wildcard src tests bench)

.PHONY: help venv venv-service run cluster test lint lock bench clean apt-deps test-pg-stop

help:
	@echo "make venv   create/refresh .venv from requirements/dev.lock"
	@echo "make run    install from requirements/service.lock, migrate the DB, print demo credentials, serve"
	@echo "make cluster  celery mode on this machine: PostgreSQL, Redis, nodeops serve and two workers"
	@echo "            on 127.0.0.1, until Ctrl-C (scripts/cluster.sh; data in var/cluster)"
	@echo "make test   apt deps + throwaway PostgreSQL and Redis + ruff + mypy + pytest"
	@echo "make lint   ruff + mypy"
	@echo "make lock   re-resolve requirements/*.lock from pyproject.toml, upgrading every package"
	@echo "            (make lock UPGRADE=0: keep the current pins, only add what pyproject.toml gained)"
	@echo "make bench  log API benchmark"
	@echo "make clean  stop/delete the test PostgreSQL and Redis and the cluster, remove var/ and caches (keeps .venv)"

venv: $(DEV_STAMP)
venv-service: $(SERVICE_STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Installs take exactly the locked versions and hashes, from the package index only: the machine's own pip
# configuration (extra indexes, local wheel folders, constraints) is ignored so every machine installs the same
# files. `--no-deps` because the lock already lists every transitive dependency.
PIP_LOCKED := env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null \
	$(BIN)/python -m pip install --disable-pip-version-check -q --require-hashes --no-deps
PIP_SELF := env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null \
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation --no-index -e .

$(SERVICE_STAMP): requirements/service.lock pyproject.toml | $(BIN)/python
	$(PIP_LOCKED) -r requirements/service.lock
	$(PIP_SELF)
	touch $@

$(DEV_STAMP): requirements/dev.lock pyproject.toml | $(BIN)/python
	$(PIP_LOCKED) -r requirements/dev.lock
	$(PIP_SELF)
	touch $@ $(SERVICE_STAMP)

# A deliberate upgrade: re-resolve both locks (the dev lock constrained to the service lock's versions), then
# `make test` before committing them. `make lock` upgrades every package to its newest allowed version;
# `make lock UPGRADE=0` keeps the versions already pinned and only adds (or drops) what pyproject.toml changed.
UPGRADE ?= 1
LOCK_UPGRADE := $(if $(filter 1,$(UPGRADE)),--upgrade,)
lock:
	$(PYTHON) -m venv var/lock-venv
	var/lock-venv/bin/python -m pip install --disable-pip-version-check -q $(UV_PIN)
	var/lock-venv/bin/uv pip compile -q $(LOCK_UPGRADE) pyproject.toml requirements/build.in $(LOCK_OPTS) \
		-o requirements/service.lock
	var/lock-venv/bin/uv pip compile -q $(LOCK_UPGRADE) pyproject.toml requirements/build.in --extra dev \
		-c requirements/service.lock $(LOCK_OPTS) -o requirements/dev.lock

run: venv-service
	$(BIN)/nodeops db upgrade
	exec $(BIN)/nodeops serve --demo

cluster: venv-service
	exec bash scripts/cluster.sh run

apt-deps:
	bash scripts/ensure-apt.sh $(APT_TEST_PKGS)

lint: venv
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/mypy

test: venv apt-deps
	bash scripts/test-postgres.sh start
	bash scripts/test-redis.sh start
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/mypy
	NODEOPS_TEST_PG_URL="$$(cat var/test-pg/url)" NODEOPS_TEST_BROKER_URL="$$(cat var/test-redis/url)" $(BIN)/pytest

bench: venv
	$(BIN)/python bench/log_api.py

test-pg-stop:
	bash scripts/test-postgres.sh stop

clean:
	bash scripts/cluster.sh stop
	bash scripts/test-postgres.sh destroy
	bash scripts/test-redis.sh stop
	rm -rf var test-artifacts .pytest_cache .mypy_cache .ruff_cache .hypothesis
