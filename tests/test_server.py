"""The product path: a bundle config → ``heron build-index --config`` → ``heron.Index`` /
``heron query`` / ``heron serve`` on loopback, which must agree; client mistakes get 4xx, never 5xx."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from heron.errors import NotFoundError, QueryError

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

RETRIEVERS = ["splade", "bm25", "dense", "colbert", "splade+dense", "bm25+dense+colbert"]
QUERIES = ["cancer risk in obese patients", "dialysis and cardiovascular mortality"]


def _env(tmp: Path) -> dict:
    models = Path(os.environ.get("HERON_CACHE", Path.home() / ".cache" / "heron")) / "models"
    cache = tmp / "cache"
    if not cache.exists():
        cache.mkdir()
        (cache / "models").symlink_to(models)
    return {**os.environ, "HERON_CACHE": str(cache)}


def _heron(*args, env, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "heron", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


BUNDLE_YAML = """\
dataset: {data}
output: {out}
default: splade
indexes:
  splade: {{encoder: {{type: splade, model: splade-tiny}}}}
  bm25: {{encoder: {{type: bm25}}}}
  dense: {{encoder: {{type: dense, model: minilm}}, faiss: {{type: hnsw}}}}
  colbert:
    encoder: {{type: multivector, max_length: 64}}
    train: {{steps: 2, batch_size: 3, document_length: 64}}
    multivector: {{muvera: {{}}}}
    search: {{candidates: 30}}
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_beir):
    tmp = tmp_path_factory.mktemp("bundle")
    config = tmp / "bundle.yaml"
    config.write_text(BUNDLE_YAML.format(data=tiny_beir, out=tmp / "bundle"))
    proc = _heron("build-index", "--config", config, env=_env(tmp))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bundle ready" in proc.stdout
    return tmp / "bundle"


@pytest.fixture(scope="module")
def server(bundle):
    from serving import start_heron_serve  # tests/serving.py, shared with bench/server_load.py

    try:
        proc, url = start_heron_serve(["--index", f"tiny={bundle}", "--max-batch", "8", "--log-level", "warning"],
                                      env=_env(bundle.parent), timeout=180)
    except RuntimeError as e:
        pytest.fail(str(e))
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.models
def test_bundle_manifest_records_config_and_models(bundle):
    from heron.api import Index

    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["format"] == "heron-index-bundle" and list(manifest["indexes"]) == ["splade", "bm25", "dense",
                                                                                         "colbert"]
    assert manifest["config"]["indexes"]["colbert"]["train"]["steps"] == 2  # the resolved config
    assert manifest["models"]["splade"]["model"]["hf_id"] == "rasyosef/splade-tiny"
    assert len(manifest["models"]["dense"]["model"]["weights_sha256"]) >= 1
    assert manifest["indexes"]["colbert"]["index"]["muvera"]["reps"] == 20
    index = Index.open(bundle)
    assert index.retrievers == ["splade", "bm25", "dense", "colbert"] and index.default == "splade"
    assert not list(bundle.parent.glob(".bundle.partial*"))  # published, nothing left behind


@pytest.mark.models
def test_api_cli_and_server_agree(bundle, server):
    from heron.api import Index

    index = Index.open(bundle)
    for retriever in RETRIEVERS:
        api = index.search(QUERIES[0], k=5, retriever=retriever, fields=True)
        assert len(api) == 5 and [h.rank for h in api] == [1, 2, 3, 4, 5]
        assert all(a.score >= b.score for a, b in zip(api, api[1:]))
        body = httpx.post(f"{server}/v1/search", json={"query": QUERIES[0], "k": 5, "retriever": retriever,
                                                      "fields": True}, timeout=60).json()
        assert [h["doc_id"] for h in body["hits"]] == [h.doc_id for h in api], retriever
        assert np.allclose([h["score"] for h in body["hits"]], [h.score for h in api], rtol=1e-5)
        assert body["hits"][0]["text"] == api[0].text and api[0].text
        if retriever in ("splade", "colbert", "splade+dense"):
            proc = _heron("query", "--index", bundle, "-r", retriever, "-k", "5", "--json", QUERIES[0],
                          env=_env(bundle.parent))
            assert proc.returncode == 0, proc.stderr[-2000:]
            cli = json.loads(proc.stdout)["hits"]
            assert [h["doc_id"] for h in cli] == [h.doc_id for h in api], retriever
            assert np.allclose([h["score"] for h in cli], [h.score for h in api], rtol=1e-5)
    # the batch form equals one search per query, on the API and the server
    batch = index.search_batch(QUERIES, k=3, retriever="dense+colbert")
    assert [[h.doc_id for h in r] for r in batch] == \
        [[h.doc_id for h in index.search(q, k=3, retriever="dense+colbert")] for q in QUERIES]
    body = httpx.post(f"{server}/v1/search/batch", json={"queries": QUERIES, "k": 3, "retriever": "dense+colbert"},
                      timeout=60).json()
    assert [[h["doc_id"] for h in r] for r in body["results"]] == [[h.doc_id for h in r] for r in batch]


@pytest.mark.models
def test_allow_list_vectors_and_prf(bundle, server):
    from heron.api import Index

    index = Index.open(bundle)
    everything = {r: index.search(QUERIES[1], k=60, retriever=r) for r in ("splade", "dense", "colbert")}
    for retriever, full in everything.items():
        allowed = [h.doc_id for h in full[5:15]][::-1]  # exact: the allowed docs in their full-ranking order
        got = index.search(QUERIES[1], k=5, retriever=retriever, allow=allowed)
        assert [h.doc_id for h in got] == [h.doc_id for h in full[5:10]], retriever
        body = httpx.post(f"{server}/v1/search", json={"query": QUERIES[1], "k": 5, "retriever": retriever,
                                                      "allow": allowed}, timeout=60).json()
        assert [h["doc_id"] for h in body["hits"]] == [h.doc_id for h in got]
    # a precomputed vector gives the same ranking as the text it was encoded from
    dense = index.retriever("dense")
    vec = dense.encode([QUERIES[1]])[0].tolist()
    got = httpx.post(f"{server}/v1/search", json={"vector": vec, "k": 5, "retriever": "dense"}, timeout=60).json()
    assert [h["doc_id"] for h in got["hits"]] == [h.doc_id for h in everything["dense"][:5]]
    one = index.search(vector={"cancer": 1.0}, k=3, retriever="bm25")
    two = index.search(vector={"cancer": 2.0, "zzzunknown": 1.0}, k=3, retriever="bm25")  # unknown terms ignored
    assert len(one) == 3 and [h.doc_id for h in one] == [h.doc_id for h in two]
    assert np.allclose([h.score * 2 for h in one], [h.score for h in two], rtol=1e-3)
    # PRF on / off through the server (rocchio on the dense member) differs from the plain first pass
    on = httpx.post(f"{server}/v1/search", json={"query": QUERIES[1], "k": 10, "retriever": "dense", "prf": True},
                    timeout=60)
    assert on.status_code == 200
    assert [h["doc_id"] for h in on.json()["hits"]] == \
        [h.doc_id for h in index.search(QUERIES[1], k=10, retriever="dense", prf="rocchio")]
    with pytest.raises(NotFoundError, match="unknown retriever 'nope'"):
        index.search("x", retriever="nope")
    with pytest.raises(QueryError, match="k must be"):
        index.search("x", k=0)
    with pytest.raises(QueryError, match="empty"):
        index.search_batch(["ok", "  "])


BAD_REQUESTS = [
    ("/v1/search", b'{"query": "x",', 422, "invalid_json"),
    ("/v1/search", {"query": 3}, 422, "invalid_request"),
    ("/v1/search", {"query": ""}, 422, "invalid_request"),
    ("/v1/search", {"query": "   "}, 400, "bad_request"),
    ("/v1/search", {"query": "x" * 2001}, 400, "bad_request"),
    ("/v1/search", {"query": "x", "k": 0}, 422, "invalid_request"),
    ("/v1/search", {"query": "x", "k": 1001}, 422, "invalid_request"),
    ("/v1/search", {"query": "x", "k": "ten"}, 422, "invalid_request"),
    ("/v1/search", {"query": "x", "index": "nope"}, 404, "not_found"),
    ("/v1/search", {"query": "x", "retriever": "nope"}, 404, "not_found"),
    ("/v1/search", {"query": "x", "retriever": "splade+"}, 400, "bad_request"),
    ("/v1/search", {"query": "x", "fusion": "max"}, 422, "invalid_request"),
    ("/v1/search", {"query": "x", "retriever": "splade+dense", "fusion_weights": [1.0]}, 422, "invalid_request"),
    ("/v1/search", {"query": "x", "retriever": "splade+dense", "fusion_weights": [1, 2, 3]}, 400, "bad_request"),
    ("/v1/search", {"query": "x", "unknown_field": 1}, 422, "invalid_request"),
    ("/v1/search", {}, 400, "bad_request"),
    ("/v1/search", {"query": "x", "vector": [1.0]}, 400, "bad_request"),
    ("/v1/search", {"vector": [1.0, 2.0], "retriever": "dense"}, 400, "bad_request"),
    ("/v1/search", {"vector": {"cancer": 1.0}, "retriever": "dense"}, 400, "bad_request"),
    ("/v1/search", {"vector": [[0.1] * 128], "retriever": "splade+dense"}, 400, "bad_request"),
    ("/v1/search", {"query": "x", "retriever": "colbert", "prf": True}, 400, "bad_request"),
    ("/v1/search", {"vector": {"cancer": 1.0}, "retriever": "bm25", "prf": True}, 400, "bad_request"),
    ("/v1/search", {"vector": {"cancer": 1e39}, "retriever": "bm25"}, 422, "invalid_request"),
    ("/v1/search", {"vector": [3e38] * 384, "retriever": "dense"}, 422, "invalid_request"),
    ("/v1/search/batch", {"queries": []}, 422, "invalid_request"),
    ("/v1/search/batch", {"queries": ["a"] * 9}, 400, "bad_request"),
    ("/v1/search/batch", {"queries": "abc"}, 422, "invalid_request"),
]


@pytest.mark.models
@pytest.mark.parametrize("route,body,status,kind", BAD_REQUESTS)
def test_client_mistakes_get_4xx(server, route, body, status, kind):
    if isinstance(body, bytes):
        response = httpx.post(f"{server}{route}", content=body, headers={"content-type": "application/json"})
    else:
        response = httpx.post(f"{server}{route}", json=body, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == kind and error["message"] and "\n" not in error["message"]


@pytest.mark.models
def test_limits_metrics_and_docs(server):
    big = httpx.post(f"{server}/v1/search", content=b'{"query": "' + b"x" * (1 << 20) + b'"}',
                     headers={"content-type": "application/json"}, timeout=60)
    assert big.status_code == 413 and big.json()["error"]["type"] == "too_large"
    for path, status in (("/nope", 404), ("/v1/search", 405)):  # routing errors carry the error body too
        response = httpx.get(f"{server}{path}")
        assert response.status_code == status and response.json()["error"]["message"]
    indexes = httpx.get(f"{server}/v1/indexes").json()["indexes"]
    assert indexes["tiny"]["retrievers"] == ["splade", "bm25", "dense", "colbert"]
    assert indexes["tiny"]["bundle"]["format"] == "heron-index-bundle"
    assert httpx.get(f"{server}/docs").status_code == 200
    spec = httpx.get(f"{server}/openapi.json").json()
    assert {"/v1/search", "/v1/search/batch", "/v1/indexes", "/healthz", "/metrics"} <= set(spec["paths"])
    httpx.post(f"{server}/v1/search", json={"query": "x", "retriever": "nope"})
    text = httpx.get(f"{server}/metrics").text
    assert 'heron_requests_total{method="POST",route="/v1/search",status="404"}' in text
    assert 'heron_request_errors_total{route="/v1/search",status="404"}' in text
    assert 'heron_request_seconds_bucket{le="0.001",route="/healthz"}' in text


@pytest.mark.models
def test_schemathesis_finds_no_server_error(server, tmp_path):
    """Property-based requests from the server's own OpenAPI spec (bounded): no 5xx."""
    cli = Path(sys.executable).with_name("schemathesis")
    if not cli.exists():
        pytest.skip("schemathesis is not installed (dev extra)")
    proc = subprocess.run([str(cli), "run", f"{server}/openapi.json", "--checks", "not_a_server_error",
                           "--max-examples", "40", "--seed", "1", "--request-timeout", "60",
                           "--report", "junit", "--report-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "passed" in proc.stdout


def test_bundle_build_resumes_after_a_failed_stage(tmp_path, tiny_beir):
    """A member that fails leaves the finished ones in place; the rerun skips them and publishes."""
    out = tmp_path / "b"
    config = tmp_path / "b.yaml"
    head = f"dataset: {tiny_beir}\noutput: {out}\nindexes:\n  bm25: {{encoder: {{type: bm25}}}}\n"
    config.write_text(head + "  csr: {encoder: {type: csr}}\n")
    env = _env(tmp_path)
    proc = _heron("build-index", "--config", config, env=env)
    assert proc.returncode == 2 and "csr index needs encoder.model" in proc.stderr
    assert not out.exists() and (tmp_path / ".b.partial" / "bm25" / "manifest.json").is_file()
    config.write_text(head + "  bm25-k1: {encoder: {type: bm25, k1: 1.2}}\n")
    proc = _heron("build-index", "-c", config, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "bm25: already built (resumed)" in proc.stdout and "bm25-k1: building" in proc.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert list(manifest["indexes"]) == ["bm25", "bm25-k1"] and manifest["default"] == "bm25"
    assert not (tmp_path / ".b.partial").exists()
    # a changed member config is rebuilt, not resumed; flags other than dataset/output are refused
    proc = _heron("build-index", "-c", config, "--faiss", "hnsw", env=env)
    assert proc.returncode == 2 and "--faiss apply to single-index builds" in proc.stderr
