# heron — the two commands a newcomer needs:
#   make demo    set everything up, then evaluate BM25 (native and Lucene) on BEIR SciFact
#   make test    set everything up, then run the test suite
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
EXTRAS ?= dev,lucene,server

# Datasets by name come from $HERON_DATA first; default to the shared copy beside this checkout.
HERON_DATA ?= $(if $(wildcard ../shared/data/beir),$(abspath ../shared/data/beir),)
export HERON_DATA

.PHONY: setup demo test lint clean

setup:
	@bash scripts/setup.sh $(EXTRAS)

demo: setup
	$(BIN)/heron eval --dataset scifact --retriever bm25 --retriever bm25-lucene

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) results .pytest_cache
