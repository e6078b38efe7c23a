# The repo's commands. `make help` lists them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install test lint train bench clean

help:  ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv and install neve (editable) with every dependency

# The stamp makes a second `make install` a no-op until a dependency file changes.
$(STAMP): requirements.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt -c constraints.txt
	$(BIN)/python -m pip install --no-deps --no-build-isolation -e .
	touch $(STAMP)

test: $(STAMP)  ## lint and run the test suite
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)  ## ruff only
	$(BIN)/ruff check .

train: $(STAMP)  ## one offline training run on the bundled digits data (override ARGS=...)
	$(BIN)/python -m experiments.train --dataset digits --model resnet8 --method neve --wandb offline $(ARGS)

bench: $(STAMP)  ## speed and memory benchmarks (prints ratios)
	$(BIN)/python benchmarks/velocity.py
	$(BIN)/python benchmarks/train_throughput.py

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache
