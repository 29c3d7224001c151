# evalkit: two commands for users (make run, make test); the rest are for developers.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-slow lint typecheck docs bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[bayes,docs,dev]"
	touch $(STAMP)

## run: install everything and run the default analysis, writing to results/
run: $(STAMP)
	$(BIN)/evalkit run coaching_district --out results/coaching_district

## test: install everything, lint, type-check, run the tests and build the docs
test: $(STAMP) lint typecheck
	@$(BIN)/python -m pytest -m "not slow and not r_live"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: that is a failure"; exit 1; fi; exit $$rc
	$(MAKE) --no-print-directory docs

## test-slow: the slower simulation tests (CI runs them after make test)
test-slow: $(STAMP)
	@$(BIN)/python -m pytest -m "slow and not r_live"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no slow tests collected"; exit 0; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check evalkit tests benchmarks conftest.py
	$(BIN)/ruff format --check evalkit tests benchmarks conftest.py

typecheck: $(STAMP)
	$(BIN)/mypy

## docs: build the documentation, executing every example (fails on any error)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(STAMP)
	$(BIN)/python benchmarks/effectsize.py
	$(BIN)/python benchmarks/meta.py --quick --no-loo
	$(BIN)/python benchmarks/multilevel.py
	$(BIN)/python benchmarks/power.py
	$(BIN)/python benchmarks/coaching.py
	$(BIN)/python benchmarks/tables.py
	$(BIN)/python benchmarks/intake.py
	$(BIN)/python benchmarks/meta_selection.py
	$(BIN)/python benchmarks/crossed.py
	$(BIN)/python benchmarks/glmm.py
	$(BIN)/python benchmarks/mediation.py
	$(BIN)/python benchmarks/state_scale.py

clean:
	rm -rf $(VENV) site results .pytest_cache .mypy_cache .ruff_cache
