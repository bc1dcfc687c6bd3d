# Two-command setup: `make demo` and `make test` work on a fresh machine that has only Python 3.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PREIMAGE_DATA ?= $(abspath ../shared/data)
export PREIMAGE_DATA

.PHONY: demo test lint bench clean

# The venv is (re)built when pyproject.toml changes; torch is pinned first so that no CUDA build is pulled.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev,textures]"
	touch $@

.venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/preimage demo --out runs/demo --overwrite

test: $(VENV)/.installed
	$(VENV)/bin/ruff check preimage tests bench
	$(PY) -m pytest -n 2 --durations=15

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check preimage tests bench
	$(VENV)/bin/ruff format --check preimage tests bench

bench: $(VENV)/.installed
	$(PY) bench/mnist_firevnet.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
