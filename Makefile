.PHONY: setup test report lint bench
PY := .venv/bin/python

setup:
	@bash scripts/setup.sh

# pytest exits 5 when it collects nothing; that must fail, and it does (non-zero).
# Two workers (the machine's two cores), a test file to a worker so that each file's
# module-scoped R fits run once.
test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile

lint: setup
	$(PY) -m ruff check glmmbench reference_r simulate tests

report: setup
	$(PY) -m glmmbench.cli run --suite quick --out reports/latest

bench: setup
	$(PY) -m glmmbench.cli bench
