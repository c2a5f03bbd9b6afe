"""Milvus as a serving backend (heron export milvus; heron.Index.open("milvus://…")) on a real milvus-lite
database: searches through Milvus equal heron's own (exact sparse: ids and scores to float rounding; dense HNSW
on a small collection: the same as FAISS Flat), fusion / PRF / titles on top, an interrupted export resumed
without duplicates, sync after add / delete, the command line, and the one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymilvus", reason="Milvus serving needs the distributed extra (pymilvus, milvus-lite)")
pytest.importorskip("milvus_lite", reason="Milvus serving needs the distributed extra (pymilvus, milvus-lite)")

import heron  # noqa: E402
from heron.errors import HeronError, IntegrityError  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from conftest import make_tiny_beir  # noqa: E402
from killing import new_cache  # noqa: E402

pytestmark = pytest.mark.models

NUM_DOCS = 100
BUNDLE = """\
dataset: {data}
output: {out}
default: splade
fusion: {{method: rrf}}
indexes:
  splade: {{encoder: {{type: splade, model: splade-tiny}}}}
  dense: {{encoder: {{type: dense, model: minilm}}, faiss: {{type: flat}}}}
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A SciFact cut of NUM_DOCS documents, a SPLADE + dense bundle of it, a heron cache of this module (the
    models linked in) and the bundle exported with titles and text to a milvus-lite file."""
    root = tmp_path_factory.mktemp("milvus")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HERON_CACHE", str(new_cache(root / "cache")))
        from heron.build.bundle import build_bundle, load_bundle_config
        from heron.build.export_milvus import export_milvus
        from heron.indexing.milvus_store import address_for, release_local

        data = make_tiny_beir(root / "data", num_docs=NUM_DOCS, num_train=10, num_test=20)
        config = root / "bundle.yaml"
        config.write_text(BUNDLE.format(data=data, out=root / "bundle"))
        bundle = build_bundle(load_bundle_config(config), progress=False, log=lambda *a: None)
        db = root / "heron.db"
        summary = export_milvus(bundle, address_for(str(db), "tiny"), fields=True, progress=False)
        assert summary["documents"] == NUM_DOCS and summary["sent"] == NUM_DOCS
        queries = [json.loads(line)["text"] for line in open(data / "queries.jsonl", encoding="utf-8")]
        yield {"root": root, "data": data, "bundle": Path(bundle), "db": db, "queries": queries,
               "address": f"milvus://{db}/tiny"}
        release_local(db)


def _same_ranking(got, want, rtol=1e-5, atol=1e-6):
    """Two rankings of ``(ids, scores)`` agree: scores position by position to float rounding, and the same ids
    except among documents tied (to that tolerance) with another at the cut-off or with each other."""
    (ids_a, scores_a), (ids_b, scores_b) = got, want
    assert len(ids_a) == len(ids_b)
    np.testing.assert_allclose(scores_a, scores_b, rtol=rtol, atol=atol)
    if not len(ids_a):
        return
    cut = float(scores_b[-1])
    tol = atol + rtol * abs(cut)
    safe = lambda ids, scores: {d for d, s in zip(ids, scores) if s > cut + tol}  # noqa: E731
    assert safe(ids_a, scores_a) == safe(ids_b, scores_b)
    for d, s in zip(ids_a, scores_a):  # a tie swapped: the id is in the other ranking with the same score
        if d not in ids_b:
            assert abs(s - cut) <= tol
    assert sorted(ids_a) == sorted(ids_b) or abs(float(scores_a[-1]) - cut) <= tol


def _hits(index, queries, k=10, **kw):
    return [([h.doc_id for h in hits], np.array([h.score for h in hits], np.float32))
            for hits in index.search_batch(queries, k=k, **kw)]


@pytest.fixture
def cache(env, monkeypatch):
    monkeypatch.setenv("HERON_CACHE", str(env["root"] / "cache"))


# -- search through Milvus equals heron's own ---------------------------------------------------------------------
def test_sparse_dense_and_fused_search_equal_heron(env, cache):
    served, local = heron.Index.open(env["address"]), heron.Index.open(env["bundle"])
    assert served.retrievers == ["splade", "dense"] and served.default == "splade"
    queries = env["queries"]
    for retriever in ("splade", "dense", "splade+dense"):
        for got, want in zip(_hits(served, queries, retriever=retriever), _hits(local, queries, retriever=retriever)):
            _same_ranking(got, want)
    # PRF and an allow-list on top, titles and text from the collection
    for got, want in zip(_hits(served, queries[:5], retriever="splade", prf="rocchio"),
                         _hits(local, queries[:5], retriever="splade", prf="rocchio")):
        _same_ranking(got, want, rtol=1e-4, atol=1e-5)
    allow = [h.doc_id for h in local.search(queries[0], k=40, retriever="dense")][::3]
    for retriever in ("splade", "dense"):
        for got, want in zip(_hits(served, queries[:4], retriever=retriever, allow=allow),
                             _hits(local, queries[:4], retriever=retriever, allow=allow)):
            assert set(got[0]) <= set(allow)
            _same_ranking(got, want)
    hit = served.search(queries[0], k=1, fields=True)[0]
    want = local.search(queries[0], k=1, fields=True)[0]
    assert (hit.doc_id, hit.text) == (want.doc_id, want.text) and hit.text
    # precomputed vectors, checked for the member's space
    vector = {"protein": 1.0, "folding": 0.5, "not-a-term": 3.0}
    got = served.search(vector=vector, k=5, retriever="splade")
    want = local.search(vector=vector, k=5, retriever="splade")
    _same_ranking(([h.doc_id for h in got], [h.score for h in got]),
                  ([h.doc_id for h in want], [h.score for h in want]))
    with pytest.raises(HeronError, match="384 numbers"):
        served.search(vector=[0.1, 0.2], retriever="dense")
    info = served.describe()
    assert info["milvus"]["num_docs"] == NUM_DOCS and info["members"]["splade"]["space"] == "sparse"
    with pytest.raises(HeronError, match="not changed; change the heron index"):
        served.delete(["x"])


def test_member_vectors_are_heron_vectors(env, cache):
    """What Milvus holds is heron's: the dequantised sparse rows and the dense rows, for every document."""
    from heron.indexing.milvus_index import MilvusCollection
    from heron.indexing.registry import open_index

    collection = MilvusCollection.open(env["address"])
    for name in ("splade", "dense"):
        local = open_index(env["bundle"] / name)
        member = collection.member(name)
        handles = [member.doc_index(d) for d in local.doc_ids]
        got, want = member.vectors(handles), local.vectors(range(local.num_docs))
        if name == "splade":
            assert (got != want).nnz == 0
        else:
            np.testing.assert_array_equal(got, want)


# -- export: resumable, idempotent, sync --------------------------------------------------------------------------
def _heron(*args, env_extra=None, cache_root=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(heron.__file__).parents[1]),
                                                          os.environ.get("PYTHONPATH", "")])}
    env.pop("HERON_TEST_KILL_AT", None)
    env.update(env_extra or {})
    if cache_root is not None:
        env["HERON_CACHE"] = str(cache_root)
    return subprocess.run([sys.executable, "-m", "heron", *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=600)


def _ids(address) -> list[str]:
    from heron.indexing.milvus_store import connect, parse_address

    addr = parse_address(address)
    client = connect(addr)
    client.load_collection(addr.collection)
    rows = client.query(addr.collection, filter="", output_fields=["id"], limit=16384)
    return sorted(str(r["id"]) for r in rows)


def test_killed_export_resumes_without_duplicates_and_cli_query(env, tmp_path):
    from heron.indexing.milvus_store import release_local

    db, cache_root = tmp_path / "resume.db", env["root"] / "cache"
    index = env["bundle"] / "splade"  # one member of the bundle is an index directory of its own
    args = ["export", "milvus", index, "--uri", db, "--collection", "resume", "--no-progress"]
    killed = _heron(*args, env_extra={"HERON_MILVUS_BATCH": "30", "HERON_TEST_KILL_AT": "milvus.batch:2"},
                    cache_root=cache_root)
    assert killed.returncode == -9, killed.stderr[-2000:]
    opened = _heron("query", "-i", f"milvus://{db}/resume", "protein", cache_root=cache_root)
    assert opened.returncode == 2 and "has not finished" in opened.stderr and opened.stderr.count("\n") == 1
    resumed = _heron(*args, env_extra={"HERON_MILVUS_BATCH": "30"}, cache_root=cache_root)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{NUM_DOCS} documents ({NUM_DOCS - 60} sent, 0 deleted)" in resumed.stderr
    assert resumed.stdout.strip() == f"milvus://{db}/resume"
    again = _heron(*args, cache_root=cache_root)  # idempotent: nothing to send
    assert again.returncode == 0 and "(0 sent, 0 deleted)" in again.stderr
    query = _heron("query", "-i", f"milvus://{db}/resume", "--json", env["queries"][0], cache_root=cache_root)
    assert query.returncode == 0, query.stderr[-2000:]
    local = heron.Index.open(index).search(env["queries"][0], k=10)
    hits = json.loads(query.stdout)["hits"]
    _same_ranking(([h["doc_id"] for h in hits], [h["score"] for h in hits]),
                  ([h.doc_id for h in local], [h.score for h in local]))
    ids = _ids(f"milvus://{db}/resume")
    assert ids == sorted(heron.Index.open(index).retriever("splade").index.doc_ids)  # each document once
    release_local(db)


def test_sync_after_add_delete_and_upsert(env, cache, tmp_path):
    from heron.build.export_milvus import export_milvus
    from heron.indexing.milvus_store import address_for

    index_dir = tmp_path / "splade"
    shutil.copytree(env["bundle"] / "splade", index_dir)
    address = address_for(str(tmp_path / "sync.db"), "sync")
    with pytest.raises(HeronError, match="no milvus-lite database"):  # --sync creates nothing
        export_milvus(index_dir, address, sync=True, progress=False)
    export_milvus(index_dir, address, progress=False)
    corpus = [json.loads(line) for line in open(env["data"] / "corpus.jsonl", encoding="utf-8")]
    writable = heron.Index.open(index_dir)
    for path in [index_dir, *index_dir.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    writable.add([{"_id": "new-1", "title": "", "text": "protein folding chaperones in the cell"},
                  {"_id": "new-2", "title": "", "text": "obesity raises the risk of cancer"}])
    writable.delete([corpus[0]["_id"], corpus[1]["_id"]])
    writable.upsert([{"_id": corpus[2]["_id"], "title": "", "text": "vitamin d deficiency and bone fractures"}])
    writable.commit()
    summary = export_milvus(index_dir, address, sync=True, progress=False)
    assert summary["documents"] == NUM_DOCS and summary["deleted"] == 2 and summary["sent"] == 3
    assert summary["generation"] == writable.generation
    served = heron.Index.open(str(address))
    live = heron.Index.open(index_dir)
    queries = env["queries"][:8] + ["protein folding chaperones", "vitamin d deficiency and bone fractures"]
    for got, want in zip(_hits(served, queries), _hits(live, queries)):
        _same_ranking(got, want)
    assert served.search("vitamin d deficiency and bone fractures", k=1)[0].doc_id == corpus[2]["_id"]
    ids = _ids(str(address))
    assert "new-1" in ids and corpus[0]["_id"] not in ids and len(ids) == NUM_DOCS
    again = export_milvus(index_dir, address, sync=True, progress=False)
    assert again["sent"] == 0 and again["deleted"] == 0


def test_serve_and_eval_a_milvus_collection(env, cache):
    """heron serve --index milvus://… answers as heron.Index does (fused, with text) and verifies the cached
    encoders in the background; heron eval --index milvus://…/MEMBER scores a member as heron's own index."""
    import httpx
    from serving import start_heron_serve

    from heron.indexing.milvus_store import release_local

    release_local(env["db"])  # the file's lock: the server is another process
    local = heron.Index.open(env["bundle"])
    proc, url = start_heron_serve(["--index", env["address"]],
                                  env={**os.environ, "PYTHONPATH": str(Path(heron.__file__).parents[1])})
    try:
        for retriever in ("splade", "splade+dense"):
            body = httpx.post(f"{url}/v1/search", json={"query": env["queries"][0], "k": 5, "retriever": retriever,
                                                        "fields": True}, timeout=60).json()
            want = local.search(env["queries"][0], k=5, retriever=retriever, fields=True)
            _same_ranking(([h["doc_id"] for h in body["hits"]], [h["score"] for h in body["hits"]]),
                          ([h.doc_id for h in want], [h.score for h in want]))
            assert body["hits"][0]["text"] == want[0].text
        deadline = time.monotonic() + 60
        while (health := httpx.get(f"{url}/healthz", timeout=10).json())["status"] != "ok":
            assert health["status"] == "degraded" and time.monotonic() < deadline, health
            time.sleep(0.5)
        indexes = httpx.get(f"{url}/v1/indexes", timeout=10).json()["indexes"]
        assert indexes["tiny"]["retrievers"] == ["splade", "dense"]
    finally:
        proc.kill()
        proc.wait()
    records = []
    for i, index in enumerate((f"{env['address']}/splade", env["bundle"] / "splade")):
        out = env["root"] / f"results-{i}"
        proc = _heron("eval", "--dataset", env["data"], "--index", index, "--results-dir", out, "--metric", "ndcg@10",
                      cache_root=env["root"] / "cache")
        assert proc.returncode == 0, proc.stderr[-2000:]
        [found] = out.glob("*/*/metrics.json")
        records.append(json.loads(found.read_text()))
    served, own = records
    assert served["retriever"]["name"].endswith("-milvus") and served["num_queries"] == own["num_queries"]
    assert served["mean"]["ndcg@10"] == pytest.approx(own["mean"]["ndcg@10"], abs=1e-6)


# -- bad input: one-line errors -------------------------------------------------------------------------------------
def test_bad_addresses_and_missing_collections(env, cache, tmp_path):
    from heron.indexing.milvus_store import address_for, parse_address

    assert parse_address("milvus://db.example:19530/docs").uri == "http://db.example:19530"
    assert parse_address("milvus://milvus/docs").uri == "http://milvus:19530"
    assert parse_address("milvus:///data/x/heron.db/docs").uri == "/data/x/heron.db"
    assert str(parse_address("milvus:/data/x/heron.db/docs/dense")) == "milvus:///data/x/heron.db/docs/dense"
    assert parse_address("milvus+https://h:443/c").uri == "https://h:443"
    for bad, message in [("milvus:///data/heron.db", "names no collection"),
                         ("milvus://host:19530/", "names no collection"),
                         ("milvus://user:pw@host/c", "credentials do not belong"),
                         ("milvus://host/c?token=x", "takes no query"),
                         ("milvus:///data/nodb/c", "ending in .db"),
                         ("milvus://host/9bad", "collection name"),
                         ("milvus://host/a/b/c", "too many parts")]:
        with pytest.raises(HeronError, match=message):
            parse_address(bad)
    started = time.monotonic()
    with pytest.raises(HeronError, match="cannot reach Milvus at http://127.0.0.1:1"):
        heron.Index.open("milvus://127.0.0.1:1/docs")
    assert time.monotonic() - started < 15
    with pytest.raises(HeronError, match="no milvus-lite database"):
        heron.Index.open(f"milvus://{tmp_path}/none.db/docs")
    with pytest.raises(HeronError, match="no collection 'other'"):
        heron.Index.open(f"milvus://{env['db']}/other")
    with pytest.raises(HeronError, match="no member 'colbert'"):
        heron.Index.open(f"{env['address']}/colbert")
    with pytest.raises(HeronError, match="--uri"):
        address_for("localhost:19530", "docs")


def test_dimension_mismatch_and_foreign_collection(env, cache, tmp_path):
    from pymilvus import DataType

    from heron.build.export_milvus import export_milvus
    from heron.indexing.milvus_store import address_for, connect

    address = address_for(str(tmp_path / "other.db"), "docs")
    client = connect(address, create=True)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("v_dense", DataType.FLOAT_VECTOR, dim=8)
    params = client.prepare_index_params()
    params.add_index("v_dense", index_type="FLAT", metric_type="IP")
    client.create_collection("docs", schema=schema, index_params=params)
    with pytest.raises(HeronError, match="field 'v_dense' has dimension 8, the index's member has 384"):
        export_milvus(env["bundle"] / "dense", address, progress=False)
    with pytest.raises(HeronError, match="missing: v_splade"):
        export_milvus(env["bundle"] / "splade", address, progress=False)
    with pytest.raises(HeronError, match="was not written by heron export milvus"):
        heron.Index.open(str(address))


def test_damaged_encoder_part_is_refused(env, monkeypatch, tmp_path):
    """A query-encoder file read back from Milvus is checked before use: a changed part is an IntegrityError."""
    from heron.build.export_milvus import export_milvus
    from heron.indexing.milvus_store import address_for, connect, read_json_blob

    address = address_for(str(tmp_path / "damaged.db"), "docs")
    export_milvus(env["bundle"] / "splade", address, progress=False)
    client = connect(address)
    files = read_json_blob(client, address, "meta")["members"]["splade"]["encoder_files"]
    largest = max(files.values(), key=lambda f: f["bytes"])
    key = f"part:{largest['sha256']}:000001"
    data = client.query(address.companion, filter=f'key == "{key}"', output_fields=["data"])[0]["data"]
    client.upsert(address.companion, [{"key": key, "unused": [0.0, 0.0],
                                       "data": ("A" if data[0] != "A" else "B") + data[1:]}])
    monkeypatch.setenv("HERON_CACHE", str(new_cache(tmp_path / "fresh-cache")))
    with pytest.raises(IntegrityError, match="sha256"):
        heron.Index.open(str(address)).search("protein folding", k=3)


def test_multivector_members_are_refused(tmp_path):
    from heron.build.export_milvus import Source, _member_spec

    source = Source(tmp_path, "bundle", None, {"colbert": {"kind": "multivector", "search": {}, "source": "colbert"}},
                    "colbert", "rrf", None)
    with pytest.raises(HeronError, match="multi-vector index; Milvus serving takes sparse and dense"):
        _member_spec(source, "colbert")
