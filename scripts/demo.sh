#!/usr/bin/env bash
# heron's main job, end to end, in a few minutes on 2 CPU cores (what `make demo` runs after setup):
#   1. build a learned-sparse index: splade-tiny over BEIR NFCorpus on heron's inverted index
#   2. answer one query from it, with titles
#   3. build a dense index: all-MiniLM-L6-v2 over the same corpus on FAISS
#   4. evaluate BM25, SPLADE, dense and SPLADE+dense (reciprocal-rank fusion) on the test queries,
#      each compared with BM25 by paired t-test and Wilcoxon signed-rank
# Indexes go to indexes/ (a second run reuses them); runs and metrics to results/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
HERON="${HERON:-.venv/bin/heron}"
DATASET="${DEMO_DATASET:-nfcorpus}"
SPLADE="indexes/$DATASET-splade-tiny"
DENSE="indexes/$DATASET-minilm-flat"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
started=$SECONDS

step "1/4 SPLADE: encode $DATASET with splade-tiny and build heron's inverted index → $SPLADE"
[[ -f "$SPLADE/manifest.json" ]] && echo "(already built)" || \
  "$HERON" build-index --dataset "$DATASET" --encoder splade --model splade-tiny --output "$SPLADE"

step "2/4 one query, answered from the index with titles"
"$HERON" query --index "$SPLADE" -k 5 "does vitamin D lower the risk of cancer"

step "3/4 dense: encode $DATASET with all-MiniLM-L6-v2 and build a FAISS index → $DENSE"
[[ -f "$DENSE/manifest.json" ]] && echo "(already built)" || \
  "$HERON" build-index --dataset "$DATASET" --encoder dense --model minilm --faiss flat --output "$DENSE"

step "4/4 evaluate on the $DATASET test queries: BM25 against SPLADE, dense and their fusion"
"$HERON" eval -d "$DATASET" -r bm25 -r "$SPLADE" -r "$DENSE" -r "$SPLADE+$DENSE" --results-dir results/demo

echo
echo "demo finished in $((SECONDS - started)) s; next: README.md (bundles, the HTTP server, training)"
