# The repo's commands. `make help` lists them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Sweeps: `make table2 EXECUTOR=slurm CLUSTER=mycluster SEEDS=10 JOBS=2` (any may be left out; where sbatch
# exists the executor defaults to slurm, EXECUTOR=local trains here). PARTIAL=1 tables what has finished so far
# into results/partial/, marked partial; without it, fewer finished runs than results/ holds is refused.
EXECUTOR ?=
CLUSTER ?=
SEEDS ?=
JOBS ?= 1
PARTIAL ?=
SWEEP_ARGS = $(if $(EXECUTOR),--executor $(EXECUTOR)) $(if $(CLUSTER),--cluster $(CLUSTER)) \
	$(if $(SEEDS),--seeds $(SEEDS)) --jobs $(JOBS)
RESULT_ARGS = $(if $(SEEDS),--seeds $(SEEDS)) $(if $(PARTIAL),--partial)
PLOT_ARGS = $(if $(PARTIAL),--results-dir results/partial)
# `make data DATA_ROOT=/shared/data`: CIFAR-10 and CIFAR-100 downloaded, verified and extracted there.
DATA_ROOT ?= data
PAPER := table1 table2 fig4a fig4b fig5 fig6 fig7 fig8 ablation paper-vs-code
experiment = $(if $(filter ablation,$(1)),ablation-alpha-delta,$(1))

.PHONY: help install test lint train bench clean demo demo-digits figures notebooks data $(PAPER) tuning-free \
	mnist1d-tuning-free

help:  ## list the commands
	@grep -E '^[a-z0-9][a-z0-9 -]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' \
		'{ if (length($$1) > 8) printf "  make %s\n  %-13s %s\n", $$1, "", $$2; else printf "  make %-8s %s\n", $$1, $$2 }'

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

demo: $(STAMP)  ## Table II on MNIST-1D (CNN, 5 seeds, fp32, offline, CPU): runs, table and figure in results/
	$(BIN)/python -m experiments.sweep mnist1d-demo --executor local --jobs 2 --wandb offline
	$(BIN)/python -m experiments.aggregate mnist1d-demo
	$(BIN)/python -m experiments.plots mnist1d-demo

demo-digits: $(STAMP)  ## Table II in miniature on scikit-learn's digits (the mechanism; every method saturates)
	$(BIN)/python -m experiments.sweep demo --executor local --jobs 2 --wandb offline
	$(BIN)/python -m experiments.aggregate demo
	$(BIN)/python -m experiments.plots demo

table1 table2 fig4a fig4b fig5 fig6 fig7 fig8 ablation paper-vs-code: $(STAMP)  ## a paper experiment: train or submit what is missing, then aggregate and plot
	$(BIN)/python -m experiments.sweep $(call experiment,$@) $(SWEEP_ARGS)
	$(BIN)/python -m experiments.aggregate $(call experiment,$@) $(RESULT_ARGS)
	$(BIN)/python -m experiments.plots $(call experiment,$@) $(PLOT_ARGS)

tuning-free mnist1d-tuning-free: $(STAMP)  ## beyond the paper: NeVe vs the tuning-free optimizers (CIFAR / MNIST-1D)
	$(BIN)/python -m experiments.sweep $@ $(SWEEP_ARGS)
	$(BIN)/python -m experiments.aggregate $@ $(RESULT_ARGS)
	$(BIN)/python -m experiments.plots $@ $(PLOT_ARGS)

data: $(STAMP)  ## download, verify and extract CIFAR-10/100 into DATA_ROOT (default data/) before a sweep
	$(BIN)/python -m experiments.data prepare cifar10 cifar100 --root $(DATA_ROOT)

figures: $(STAMP)  ## render every figure that has results, and results/README.md
	$(BIN)/python -m experiments.plots --all

notebooks: $(STAMP)  ## regenerate notebooks/ from the catalog; render those with results into notebooks/rendered/
	$(BIN)/python -m experiments.notebooks --render

train: $(STAMP)  ## one offline training run on the bundled digits data (override ARGS=...)
	$(BIN)/python -m experiments.train --dataset digits --model resnet8 --method neve --batch-size 128 --epochs 30 \
		--milestones 15,22 --patience 2 --precision fp32 --num-workers 0 --wandb offline $(ARGS)

bench: $(STAMP)  ## speed and memory benchmarks (prints ratios)
	$(BIN)/python -m benchmarks.velocity
	$(BIN)/python -m benchmarks.train_throughput
	$(BIN)/python -m benchmarks.mnist1d_epoch

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache
