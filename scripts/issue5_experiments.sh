#!/usr/bin/env bash
# The multi-vector experiments of issue 5 (not yet run end to end; see docs/RESULTS.md). Trains a MiniLM
# ColBERT with and without training-time CRISP on each dataset's train qrels, encodes the corpus once
# (token vectors cached), builds brute-force, MUVERA, post-hoc CRISP and pruning indexes, and evaluates.
# CPU cost (measured 2026-12-01): a training step (16 queries, 16 positives + 16 BM25 hard negatives,
# 180-token documents) takes 3.7 s on 2 cores, so 300 steps ≈ 18 min per model; encoding SciFact's token
# vectors takes about as long as the dense MiniLM encoding (~6 min).
set -euo pipefail
cd "$(dirname "$0")/.."
H=.venv/bin/heron
R=${RESULTS:-results/issue5}
STEPS=${STEPS:-300}
for ds in scifact nfcorpus; do
  [[ -f checkpoints/$ds-colbert/training.json ]] || $H train colbert -d $ds --steps $STEPS --output checkpoints/$ds-colbert
  [[ -f checkpoints/$ds-colbert-C25/training.json ]] || $H train colbert -d $ds --steps $STEPS --crisp C25 --output checkpoints/$ds-colbert-C25
  [[ -d indexes/$ds-colbert-muvera ]] || $H build-index --dataset $ds --encoder multivector --model checkpoints/$ds-colbert --muvera --output indexes/$ds-colbert-muvera
  [[ -d indexes/$ds-colbert-C25-trained ]] || $H build-index --dataset $ds --encoder multivector --model checkpoints/$ds-colbert-C25 --crisp C25 --output indexes/$ds-colbert-C25-trained
  [[ -d indexes/$ds-colbert-C25-posthoc ]] || $H build-index --dataset $ds --encoder multivector --model checkpoints/$ds-colbert --crisp C25 --output indexes/$ds-colbert-C25-posthoc
  for prune in tail spacing; do
    [[ -d indexes/$ds-colbert-$prune ]] || $H build-index configs/$ds-colbert-$prune.yaml
  done
  $H eval -d $ds --index indexes/$ds-colbert-muvera --index indexes/$ds-colbert-C25-trained \
    --index indexes/$ds-colbert-C25-posthoc --index indexes/$ds-colbert-tail --index indexes/$ds-colbert-spacing \
    --results-dir $R
  for n in 50 100 200 500 1000; do
    $H eval -d $ds --index indexes/$ds-colbert-muvera --candidates $n --results-dir $R
  done
  .venv/bin/python bench/muvera_recall.py --index indexes/$ds-colbert-muvera --dataset $ds
done
