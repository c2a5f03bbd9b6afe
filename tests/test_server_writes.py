"""The server's write endpoints (heron.server.writes): refused without the server's API key, served with it; a
search after a write sees the change; commits made by another writer are picked up without a restart;
searches keep being answered while writes run; schemathesis finds no 5xx on the new routes."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

import heron

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

KEY = "write-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def bm25_index(tmp_path_factory, tiny_beir):
    from heron.build import build_index, make_config

    tmp = tmp_path_factory.mktemp("writes")
    return build_index(make_config({"dataset": str(tiny_beir), "output": str(tmp / "bm25"),
                                    "encoder": {"type": "bm25"}}), progress=False)


def _copy(index: Path, tmp: Path) -> Path:
    from conftest import make_writable

    target = tmp / "served"
    shutil.copytree(index, target)
    return make_writable(target)


def _client(path: Path, **settings):
    from fastapi.testclient import TestClient

    from heron.server import ServerSettings, create_app

    settings = {"verify": False, **settings}
    app = create_app({"tiny": heron.Index.open(path)}, ServerSettings(workers=2, **settings))
    return TestClient(app)


def _ids(client, query: str, k: int = 100, **headers) -> list[str]:
    answer = client.post("/v1/search", json={"query": query, "k": k}, headers=headers or AUTH)
    assert answer.status_code == 200, answer.text
    return [h["doc_id"] for h in answer.json()["hits"]]


def _generation(client, **headers):
    return client.get("/v1/indexes", headers=headers or AUTH).json()["indexes"]["tiny"]["generation"]


def test_writes_are_disabled_without_an_api_key(bm25_index, tmp_path):
    path = _copy(bm25_index, tmp_path)
    with _client(path) as client:
        for route, body in (("documents", {"documents": [{"_id": "n1", "text": "x"}]}), ("delete", {"ids": ["n1"]})):
            answer = client.post(f"/v1/indexes/tiny/{route}", json=body)
            assert answer.status_code == 403, answer.text
            assert answer.json()["error"]["type"] == "writes_disabled"
        assert _generation(client, x="y") is None  # a classic index, unchanged
        assert _ids(client, "cancer", x="y")
    assert not (path / "segments").exists()


def test_writes_need_the_key_and_searches_see_them(bm25_index, tmp_path):
    path = _copy(bm25_index, tmp_path)
    # the index's BM25 vocabulary is frozen: new documents are written in words the corpus knows
    doc = {"_id": "new-1", "title": "Telomeres", "text": "telomeres telomeres nanoparticles"}
    with _client(path, api_key=KEY, refresh_s=0) as client:
        route = "/v1/indexes/tiny/documents"
        assert client.post(route, json={"documents": [doc]}).status_code == 401
        assert client.post(route, json={"documents": [doc]}, headers={"X-API-Key": "wrong"}).status_code == 403
        assert _generation(client) is None
        answer = client.post(route, json={"documents": [doc]}, headers=AUTH)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        first = body["generation"]
        assert body["upserted"] == 1 and body["live_docs"] == 61 and first == _generation(client)
        hits = client.post("/v1/search", json={"query": "telomeres nanoparticles", "k": 3, "fields": True},
                           headers=AUTH).json()["hits"]
        assert hits[0]["doc_id"] == "new-1" and hits[0]["title"] == "Telomeres"
        edited = {**doc, "text": "paramecium paramecium dialysis", "title": "Paramecium"}
        answer = client.post(route, json={"documents": [edited]}, headers=AUTH)
        assert answer.json()["generation"] == first + 1 and answer.json()["live_docs"] == 61
        assert "new-1" not in _ids(client, "telomeres nanoparticles")
        assert _ids(client, "paramecium dialysis")[0] == "new-1"
        old = _ids(client, "cancer")[0]
        answer = client.post("/v1/indexes/tiny/delete", json={"ids": [old, "new-1", "never-there"]}, headers=AUTH)
        assert answer.status_code == 200, answer.text
        assert (answer.json()["deleted"], answer.json()["not_found"]) == (2, 1)
        assert answer.json()["generation"] == first + 2 == _generation(client)
        assert old not in _ids(client, "cancer") and "new-1" not in _ids(client, "paramecium dialysis")
        for body, status in (({"documents": [{"_id": "a b", "text": "x"}]}, 400),
                             ({"documents": [{"_id": "d", "text": "x"}, {"_id": "d", "text": "y"}]}, 400),
                             ({"documents": []}, 422), ({"documents": [{"text": "no id"}]}, 422),
                             ({"ids": ["x"]}, 422)):
            answer = client.post(route, json=body, headers=AUTH)
            assert answer.status_code == status, (body, answer.text)
        assert client.post("/v1/indexes/nope/delete", json={"ids": ["x"]}, headers=AUTH).status_code == 404
        assert _generation(client) == first + 2  # refused writes commit nothing
        spec = client.get("/openapi.json", headers=AUTH).json()["paths"]
        assert {"/v1/indexes/{name}/documents", "/v1/indexes/{name}/delete"} <= set(spec)


def test_commits_of_another_writer_are_picked_up_without_a_restart(bm25_index, tmp_path):
    path = _copy(bm25_index, tmp_path)
    with _client(path, api_key=KEY, refresh_s=0.1) as client:
        assert "other-1" not in _ids(client, "leukemia zinc")
        other = heron.Index.open(path)  # e.g. heron index add in another process
        other.add([{"_id": "other-1", "text": "leukemia zinc zinc leukemia"}])
        generation = other.commit()
        deadline = time.monotonic() + 20
        while _generation(client) != generation and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _generation(client) == generation
        assert _ids(client, "leukemia zinc")[0] == "other-1"
        other.merge(1)
        deadline = time.monotonic() + 20
        while _generation(client) != other.generation and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _ids(client, "leukemia zinc")[0] == "other-1"
        info = client.get("/v1/indexes", headers=AUTH).json()["indexes"]["tiny"]
        assert info["generation"] == other.generation and "/" not in json.dumps(info["members"]["served"]["path"])
    with _client(path, api_key=KEY, refresh_s=0, verify=True) as client:  # a segmented index from the start
        deadline = time.monotonic() + 30
        while client.get("/healthz").json()["status"] == "degraded" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.get("/healthz").json()["status"] == "ok"  # every segment's files verified in full
        assert _ids(client, "leukemia zinc")[0] == "other-1" and _generation(client) == other.generation


def test_searches_are_answered_while_writes_run(bm25_index, tmp_path):
    path = _copy(bm25_index, tmp_path)
    statuses, stop = [], threading.Event()
    with _client(path, api_key=KEY, refresh_s=0.05) as client:
        def search():
            while not stop.is_set():
                statuses.append(client.post("/v1/search", json={"query": "cancer cells", "k": 5},
                                            headers=AUTH).status_code)

        readers = [threading.Thread(target=search) for _ in range(2)]
        for reader in readers:
            reader.start()
        try:
            for i in range(4):
                answer = client.post("/v1/indexes/tiny/documents", headers=AUTH,
                                     json={"documents": [{"_id": f"w{i}", "text": f"cancer cells batch {i}"}]})
                assert answer.status_code == 200, answer.text
            heron.Index.open(path).merge(1)
        finally:
            stop.set()
            for reader in readers:
                reader.join()
        assert statuses and set(statuses) == {200}
        assert {f"w{i}" for i in range(4)} <= set(_ids(client, "cancer cells"))


def test_schemathesis_finds_no_5xx_on_the_write_routes(bm25_index, tmp_path):
    """Schema-driven requests to the write routes of `heron serve` with an API key (bounded examples)."""
    from serving import run_schemathesis, schemathesis_cli, start_heron_serve

    cli = schemathesis_cli()
    path = _copy(bm25_index, tmp_path)
    proc, url = start_heron_serve(["--index", f"tiny={path}", "--log-level", "warning", "--no-verify"],
                                  env={**os.environ, "HERON_API_KEY": KEY}, timeout=120)
    # the repository's settings, with the served index's name for {name}: so the writes really happen
    config = tmp_path / "schemathesis.toml"
    repo = Path(__file__).resolve().parents[1]
    config.write_text((repo / "schemathesis.toml").read_text() + '\n[parameters]\n"path.name" = "tiny"\n')
    try:
        run = run_schemathesis(cli, url, config, "--include-path-regex", "^/v1/indexes/", key=KEY, max_examples=20,
                               cwd=tmp_path)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert run.returncode == 0, run.stdout[-6000:]
    assert "No issues found" in run.stdout
    assert heron.Index.open(path).generation > 2  # schema-valid batches were written and committed


def test_serve_flags_set_the_write_limit_and_the_commit_watcher(bm25_index, tmp_path):
    """`heron serve --max-write-docs 2 --refresh 0.2` (a real server process): a third document in one request is
    refused with 422; a commit made by another process (heron.Index) is seen without a restart."""
    from serving import start_heron_serve

    path = _copy(bm25_index, tmp_path)
    proc, url = start_heron_serve(["-i", f"tiny={path}", "--api-key", KEY, "--max-write-docs", "2", "--refresh", "0.2",
                                   "--no-verify", "--log-level", "warning"])
    try:
        docs = [{"_id": f"w{i}", "text": "telomeres nanoparticles"} for i in range(3)]
        route = f"{url}/v1/indexes/tiny/documents"
        assert httpx.post(route, json={"documents": docs}, headers=AUTH).status_code == 422
        assert httpx.post(route, json={"documents": docs[:2]}, headers=AUTH).status_code == 200
        writer = heron.Index.open(path)
        writer.delete(["w0"])
        writer.commit()
        deadline = time.monotonic() + 30
        while True:
            hits = httpx.post(f"{url}/v1/search", json={"query": "telomeres nanoparticles", "k": 100},
                              headers=AUTH).json()["hits"]
            found = {h["doc_id"] for h in hits}
            if "w0" not in found or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert "w1" in found and "w0" not in found
    finally:
        proc.terminate()
        proc.wait(timeout=30)
