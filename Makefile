PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# The lowest redis-py that pyproject.toml admits ("redis>=X"): test-redis-lowest runs the Redis tests on it.
REDIS_LOWEST := $(shell sed -n 's/^ *"redis>=\([0-9.]*\)[",].*/\1/p' pyproject.toml)
LOW_VENV ?= .venv-redis-low
LOW_BIN := $(LOW_VENV)/bin

.PHONY: demo ui test test-redis-lowest lint typecheck bench clean

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

$(VENV)/.installed-web: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[web]'
	touch $@

# the HTTP API and dashboard of the demo's jobs
ui: $(VENV)/.installed-web
	$(BIN)/durapod --store sqlite:///durapod-demo.db ui

lint: $(VENV)/.installed-test
	$(BIN)/ruff check durapod tests bench examples
	$(BIN)/ruff format --check durapod tests bench examples

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

test: $(VENV)/.installed-test
	$(BIN)/ruff check durapod tests bench examples
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

$(LOW_BIN)/python:
	$(PYTHON) -m venv $(LOW_VENV)
	$(LOW_BIN)/python -m pip install --quiet --upgrade pip

# one resolve, so that the test tools (pytest-redis...) are ones that admit that redis-py
$(LOW_VENV)/.installed-redis-$(REDIS_LOWEST): pyproject.toml | $(LOW_BIN)/python
	@test -n "$(REDIS_LOWEST)" || { echo "no redis>=X bound found in pyproject.toml" >&2; exit 1; }
	$(LOW_BIN)/python -m pip install --quiet -e '.[test]' 'redis==$(REDIS_LOWEST)'
	touch $@

# The Redis tests (marked redis) on the lowest admitted redis-py; a skipped one fails.
test-redis-lowest: $(LOW_VENV)/.installed-redis-$(REDIS_LOWEST)
	@$(LOW_BIN)/python -c 'import redis, packaging.version as v; print("redis-py", redis.__version__); raise SystemExit(v.Version(redis.__version__) != v.Version("$(REDIS_LOWEST)"))'
	DURAPOD_REQUIRE_REDIS=1 $(LOW_BIN)/python -m pytest -m redis $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(BIN)/python bench/throughput.py --store memory --compare-concurrency 50,1000
	$(BIN)/python bench/throughput.py --store sqlite --compare-concurrency 50,1000
	$(BIN)/python bench/throughput.py --store redis
	$(BIN)/python bench/throughput.py --store postgres   # the server at DURAPOD_POSTGRES_URL
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/latency.py

clean:
	rm -rf $(VENV) $(LOW_VENV) .mypy_cache .ruff_cache .pytest_cache durapod-demo.db*
