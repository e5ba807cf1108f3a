PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/durapod --store sqlite:///durapod-demo.db demo

lint: $(VENV)/.installed-test
	$(BIN)/ruff check durapod tests bench examples
	$(BIN)/ruff format --check durapod tests bench examples

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

test: $(VENV)/.installed-test
	$(BIN)/ruff check durapod tests bench examples
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(BIN)/python bench/throughput.py --store memory --compare-concurrency 50,1000
	$(BIN)/python bench/throughput.py --store sqlite
	$(BIN)/python bench/throughput.py --store redis
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/latency.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache durapod-demo.db*
