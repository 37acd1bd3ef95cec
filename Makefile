# fixproxy — make test creates .venv if missing, installs the project with its test extras, runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= cfg/fixproxy.toml
BENCH_OUT ?= var/bench/bench.json
BENCH_ARGS ?=

.PHONY: test lint run run-cluster check-config venv clean unit integration bench chromium browser postgresql

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel setuptools

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# The browser tests drive Debian's chromium through Playwright (which never downloads a browser here).
chromium:
	@command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

# The cluster tests start throwaway PostgreSQL servers of their own (fixproxy/cluster/localdb.py) from
# Debian's `postgresql` package: installed when no initdb is on PATH or under /usr/lib/postgresql/*/bin.
postgresql:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql)

# ruff (lint, then formatting) and mypy (configured in pyproject.toml); `make test` runs them first.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint $(STAMP) chromium postgresql
	$(PY) -m pytest -q

browser: $(STAMP) chromium postgresql
	$(PY) -m pytest -q tests/browser

unit: $(STAMP) postgresql
	$(PY) -m pytest -q tests/unit

integration: $(STAMP) postgresql
	$(PY) -m pytest -q tests/integration

# The example config reads the risk desk's FIX password from FIXPROXY_DESK_PASSWORD: made once
# into var/desk-password (readable by you alone) and printed. The example instrument prices count
# as today's (a reference price is as old as its file).
DESK_PASSWORD := var/desk-password

$(DESK_PASSWORD):
	@mkdir -p var && umask 077 && $(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(18))' > $@

run: $(STAMP) $(DESK_PASSWORD)
	@echo "fixproxy: risk-desk FIX session: Username desk, Password $$(cat $(DESK_PASSWORD)) (from $(DESK_PASSWORD))"
	@touch $(dir $(CONFIG))instruments.csv
	FIXPROXY_DESK_PASSWORD="$$(cat $(DESK_PASSWORD))" $(VENV)/bin/fixproxy run --config $(CONFIG) --with-venue-sim

# Two instances (a, b) of $(CONFIG) sharing the firm's limits and kill switch through a PostgreSQL of
# their own on var/cluster/pg (kept between runs); configs in var/cluster/<instance>/, ports moved by
# 100 per instance (docs/operations.md "Several instances on one machine"). Ctrl-C stops all three.
run-cluster: $(STAMP) $(DESK_PASSWORD) postgresql
	@echo "fixproxy: risk-desk FIX session: Username desk, Password $$(cat $(DESK_PASSWORD)) (from $(DESK_PASSWORD))"
	@touch $(dir $(CONFIG))instruments.csv
	FIXPROXY_DESK_PASSWORD="$$(cat $(DESK_PASSWORD))" $(PY) scripts/run_cluster.py --config $(CONFIG) --dir var/cluster

# The benchmark: direct, two relays and six proxy setups (one of them a cluster instance, two the active
# of an HA pair with its standby, with a PostgreSQL of their own for the run; BENCH_ARGS=--no-cluster
# without PostgreSQL, BENCH_ARGS=--no-ha without the HA pairs) driven by light peers
# (peers on core 0, the proxy and its children on core 1), interleaved, in one run (under 10 minutes; BENCH_ARGS=--quick for
# about three and a half minutes with halt and replay). Prints the report and writes $(BENCH_OUT), with a
# py-spy profile beside it; then the halt-and-cancel time for 1,000 working orders and the replay
# speed on 100,000 orders.
bench: $(STAMP) postgresql
	$(PY) -m bench run --out $(BENCH_OUT) $(BENCH_ARGS)
	$(PY) -m bench halt --orders 1000 --out $(dir $(BENCH_OUT))halt.json
	$(PY) -m bench replay --orders 100000 | tee $(dir $(BENCH_OUT))replay.json

check-config: $(STAMP) $(DESK_PASSWORD)
	FIXPROXY_DESK_PASSWORD="$$(cat $(DESK_PASSWORD))" $(VENV)/bin/fixproxy check-config --config $(CONFIG)

clean:
	rm -rf var .pytest_cache .hypothesis
