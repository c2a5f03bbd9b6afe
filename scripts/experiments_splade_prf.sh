#!/usr/bin/env bash
# SPLADE and PRF experiments: SPLADE regularisation sweeps (FLOPS vs IDF-aware FLOPS, siamese and inference-free)
# and PRF (Rocchio, learned PRF with and without LoL) on SciFact and NFCorpus. Run from the repo root with
# the venv active and HERON_DATA pointing at the BEIR folder. Each function is one step; the sweep was run
# in two single-thread lanes on the 2-core machine:
#   bash scripts/experiments_splade_prf.sh point sflops-1e-3 --lambda-d 1e-3 --lambda-q 3e-3
#   bash scripts/experiments_splade_prf.sh base;  bash scripts/experiments_splade_prf.sh plot
#   bash scripts/experiments_splade_prf.sh prf
set -euo pipefail
DATASETS=(scifact nfcorpus)
OUT=results/splade-prf

train() {  # train LABEL [heron train splade flags...]: one fine-tune of splade-tiny on SciFact + NFCorpus train
  local label=$1; shift
  local config=configs/train/splade-cpu.yaml
  case $label in if-*) config=configs/train/splade-idf-cpu.yaml ;; esac
  [ -f "checkpoints/sfnf-$label/training.json" ] || \
    heron train splade -d scifact -d nfcorpus -c "$config" --threads 1 -o "checkpoints/sfnf-$label" "$@"
}

evaluate() {  # evaluate LABEL MODEL [build-index flags...]: index both test corpora, nDCG@10 + retrieval cost
  local label=$1 model=$2; shift 2
  for ds in "${DATASETS[@]}"; do
    [ -f "indexes/$ds-$label/manifest.json" ] || \
      heron build-index --dataset "$ds" --encoder splade --model "$model" --doc-max-length 256 --threads 1 \
        --no-approx -o "indexes/$ds-$label" "$@"
    heron eval -d "$ds" --index "indexes/$ds-$label" --threads 1 --cost -m ndcg@10 -m recall@100 \
      --results-dir "$OUT/splade/$label/$ds"
  done
}

point() {  # point LABEL [train flags...]: train, then evaluate
  local label=$1; shift
  train "$label" "$@"
  evaluate "$label" "checkpoints/sfnf-$label"
}

base() {  # the starting points: splade-tiny (siamese) and its documents with IDF queries (inference-free)
  evaluate base splade-tiny
  evaluate base-idf splade-tiny --query-mode idf
}

plot() {
  python bench/splade_tradeoff.py "$OUT/splade" --out docs/img/splade-prf
}

dense() {  # the dense PRF base: MiniLM in a flat FAISS index
  for ds in "${DATASETS[@]}"; do
    [ -f "indexes/$ds-minilm/manifest.json" ] || \
      heron build-index --dataset "$ds" --encoder dense --model minilm --faiss flat --threads 1 -o "indexes/$ds-minilm"
  done
}

prf() {  # prf DATASET BASE: learned PRF models on an index (train qrels), then the drift sweep over 1…10 docs
  local ds=$1 base=$2 index="indexes/$1-$2" label=$2
  [ "$base" = base ] && label=splade-tiny
  local nested=0,1,2,3,4,5,6,7,8,9,10
  #        variant           config       flags
  _prf_model "$ds" "$base" lol               prf-lol     --feedback $nested                    # LoL
  _prf_model "$ds" "$base" nested-no-cr      prf-lol     --feedback $nested --lambda-cr 0      # same sets, no regulariser
  _prf_model "$ds" "$base" no-lol            prf-no-lol  --feedback 1,2,3,4,5,6,7,8,9,10      # one random k per step
  _prf_model "$ds" "$base" k3                prf-no-lol  --feedback 3 --max-feedback 10        # conventional: k = 3
  local models=(--model "LoL=checkpoints/$ds-$base-prf-lol"
                --model "no LoL: nested sets, λ_cr = 0=checkpoints/$ds-$base-prf-nested-no-cr"
                --model "no LoL: random k per step=checkpoints/$ds-$base-prf-no-lol"
                --model "no LoL: trained at k = 3=checkpoints/$ds-$base-prf-k3")
  if [ "$base" != minilm ]; then  # sparse: the same LoL model with the query's own term weights frozen
    _prf_model "$ds" "$base" lol-feedback-only prf-lol --feedback $nested --no-query-gain
    models+=(--model "LoL, feedback only=checkpoints/$ds-$base-prf-lol-feedback-only")
  fi
  python bench/prf_drift.py --dataset "$ds" --index "$index" --label "$label" --out "$OUT/prf" "${models[@]}"
}

_prf_model() {  # _prf_model DATASET BASE VARIANT CONFIG [heron train prf flags...]
  local ds=$1 base=$2 variant=$3 config=$4; shift 4
  [ -f "checkpoints/$ds-$base-prf-$variant/prf_model.json" ] || \
    heron train prf -d "$ds" -i "indexes/$ds-$base" -c "configs/train/$config.yaml" --threads 1 \
      -o "checkpoints/$ds-$base-prf-$variant" "$@"
}

"$@"
