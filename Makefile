# fixproxy — make test creates .venv if missing, installs the project with its test extras, runs the suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= cfg/fixproxy.toml

.PHONY: test run check-config venv clean unit integration

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel setuptools

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

integration: $(STAMP)
	$(PY) -m pytest -q tests/integration

run: $(STAMP)
	$(VENV)/bin/fixproxy run --config $(CONFIG) --with-venue-sim

check-config: $(STAMP)
	$(VENV)/bin/fixproxy check-config --config $(CONFIG)

clean:
	rm -rf var .pytest_cache .hypothesis
