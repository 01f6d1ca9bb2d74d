.PHONY: setup test report lint bench
PY := .venv/bin/python

setup:
	@bash scripts/setup.sh

# pytest exits 5 when it collects nothing; that must fail, and it does (non-zero).
test: setup
	$(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check glmmbench reference_r simulate tests

report: setup
	$(PY) -m glmmbench.cli run --suite quick --out reports/latest

bench: setup
	$(PY) -m glmmbench.cli bench
