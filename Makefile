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

clean: ## remove caches and Hydra's logs (keeps results/runs)
	rm -rf .pytest_cache results/hydra
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: help install quickstart test clean
