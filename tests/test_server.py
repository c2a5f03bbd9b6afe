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

from heron.errors import HeronError, NotFoundError, QueryError

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
    ("/v1/search", {"query": "   "}, 422, "invalid_request"),
    ("/v1/search", {"query": "x" * 2001}, 422, "invalid_request"),
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
    ("/v1/search", {}, 422, "invalid_request"),
    ("/v1/search", {"query": "x", "vector": [1.0]}, 422, "invalid_request"),
    ("/v1/search", {"vector": [1.0, 2.0], "retriever": "dense"}, 400, "bad_request"),
    ("/v1/search", {"vector": {"cancer": 1.0}, "retriever": "dense"}, 400, "bad_request"),
    ("/v1/search", {"vector": [[0.1] * 128], "retriever": "splade+dense"}, 400, "bad_request"),
    ("/v1/search", {"query": "x", "retriever": "colbert", "prf": True}, 400, "bad_request"),
    ("/v1/search", {"vector": {"cancer": 1.0}, "retriever": "bm25", "prf": True}, 400, "bad_request"),
    ("/v1/search", {"vector": {"cancer": 1e39}, "retriever": "bm25"}, 422, "invalid_request"),
    ("/v1/search", {"vector": [3e38] * 384, "retriever": "dense"}, 422, "invalid_request"),
    ("/v1/search/batch", {"queries": []}, 422, "invalid_request"),
    ("/v1/search/batch", {"queries": ["a"] * 9}, 422, "invalid_request"),
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
def test_schemathesis_finds_no_failure_on_every_member_type(server, tmp_path):
    """Property-based requests from the server's own OpenAPI spec (bounded), every check, over sparse, dense
    and multi-vector members (precomputed vectors of every shape)."""
    from serving import run_schemathesis, schemathesis_cli

    cli = schemathesis_cli()
    config = Path(__file__).resolve().parents[1] / "schemathesis.toml"
    proc = run_schemathesis(cli, server, config, "--report", "junit", "--report-dir", str(tmp_path), max_examples=40,
                            timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "No issues found" in proc.stdout


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


# -- a small BM25 bundle, served in-process: overload, hygiene, integrity, API key, schemathesis (no models) --

SMALL_YAML = """\
dataset: {data}
output: {out}
indexes:
  bm25: {{encoder: {{type: bm25}}}}
  bm25b: {{encoder: {{type: bm25, k1: 1.2}}}}
"""
API_KEY = "test-key-0123456789"


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory, tiny_beir):
    from heron.build.bundle import build_bundle, load_bundle_config

    tmp = tmp_path_factory.mktemp("small")
    config = tmp / "small.yaml"
    config.write_text(SMALL_YAML.format(data=tiny_beir, out=tmp / "small"))
    return build_bundle(load_bundle_config(config), progress=False, log=lambda *a: None)


def _app(bundle, **settings):
    from heron.api import Index
    from heron.server import ServerSettings, create_app

    return create_app({"tiny": Index.open(bundle)}, ServerSettings(**{"workers": 2, "max_batch": 8, **settings}))


def _client(app):
    from fastapi.testclient import TestClient

    return TestClient(app)


def _no_paths(value, where="body"):
    """No string anywhere in a JSON answer is an absolute filesystem path."""
    if isinstance(value, str):
        assert not value.startswith("/") and not os.path.isabs(value), f"{where}: {value!r}"
    elif isinstance(value, dict):
        for k, v in value.items():
            _no_paths(v, f"{where}.{k}")
    elif isinstance(value, list):
        for v in value:
            _no_paths(v, where)


def test_overload_cheap_query_answered_while_heavy_batches_time_out(small_bundle):
    """Heavy batches pass their deadline and stop (the pool frees itself, the batch does not run to its end),
    one beyond the queue is refused with 429 + Retry-After, and cheap queries meanwhile all get 200."""
    import asyncio
    import time

    from heron.api import Index

    allow = [f"no-such-doc-{i}" for i in range(10000)]  # rank among 10,000 ids: ~1 ms a query of real work
    heavy = [f"cancer risk in obese patients {i}" for i in range(1000)]
    index = Index.open(small_bundle).load()
    index.search_batch(heavy[:5], k=10, allow=allow)
    rounds = []
    for _ in range(3):  # the fastest of three rounds: a deadline short enough however fast the machine gets
        start = time.perf_counter()
        for q in heavy[:20]:
            index.search_batch([q], k=10, allow=allow)
        rounds.append(time.perf_counter() - start)
    whole = min(rounds) / 20 * len(heavy)  # one heavy batch, run to its end
    timeout = whole / 6  # so each heavy batch would outlast its deadline six times over
    app = _app(small_bundle, max_batch=1000, timeout_s=timeout, batch_workers=1, max_queue=1, verify=False)
    scheduler = app.state.scheduler

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=120) as client:
            body = {"queries": heavy, "k": 10, "allow": allow}
            batches = [asyncio.create_task(client.post("/v1/search/batch", json=body)) for _ in range(3)]
            while scheduler.lanes["batch"].running < 1 or scheduler.lanes["batch"].waiting < 1:
                await asyncio.sleep(0.001)
            cheap = []
            while not all(b.done() for b in batches[:2]):
                cheap.append(await client.post("/v1/search", json={"query": "obese patients", "k": 3}))
            heavy_answers = [await b for b in batches]
            deadline = time.monotonic() + 60  # generous: the running chunk (one query) finishes, nothing after it
            while (scheduler.busy or scheduler.lanes["batch"].running) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            after = await client.post("/v1/search/batch", json={"queries": heavy[:8], "k": 3})
            return cheap, heavy_answers, after

    cheap, answers, after = asyncio.run(scenario())
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [429, 503, 503], [r.text for r in answers]
    for r in answers:
        assert r.headers["retry-after"] == "1" and r.json()["error"]["type"] in ("overloaded", "timeout")
    assert cheap and all(r.status_code == 200 for r in cheap), [r.text for r in cheap if r.status_code != 200]
    assert all(len(r.json()["hits"]) == 3 for r in cheap)
    lane = scheduler.lanes["batch"]
    assert scheduler.busy == 0 and lane.running == 0 and lane.waiting == 0  # the pool is free again
    assert lane.rejected == 1 and lane.timeouts == 2
    assert lane.searched < len(heavy), "a timed-out batch kept searching"  # the work stopped, not only the answer
    assert after.status_code == 200 and len(after.json()["results"]) == 8
    metrics = _client(app).get("/metrics").text
    assert 'heron_search_timeouts_total{lane="batch"} 2.0' in metrics
    assert 'heron_search_rejected_total{lane="batch"} 1.0' in metrics


def test_batch_answers_equal_single_searches_in_chunks(small_bundle):
    """A batch run query by query on the pool returns what one search per query returns, in order."""
    from heron.api import Index

    index = Index.open(small_bundle)
    queries = ["cancer risk", "obese patients", "dialysis mortality", "vitamin d", "blood pressure"]
    with _client(_app(small_bundle, verify=False, batch_chunk=2)) as client:
        body = client.post("/v1/search/batch", json={"queries": queries, "k": 4, "retriever": "bm25+bm25b"}).json()
    expected = [index.search(q, k=4, retriever="bm25+bm25b") for q in queries]
    assert [[h["doc_id"] for h in r] for r in body["results"]] == [[h.doc_id for h in e] for e in expected]
    assert np.allclose([h["score"] for r in body["results"] for h in r], [h.score for e in expected for h in e])


def test_server_hygiene(small_bundle):
    """Finite scores or a 422, Allow on 405, one 422 for unparsable bodies, no filesystem paths."""
    with _client(_app(small_bundle)) as client:
        fused = {"query": "cancer risk", "k": 5, "retriever": "bm25+bm25b"}
        r = client.post("/v1/search", json={**fused, "fusion_weights": [1e308, 1e308]})
        assert r.status_code == 422 and "fusion_weights" in r.json()["error"]["message"]
        # one rule for fusion weights everywhere (finite, 0 ≤ w ≤ 1e6): the server, heron.Index and the options
        from heron.api import Index
        from heron.retrieval.options import FusionOptions
        index = Index.open(small_bundle)
        for bad in ([-1.0, 1.0], [2e6, 1.0]):
            assert client.post("/v1/search", json={**fused, "fusion_weights": bad}).status_code == 422
            with pytest.raises(QueryError, match=r"numbers in \[0, 1e\+06\]"):
                index.search("cancer risk", k=5, retriever="bm25+bm25b", fusion_weights=bad)
            with pytest.raises(ValueError):
                FusionOptions(weights=bad)
        for fusion in ("rrf", "linear"):
            r = client.post("/v1/search", json={**fused, "fusion": fusion, "fusion_weights": [1e6, 1e6]})
            assert r.status_code == 200 and all(np.isfinite(h["score"]) for h in r.json()["hits"])
            assert len(r.json()["hits"]) == 5
        r = client.post("/v1/search", json={"query": "cancer", "fusion": "rrf"})
        assert r.status_code == 400 and "fused retriever" in r.json()["error"]["message"]  # not ignored silently
        for path, allow in (("/v1/search", "POST"), ("/v1/search/batch", "POST"), ("/healthz", "GET")):
            r = client.request("PUT", path)
            assert r.status_code == 405 and r.headers["allow"] == allow and r.json()["error"]["message"]
        for raw in (b'{"query": "x",', b'\xff\xfe{}', b"\x00", b"", b"[1]", b'{"query": "\xe9t\xe9"}'):
            r = client.post("/v1/search", content=raw, headers={"content-type": "application/json"})
            assert r.status_code == 422, (raw, r.text)
            assert r.json()["error"]["type"] in ("invalid_json", "invalid_request")
        for body in ({"query": "   "}, {"query": "\u3000\ufeff"}, {"query": "x" * 2001}, {"query": "x", "k": "3"},
                     {"query": "x", "fields": "true"}, {"query": "x", "k": 3.5}, {}, {"query": None},
                     {"query": "x", "vector": {"x": 1.0}}, {"queries": ["a"] * 9}):
            r = client.post("/v1/search/batch" if "queries" in body else "/v1/search", json=body)
            assert r.status_code == 422, (body, r.text)
        assert client.post("/v1/search", json={"query": "cancer", "k": 3.0}).status_code == 200  # 3.0 is an integer
        for path in ("/v1/indexes", "/healthz"):
            r = client.get(path)
            _no_paths(r.json(), path)
            assert str(small_bundle) not in r.text and str(small_bundle.parent) not in r.text
        members = client.get("/v1/indexes").json()["indexes"]["tiny"]["members"]
        assert members["bm25"]["path"] == "bm25" and members["bm25b"]["encoder"]["k1"] == 1.2


def test_api_key_and_host_allow_list(small_bundle):
    from heron.cli.serve_cmd import LOOPBACK_HOSTS, exposure

    with _client(_app(small_bundle, api_key=API_KEY, allowed_hosts=["localhost", "*.example.org"])) as client:
        query = {"query": "cancer", "k": 2}
        base = {"host": "localhost:8000"}
        r = client.post("/v1/search", json=query, headers=base)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"]["type"] == "unauthorized"
        r = client.post("/v1/search", json=query, headers={**base, "authorization": "Bearer wrong"})
        assert r.status_code == 403 and r.json()["error"]["type"] == "forbidden"
        for auth in ({"authorization": f"Bearer {API_KEY}"}, {"x-api-key": API_KEY}):
            assert client.post("/v1/search", json=query, headers={**base, **auth}).status_code == 200
        for path in ("/v1/indexes", "/metrics", "/openapi.json", "/docs"):
            assert client.get(path, headers=base).status_code == 401, path
        assert client.get("/healthz", headers=base).status_code == 200  # open: liveness probes carry no key
        spec = client.get("/openapi.json", headers={**base, "x-api-key": API_KEY}).json()
        assert {"401", "403"} <= set(spec["paths"]["/v1/search"]["post"]["responses"])
        assert "security" not in spec["paths"]["/healthz"]["get"]
        key = {"x-api-key": API_KEY}
        for host, status in (("evil.example.com", 400), ("a.example.org", 200), ("localhost", 200), ("", 400)):
            r = client.post("/v1/search", json=query, headers={"host": host, **key})
            assert r.status_code == status, (host, r.text)
        assert r.json()["error"]["type"] == "invalid_host"
    # binding: loopback checks Host against loopback names; beyond it, a key (or an explicit opt-out) and a list
    assert exposure("127.0.0.1", False, None, False) == LOOPBACK_HOSTS
    assert exposure("::1", False, ["search.local"], False) == ["search.local"]
    assert exposure("0.0.0.0", True, ["search.example.org"], False) == ["search.example.org"]
    assert exposure("0.0.0.0", False, ["*"], True) == ["*"]
    with pytest.raises(HeronError, match="API key"):
        exposure("0.0.0.0", False, ["*"], False)
    with pytest.raises(HeronError, match="--allowed-host"):
        exposure("10.1.2.3", True, None, False)


def _damage(bundle: Path, tmp: Path, member: str, name: str) -> Path:
    """A copy of ``bundle`` with one byte of ``member/name`` flipped (same size)."""
    import shutil

    copy = tmp / "damaged"
    shutil.copytree(bundle, copy)
    path = copy / member / name
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    return copy


def test_damaged_member_is_failed_and_the_others_serve(small_bundle, tmp_path):
    import time

    bundle = _damage(small_bundle, tmp_path, "bm25b", "postings_words.npy")
    with _client(_app(bundle)) as client:
        deadline = time.monotonic() + 60

        def settled(body: dict) -> bool:  # "failed" comes as soon as one member fails; wait for the others too
            return body["status"] != "degraded" and all(
                state["status"] != "verifying" for state in body["indexes"]["tiny"].values())

        while not settled((health := client.get("/healthz")).json()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert health.status_code == 503 and health.json()["status"] == "failed"
        states = health.json()["indexes"]["tiny"]
        assert states["bm25"] == {"status": "ok"} and states["bm25b"]["status"] == "failed"
        assert "bm25b/postings_words.npy" in states["bm25b"]["error"]
        for retriever in ("bm25b", "bm25+bm25b"):
            r = client.post("/v1/search", json={"query": "cancer", "retriever": retriever})
            assert r.status_code == 503 and r.json()["error"]["type"] == "member_failed", r.text
            assert "'bm25b'" in r.json()["error"]["message"] and r.headers["retry-after"]
        r = client.post("/v1/search", json={"query": "cancer risk", "retriever": "bm25", "k": 3})
        assert r.status_code == 200 and len(r.json()["hits"]) == 3
        members = client.get("/v1/indexes").json()["indexes"]["tiny"]["members"]
        assert members["bm25b"]["status"] == "failed" and members["bm25"]["status"] == "ok"
        _no_paths(client.get("/v1/indexes").json())
        _no_paths(health.json())


def test_member_that_cannot_open_is_failed_at_start(small_bundle, tmp_path):
    from heron.api import Index
    from heron.server import create_app

    bundle = _damage(small_bundle, tmp_path, "bm25", "vocab.json.gz")
    (bundle / "bm25" / "vocab.json.gz").unlink()  # a missing file: the member cannot open
    with _client(_app(bundle, verify=False)) as client:
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json()["indexes"]["tiny"]["bm25"]["status"] == "failed"
        assert client.post("/v1/search", json={"query": "cancer"}).status_code == 503  # bm25 is the default
        assert client.post("/v1/search", json={"query": "cancer", "retriever": "bm25b"}).status_code == 200
    (bundle / "bm25b" / "vocab.json.gz").unlink()
    with pytest.raises(HeronError, match="no index member could be opened"):
        create_app({"tiny": Index.open(bundle)})


def test_schemathesis_finds_no_failure_of_any_kind(small_bundle, tmp_path):
    """Every schemathesis check and phase against `heron serve` with an API key (bounded examples): statuses,
    content types, headers and bodies as documented, schema-invalid requests refused, valid ones served."""
    from serving import run_schemathesis, schemathesis_cli, start_heron_serve

    cli = schemathesis_cli()
    env = {**os.environ, "HERON_API_KEY": API_KEY}
    try:
        proc, url = start_heron_serve(["--index", f"tiny={small_bundle}", "--max-batch", "8", "--log-level",
                                       "warning"], env=env, timeout=120)
    except RuntimeError as e:
        pytest.fail(str(e))
    try:
        repo = Path(__file__).resolve().parents[1]
        run = run_schemathesis(cli, url, repo / "schemathesis.toml", "--report", "junit", "--report-dir", str(tmp_path),
                               key=API_KEY, max_examples=25, cwd=tmp_path)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert run.returncode == 0, run.stdout[-6000:]
    assert "No issues found" in run.stdout
