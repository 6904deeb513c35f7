# Development shortcuts. Set-up first: bash scripts/setup.sh (makes .venv, with ruff).
PY ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python)
RUFF ?= $(if $(wildcard .venv/bin/ruff),.venv/bin/ruff,ruff)
# --quick writes its JSON here, not over the committed full-run results in benchmarks/results.json
BENCH_OUT ?= /tmp/stilts-bench-quick.json

.PHONY: help test test-all lint bench

help:
	@echo "make test      fast tests: pytest -q -m 'not slow'"
	@echo "make test-all  every test, the slow end-to-end ones included (what CI runs)"
	@echo "make lint      ruff check + ruff format --check (changes nothing)"
	@echo "make bench     python -m benchmarks.run --quick (about 3.5 min on 2 cores)"

test:
	$(PY) -m pytest -q -m "not slow"

test-all:
	$(PY) -m pytest -q

lint:
	$(RUFF) check .
	$(RUFF) format --check .

bench:
	$(PY) -m benchmarks.run --quick --out $(BENCH_OUT)
