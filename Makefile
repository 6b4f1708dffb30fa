PY ?= python
.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

install: ## install the package and the test tools (editable)
	$(PY) -m pip install -e ".[dev]"

quickstart: ## LeNet-300-100 on the bundled MNIST subset, FlipOut to 99% sparsity (offline, ~1 min)
	flipout-train experiment=quickstart

test: ## the whole test suite (CPU, a few minutes)
	$(PY) -m pytest -q

BENCH_ARGS ?=
bench: ## training throughput of every method vs dense: VGG19 and LeNet-300-100 (writes results/bench/<device>.json)
	flipout-bench --model lenet300_100 --steps 50 --rounds 5 --warmup 10 $(BENCH_ARGS)
	flipout-bench --model vgg19 --batch-size 128 --steps 2 --rounds 3 --warmup 1 $(BENCH_ARGS)

clean: ## remove caches and Hydra's logs (keeps results/runs)
	rm -rf .pytest_cache results/hydra
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: help install quickstart test bench clean
