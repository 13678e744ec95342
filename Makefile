# wbpose: every target installs what it needs into .venv first (idempotent, see `setup`).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.wbpose-installed
PYTEST_ARGS ?= -m "not slow and not gpu"

.PHONY: setup demo test test-slow test-all lint docs bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel setuptools
	# torch first, pinned: a bare `torch` (or one pulled in by another package) would fetch a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	# xtcocotools' wheel is built against numpy 1; build it from source against the installed numpy 2.
	$(BIN)/pip install -q "numpy>=2" cython
	$(BIN)/pip install -q --no-binary xtcocotools --no-build-isolation xtcocotools
	# the same extras as the README's Install section
	$(BIN)/pip install -q -e ".[dev,onnx,docs]"
	touch $(STAMP)

setup: $(STAMP)

## The main job: synthetic data -> train the tiny HRNet on CPU -> evaluate (per-part AP table) -> prediction PNG.
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## The tests marked slow (minutes each: kept out of `make test`).
test-slow: $(STAMP)
	$(BIN)/python -m pytest -m "slow and not gpu"

test-all: $(STAMP)
	$(BIN)/python -m pytest -m "not gpu"

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/ruff format --check src tests scripts benchmarks
	$(BIN)/python scripts/check_layers.py
	$(BIN)/python benchmarks/render.py --check

## The documentation site (mkdocs-material) into site/; --strict: a broken link or a page missing from nav fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

## The CPU benchmarks (about 4 minutes on 2 cores), their json into docs/benchmark_results/, then the docs tables.
BENCH_OUT := docs/benchmark_results
bench: $(STAMP)
	$(BIN)/python benchmarks/codecs.py --json $(BENCH_OUT)/codecs.json
	$(BIN)/python benchmarks/model.py --archs tiny w32 --no-384 --json $(BENCH_OUT)/model.json
	$(BIN)/python benchmarks/data_pipeline.py --json $(BENCH_OUT)/data_pipeline.json
	$(BIN)/python benchmarks/metric.py --images 200 --repeat 5 --json $(BENCH_OUT)/metric.json
	$(BIN)/python benchmarks/render.py

clean:
	rm -rf $(VENV) outputs multirun data/synthetic site
