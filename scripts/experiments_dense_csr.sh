#!/usr/bin/env bash
# The dense / CSR / fusion experiments of docs/RESULTS.md, in order. Each step is a plain heron
# command; results land in results/ (runs, metrics.json, results.md). About 45 minutes on 2 cores once
# the MiniLM corpus embeddings are cached (the first dense build encodes each corpus: ~6 min for SciFact).
set -euo pipefail
cd "$(dirname "$0")/.."
H=.venv/bin/heron
R=${RESULTS:-results/dense-csr}
for ds in scifact nfcorpus; do
  for t in flat hnsw; do [[ -d indexes/$ds-minilm-$t ]] || $H build-index configs/$ds-minilm-$t.yaml; done
  [[ -d indexes/$ds-splade-tiny ]] || $H build-index configs/$ds-splade-tiny.yaml
  $H eval -d $ds --index indexes/$ds-minilm-flat --index indexes/$ds-minilm-hnsw --results-dir $R
  for k in 8 16 32 64; do
    [[ -f checkpoints/$ds-csr-k$k/config.json ]] || $H train csr -d $ds --base minilm --k $k --output checkpoints/$ds-csr-k$k
    [[ -d indexes/$ds-csr-k$k ]] || $H build-index --dataset $ds --encoder csr --model checkpoints/$ds-csr-k$k --output indexes/$ds-csr-k$k
  done
  # control: the same autoencoder trained on reconstruction alone (no train qrels at all)
  [[ -f checkpoints/$ds-csr-k32-recon/config.json ]] || $H train csr -d $ds --base minilm --k 32 --cl-coef 0 --output checkpoints/$ds-csr-k32-recon
  [[ -d indexes/$ds-csr-k32-recon ]] || $H build-index --dataset $ds --encoder csr --model checkpoints/$ds-csr-k32-recon --output indexes/$ds-csr-k32-recon
  $H eval -d $ds --index indexes/$ds-minilm-flat --index indexes/$ds-csr-k8 --index indexes/$ds-csr-k16 \
    --index indexes/$ds-csr-k32 --index indexes/$ds-csr-k64 --index indexes/$ds-csr-k32-recon --results-dir $R
  for k in 8 16 32 64; do
    $H eval -d $ds --index indexes/$ds-minilm-flat --search truncate_dims=$k --results-dir $R
  done
  $H eval -d $ds -r bm25 --index indexes/$ds-splade-tiny --index indexes/$ds-minilm-flat \
    -r "bm25+indexes/$ds-splade-tiny+indexes/$ds-minilm-flat" --fusion rrf --results-dir $R
  $H eval -d $ds -r "bm25+indexes/$ds-splade-tiny+indexes/$ds-minilm-flat" --fusion linear --results-dir $R
  $H eval -d $ds --index indexes/$ds-splade-tiny --index indexes/$ds-csr-k32 \
    -r "indexes/$ds-splade-tiny+indexes/$ds-csr-k32" --fusion rrf --results-dir $R
  $H eval -d $ds -r "indexes/$ds-splade-tiny+indexes/$ds-csr-k32" --fusion linear --results-dir $R
done
