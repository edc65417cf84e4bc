# One way to do each thing; CI calls these same targets (.ci/run -> make test).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= alarm-bridge.example.yaml

.PHONY: install install-test run lint format typecheck test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	# Helm's linter as a library: it declares Python 3.12 but loads on 3.11 (on 3.12 the extra brings it).
	$(BIN)/pip install --quiet --disable-pip-version-check --ignore-requires-python --no-deps 'helm-sdkpy>=0.1.32,<0.2'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

run: install
	$(BIN)/alarm-bridge serve --config $(CONFIG)

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install-test
	$(BIN)/mypy

test: install-test
	scripts/test-services
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

# The benchmarks (numbers, never pass/fail; not part of `make test`): docs/performance.md. BENCH_ARGS=--quick for a
# smoke run, BENCH_ARGS=--only=B1,B5 for some of them. Their own tools: Apprise (the B2 reference), py-spy, wrk,
# valgrind (B1's instruction counts).
$(VENV)/.installed-bench: pyproject.toml | $(VENV)/.installed-test
	$(BIN)/pip install --quiet --disable-pip-version-check 'apprise>=1.9,<3' 'py-spy>=0.3.14,<1'
	touch $@

bench: install-test $(VENV)/.installed-bench
	@{ command -v wrk && command -v valgrind; } >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk valgrind >/dev/null; } || \
		{ echo "bench: please install wrk and valgrind (Debian packages)" >&2; exit 1; }
	scripts/test-services
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis data test-artifacts
