# Set-up and the day-one commands. `make train` and `make test` create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= configs/dqn_cartpole.yaml

.PHONY: setup bench-setup train test test-fast test-extended docs lint format clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

# Stable-Baselines3 for the side-by-side benchmarks (benchmarks/vs_sb3.py, time_to_solve.py).
bench-setup: setup
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,bench]"

train: setup
	$(BIN)/rlkit train $(CONFIG)

# The test files run on one pytest-xdist worker per core (each file whole on one worker, so that
# its module fixtures are built once): most tests wait on a training subprocess starting up,
# and one after another they kept the second core idle half the time.
PARALLEL ?= -n auto --dist loadfile

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PARALLEL)

# Everything but the long learning runs.
test-fast: setup
	$(BIN)/python -m pytest $(PARALLEL) -m "not slow and not extended"

# The learning claims not checked in CI (about 12 minutes on 2 cores). One at a time: each
# trains three seeds side by side already.
test-extended: setup
	$(BIN)/python -m pytest -m extended

# The documentation site, docs/_build/html/index.html; warnings are errors (a broken link or
# reference, a page outside the table of contents). `make test` builds it too (tests/test_docs.py).
docs: setup
	$(BIN)/python -m sphinx -W --keep-going -q -b html docs docs/_build/html
	@echo "docs: docs/_build/html/index.html"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache docs/_build
