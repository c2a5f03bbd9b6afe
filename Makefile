# heron — the two commands a newcomer needs:
#   make demo    set everything up, then the main job on BEIR NFCorpus: a SPLADE index built and queried,
#                a dense index, and BM25 / SPLADE / dense / fused runs evaluated with significance
#   make test    set everything up, then run the test suite
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,lucene,server,distributed

# Datasets by name come from $HERON_DATA first; default to the shared copy beside this checkout.
HERON_DATA ?= $(if $(wildcard ../shared/data/beir),$(abspath ../shared/data/beir),)
export HERON_DATA

.PHONY: setup demo test lint clean

setup:
	@bash scripts/setup.sh $(EXTRAS)

demo: setup
	bash scripts/demo.sh

test: setup
	$(BIN)/python -m pytest -q -n auto --dist loadfile   # one worker per core; a test file stays on one worker

lint: setup
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) results .pytest_cache
