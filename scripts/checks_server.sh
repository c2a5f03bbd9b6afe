#!/usr/bin/env bash
# The product checks on SciFact (docs/BENCHMARKS.md): build the bundle from one config, serve it,
# check that the server, the Python API and `heron query` agree for every retriever and a fused one, run
# schemathesis (every check) against the server's own OpenAPI spec, run the load test next to in-process search,
# and the overload test (16 clients, 4 of them sending batches: zero 5xx, cheap-query p99 against idle).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
H=.venv/bin/heron
BUNDLE=${BUNDLE:-indexes/scifact-bundle}
PORT=${PORT:-8765}
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
/usr/bin/time -v $H build-index --config configs/scifact-bundle.yaml --output "$BUNDLE" 2> "$OUT/bundle-build.time"
$H serve --index "scifact=$BUNDLE" --port "$PORT" --log-level warning > "$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$PORT/healthz" > /dev/null && break; sleep 1; done
curl -s "http://127.0.0.1:$PORT/v1/search" -H 'content-type: application/json' \
  -d '{"query": "does coffee cause cancer", "k": 3, "retriever": "splade+dense", "fields": true}' | head -c 600; echo
$PY - "$BUNDLE" "$PORT" <<'PY'
import json, subprocess, sys
import httpx, numpy as np
import heron
bundle, port = sys.argv[1], sys.argv[2]
index = heron.Index.open(bundle)
query = "does coffee consumption cause cancer"
for retriever in index.retrievers + ["splade+dense", "bm25+dense+colbert"]:
    api = index.search(query, k=10, retriever=retriever)
    http = httpx.post(f"http://127.0.0.1:{port}/v1/search", json={"query": query, "k": 10, "retriever": retriever},
                      timeout=120).json()["hits"]
    cli = json.loads(subprocess.run([".venv/bin/heron", "query", "--index", bundle, "-r", retriever, "-k", "10",
                                     "--json", query], capture_output=True, text=True, check=True).stdout)["hits"]
    same = ([h.doc_id for h in api] == [h["doc_id"] for h in http] == [h["doc_id"] for h in cli]
            and np.allclose([h.score for h in api], [h["score"] for h in http], rtol=1e-5)
            and np.allclose([h.score for h in api], [h["score"] for h in cli], rtol=1e-5))
    print(f"{retriever}: API == server == heron query: {same}; top-3 {[h.doc_id for h in api[:3]]}")
    assert same, retriever
PY
.venv/bin/schemathesis --config-file schemathesis.toml run "http://127.0.0.1:$PORT/openapi.json" --checks all \
  --max-examples "${EXAMPLES:-200}" --seed 7 --request-timeout 120 | tail -25 | tee "$OUT/schemathesis.txt"
kill $SERVER; trap - EXIT
$PY bench/server_load.py --index "$BUNDLE" --dataset scifact --clients 16 --duration 60 --inprocess-seconds 60 \
  --retrievers splade,bm25,dense,colbert,splade+dense --out "$OUT" | tee "$OUT/server_load.txt"
$PY bench/server_load.py --index "$BUNDLE" --dataset scifact --overload --retriever bm25 --clients 16 --heavy-clients 4 \
  --duration 60 --out "$OUT" | tee "$OUT/server_overload.txt"
