#!/usr/bin/env bash
# The multi-vector experiments (ColBERT, MUVERA, CRISP) of docs/RESULTS.md and docs/BENCHMARKS.md.
# Trains a MiniLM ColBERT with and without training-time CRISP (C25) on each dataset's train qrels,
# encodes the corpus once (token vectors cached), builds brute-force/MUVERA (FDEs in FAISS Flat and
# HNSW), post-hoc CRISP and pruning indexes, evaluates them, and runs the two benchmarks (FDE recall
# against fastembed; per-query latency).
# CPU cost (2026-12-01, 2 cores): a training step (16 queries, 16 positives + 16 BM25 hard negatives,
# 180-token documents) takes 3.5 s on 2 threads, ~5.8 s on 1 thread, so the run trained the two models of
# a dataset side by side with THREADS=1 (two lanes, ~20 min per model at 200 steps).
set -euo pipefail
cd "$(dirname "$0")/.."
H=.venv/bin/heron
R=${RESULTS:-results/multivector}
STEPS=${STEPS:-200}
T=${THREADS:+--threads $THREADS}
for ds in ${DATASETS:-scifact nfcorpus}; do
  [[ -f checkpoints/$ds-colbert/training.json ]] || $H train colbert -d $ds --steps $STEPS $T --output checkpoints/$ds-colbert
  [[ -f checkpoints/$ds-colbert-C25/training.json ]] || $H train colbert -d $ds --steps $STEPS $T --crisp C25 --output checkpoints/$ds-colbert-C25
  [[ -d indexes/$ds-colbert-muvera ]] || $H build-index --dataset $ds --encoder multivector --model checkpoints/$ds-colbert --muvera --output indexes/$ds-colbert-muvera
  [[ -d indexes/$ds-colbert-muvera-hnsw ]] || $H build-index --dataset $ds --encoder multivector --model checkpoints/$ds-colbert --muvera --faiss hnsw --output indexes/$ds-colbert-muvera-hnsw
  [[ -d indexes/$ds-colbert-C25-trained ]] || $H build-index --dataset $ds --encoder multivector --model checkpoints/$ds-colbert-C25 --crisp C25 --output indexes/$ds-colbert-C25-trained
  [[ -d indexes/$ds-colbert-C25-trained-full ]] || $H build-index --dataset $ds --encoder multivector --model checkpoints/$ds-colbert-C25 --output indexes/$ds-colbert-C25-trained-full
  [[ -d indexes/$ds-colbert-C25-posthoc ]] || $H build-index --dataset $ds --encoder multivector --model checkpoints/$ds-colbert --crisp C25 --output indexes/$ds-colbert-C25-posthoc
  for prune in tail spacing; do
    [[ -d indexes/$ds-colbert-$prune ]] || $H build-index configs/$ds-colbert-$prune.yaml
  done
  $H eval -d $ds --index indexes/$ds-colbert-muvera --index indexes/$ds-colbert-C25-trained \
    --index indexes/$ds-colbert-C25-trained-full --index indexes/$ds-colbert-C25-posthoc \
    --index indexes/$ds-colbert-tail --index indexes/$ds-colbert-spacing --results-dir $R
  for n in 50 100 200 500 1000; do
    $H eval -d $ds --index indexes/$ds-colbert-muvera --index indexes/$ds-colbert-muvera-hnsw --search candidates=$n --results-dir $R
  done
  .venv/bin/python bench/muvera_recall.py --index indexes/$ds-colbert-muvera --dataset $ds
  .venv/bin/python bench/multivector_latency.py --dataset $ds --index indexes/$ds-colbert-muvera \
    --index indexes/$ds-colbert-muvera-hnsw --index indexes/$ds-colbert-C25-trained --index indexes/$ds-colbert-C25-posthoc \
    --index indexes/$ds-colbert-tail --index indexes/$ds-colbert-spacing
done
