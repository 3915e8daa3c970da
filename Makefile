# Two commands do all the setup on a fresh machine:
#   make demo   - a real end-to-end sync on the embedded defaults
#   make test   - the whole test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint install benchmark benchmark-landing benchmark-fleet sandbox clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q -e . --no-deps
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m localdev.demo

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

benchmark: $(STAMP)
	$(PY) benchmarks/sync_benchmark.py $(BENCH_ARGS)
	$(PY) benchmarks/idle_benchmark.py
	$(PY) benchmarks/fleet_calls_benchmark.py

benchmark-landing: $(STAMP)
	$(PY) benchmarks/landing_benchmark.py $(BENCH_ARGS)

sandbox: $(STAMP)
	$(PY) -m crm_sandbox --port 8765 --state-file .local/sandbox-state.json

clean:
	rm -rf .local

benchmark-fleet: $(STAMP)
	$(PY) benchmarks/fleet_benchmark.py $(BENCH_ARGS)
