# Two commands on a fresh machine: `make demo` and `make test`. Nothing else is needed first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME := $(CURDIR)/.dagster_home

.PHONY: demo test lint ui live bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(DAGSTER_HOME)/dagster.yaml:
	mkdir -p $(DAGSTER_HOME)
	ln -sf $(CURDIR)/dagster.yaml $(DAGSTER_HOME)/dagster.yaml

demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/clm demo

# two workers, one module each at a time (module fixtures are built once): most of the
# slow tests wait on servers and subprocesses, so two share the 2 cores CI has. The live
# loop runs alone afterwards: its sensors' runs are timed against a replayed market, and
# sharing the cores with the other worker made it 2-3x slower (past its deadline once).
LIVE_LOOP := clm_assets_tests/test_live_loop.py
test: $(STAMP)
	$(BIN)/ruff check clm_assets clm_assets_tests benchmarks
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder --ignore=$(LIVE_LOOP)
	$(BIN)/python -m pytest $(LIVE_LOOP)

lint: $(STAMP)
	$(BIN)/ruff check clm_assets clm_assets_tests benchmarks
	$(BIN)/ruff format --check clm_assets clm_assets_tests benchmarks

ui: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

live: $(STAMP)
	$(BIN)/python -m clm_assets.live.loop

# writes benchmarks/RESULTS.md; `make bench BENCH="--only io,vectorbt"` runs some (no file)
bench: $(STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH)

clean:
	rm -rf $(VENV) data reports .live .pytest_cache benchmarks/.venv-vectorbt
