PY ?= python
.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-zA-Z_%-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

install: ## install the package and the test tools (editable)
	$(PY) -m pip install -e ".[dev]"

quickstart: ## LeNet-300-100 on the bundled MNIST subset, the paper's recipe at 40 epochs: FlipOut to 99.61 % (offline, about 30 s on 2 idle CPU cores)
	flipout-train experiment=quickstart

test: ## the whole test suite, slow end-to-end runs and the manual's commands included (what CI runs; about 26 min on 2 idle CPU cores)
	$(PY) -m pytest -q

test-fast: ## the suite without the slow end-to-end runs (-m "not slow")
	$(PY) -m pytest -q -m "not slow"

docs: ## the manual: write the generated reference pages (scripts/docs_reference.py), then build the site strictly into site/
	$(PY) scripts/docs_reference.py
	$(PY) -m mkdocs build --strict

lint: ## the import contract: layers and folders import only downwards (pyproject.toml [tool.importlinter])
	lint-imports

BENCH_ARGS ?=
bench: ## training throughput of FlipOut and the magnitude baselines vs dense: LeNet-300-100 and VGG19 on CPU or GPU (results/bench/<device>.json)
	flipout-bench --model lenet300_100 --steps 50 --rounds 9 --warmup 10 $(BENCH_ARGS)
	flipout-bench --model vgg19 --batch-size 128 --steps 2 --rounds 8 --warmup 1 $(BENCH_ARGS)

bench-gpu: ## the GPU matrix: VGG19 and ResNet18 on CIFAR shapes, fp32/bf16, eager/compiled (needs CUDA)
	for model in vgg19 resnet18; do for prec in fp32 bf16; do for comp in "" --compile; do \
	  flipout-bench --device cuda --model $$model --batch-size 128 --precision $$prec --channels-last $$comp \
	    --methods dense global_magnitude flipout_no_noise flipout --steps 50 --rounds 5 --warmup 20 $(BENCH_ARGS) \
	    || exit 1; \
	done; done; done

.PHONY: bench-startup
bench-startup: ## a whole quickstart process by phase (import, config, data, build, first step, end of run), 3 runs, beside a fresh torch import; then a 3-job sweep process (results/bench/startup.json)
	flipout-bench --startup --runs 3 --sweep-jobs 3 $(BENCH_ARGS)

# The paper's sweeps (conf/sweep/paper_*.yaml): 3 models x (75 pruning runs + 15 SNIP + 3 dense + Hoyer-Square).
PAPER_SWEEPS ?= paper_vgg19 paper_vgg19_snip paper_vgg19_dense paper_vgg19_hoyer \
	paper_resnet18 paper_resnet18_snip paper_resnet18_dense paper_resnet18_hoyer \
	paper_densenet121 paper_densenet121_snip paper_densenet121_dense paper_densenet121_hoyer
# LAUNCHER=local (joblib, one job per GPU) or LAUNCHER=slurm (submitit); empty: one job after another
LAUNCHER ?=
# extra overrides for every job, e.g. SWEEP_ARGS="hydra.launcher.partition=gpu"
SWEEP_ARGS ?=
RESULTS ?= results
comma := ,
empty :=
space := $(empty) $(empty)
paper-runs: ## every paper sweep (resumable; make -j paper-runs LAUNCHER=slurm submits them side by side); first prints its run count and GPU-hours estimate
	flipout-report --plan --results-dir $(RESULTS) --sweeps $(subst $(space),$(comma),$(strip $(PAPER_SWEEPS)))
	$(MAKE) $(addprefix sweep-,$(PAPER_SWEEPS))

sweep-%: ## one sweep preset (conf/sweep/<name>.yaml), e.g. make sweep-tiny or make sweep-paper_vgg19 LAUNCHER=local
	flipout-train -m +sweep=$* $(if $(LAUNCHER),hydra/launcher=$(LAUNCHER)) results_dir=$(RESULTS) $(SWEEP_ARGS)

paper-tables: ## results/runs -> results/tables/*.md|csv and results/curves/*.png|csv (missing runs: tables/missing.md)
	flipout-report --results-dir $(RESULTS)

clean: ## remove caches and Hydra's logs (keeps results/runs)
	rm -rf .pytest_cache results/hydra
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: help install quickstart test test-fast docs lint bench bench-gpu paper-runs paper-tables clean
