# The README's two commands: `make run` (train on the built-in synthetic data) and `make test` (the fast tier);
# `make test-all` adds the slow tier (real data, DDP, sweeps, transfer evidence, the wheel; tests/conftest.py SLOW).
# Both install first. TORCH_SPEC picks the torch build: torch==2.13.0 is the CPU wheel on machines that
# carry it locally; elsewhere set e.g. TORCH_SPEC=torch (default CUDA build) or add
# TORCH_INDEX=https://download.pytorch.org/whl/cpu for a CPU-only box.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
BIN := $(VENV)/bin

CONSTRAINTS ?= constraints.txt

.PHONY: install run test test-all lint bench clean constraints

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	@echo "==> [1/3] virtual environment in $(VENV)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "==> [2/3] torch ($(TORCH_SPEC)): skipped when already importable; the first download takes a minute"
	$(BIN)/python -c "import torch" 2>/dev/null || \
		$(BIN)/pip install --progress-bar on $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	@echo "==> [3/3] translearn and its dependencies (editable, with the dev, sweep, text and image extras; versions from $(CONSTRAINTS))"
	$(BIN)/pip install --progress-bar on -c $(CONSTRAINTS) -e ".[dev,sweep,text,image]"
	touch $@
	@echo "==> installed: $(BIN)/translearn-train is ready"

run: install
	$(BIN)/translearn-train $(ARGS)

# One pytest-xdist worker per core (at most 8; each worker's torch gets its share of the cores, tests/conftest.py).
# TEST_WORKERS=0 runs the tests in this process, one after another. `make test` is the fast tier (every module, an
# unmarked test over 5 s fails); `make test-all` runs it, then the slow tier.
TEST_WORKERS ?= auto
PYTEST := $(BIN)/python -m pytest -q --durations=15 -n $(TEST_WORKERS) --maxprocesses=8 --dist worksteal
test: install
	$(PYTEST) -m "not slow" $(ARGS)

test-all: test
	$(PYTEST) -m slow $(ARGS)

lint: install
	$(BIN)/ruff check .

bench: install
	$(BIN)/python experiments/bench/bench_mf.py

# Pin what translearn[dev,sweep,text,image] needs to the versions installed now (run it after the tests pass); torch,
# and what only torch needs, stay free (TORCH_SPEC picks the build). `--check` compares instead of writing.
constraints: install
	$(BIN)/python tools/constraints.py $(CONSTRAINTS)

clean:
	rm -rf $(VENV) .cache outputs multirun
