"""heron.Index changes: add / upsert / delete / commit / refresh / merge, and the segments new documents are
encoded into (heron.build.segment) — checked against from-scratch builds with the same frozen settings and
against brute force."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import heron
from heron.errors import HeronError, InputFormatError

QUERIES = ["protein folding in cells", "cancer risk and obesity", "dialysis mortality", "vitamin d deficiency",
           "stem cells", "gene expression in tumours"]


def _corpus(tiny_beir: Path) -> list[dict]:
    with open(tiny_beir / "corpus.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _dataset(root: Path, docs: list[dict], tiny_beir: Path) -> Path:
    """A BEIR folder holding ``docs`` (the queries and qrels of ``tiny_beir``)."""
    root.mkdir(parents=True)
    with open(root / "corpus.jsonl", "w", encoding="utf-8") as handle:
        for doc in docs:
            handle.write(json.dumps(doc) + "\n")
    shutil.copy(tiny_beir / "queries.jsonl", root / "queries.jsonl")
    shutil.copytree(tiny_beir / "qrels", root / "qrels")
    return root


def _build(kind: str, data: Path, out: Path, **extra) -> Path:
    from heron.build import build_index, make_config

    return build_index(make_config({"dataset": str(data), "output": str(out), "encoder": {"type": kind}, **extra}),
                       progress=False)


def _search(index, queries=QUERIES, k=10, **kw):
    return [[(h.doc_id, h.score) for h in hits] for hits in index.search_batch(queries, k=k, **kw)]


# -- input checks ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("docs, message", [
    ([], "no documents"),
    ([{"_id": "a"}, {"_id": "a"}], "duplicate id 'a'"),
    ([{"_id": ""}], "field '_id' is empty"),
    ([{"_id": "a b"}], "holds white space"),
    ([{"title": "x"}], "missing field '_id'"),
    ([{"_id": "a", "text": 3}], "field 'text' must be a string"),
    ([{"_id": "a", "text": "bad \ud800"}], "not valid UTF-8"),
    ([{"_id": True}], "field '_id' must be a string or an integer"),
    (["a"], "expected a JSON object"),
])
def test_documents_are_checked_like_a_corpus(docs, message):
    from heron.build.segment import read_documents

    with pytest.raises(InputFormatError, match=message):
        read_documents(docs)


def test_corpus_file_errors_name_file_and_line(tmp_path):
    from heron.build.segment import read_documents

    path = tmp_path / "new.jsonl"
    path.write_bytes(b'{"_id": "a", "text": "ok"}\n{"_id": "b", "text": "\xff"}\n')
    with pytest.raises(InputFormatError, match=r"new.jsonl:2"):
        read_documents(path)
    path.write_text('{"_id": "a"}\n{"_id": 7, "title": "t"}\n{"_id": "a"}\n')
    with pytest.raises(InputFormatError, match=r"new.jsonl:3: field '_id': duplicate id 'a'"):
        read_documents(path)
    path.write_text('{"_id": "a"}\n{"_id": 7, "title": "t"}\n')
    assert [(d.id, d.title) for d in read_documents(path)] == [("a", ""), ("7", "t")]
    with pytest.raises(HeronError, match="no such corpus file"):
        read_documents(tmp_path / "missing.jsonl")


# -- BM25: frozen statistics --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bm25_parts(tmp_path_factory, tiny_beir):
    """A BM25 index of the first 35 documents, and the 15 others to add."""
    tmp = tmp_path_factory.mktemp("bm25")
    docs = _corpus(tiny_beir)
    old, new = docs[:35], docs[35:]
    index = _build("bm25", _dataset(tmp / "old", old, tiny_beir), tmp / "classic")
    return index, old, new


def _copy(index: Path, tmp: Path) -> Path:
    from conftest import make_writable

    target = tmp / index.name
    shutil.copytree(index, target)
    return make_writable(target)


def _frozen_reference(classic: Path, docs: list[dict], out: Path) -> Path:
    """A from-scratch inverted index over ``docs`` with the classic index's BM25 statistics frozen (N, avgdl,
    df, vocabulary) and its quantisation scale: what an add must equal."""
    from heron.build.segment import frozen_bm25_vectors
    from heron.eval.datasets import Document
    from heron.indexing.inverted import InvertedIndex, build_inverted_index

    template = InvertedIndex.open(classic)
    texts = [Document(d["_id"], d.get("title") or "", d.get("text") or "").contents for d in docs]
    matrix = frozen_bm25_vectors(template.encoder_dir, texts)
    return build_inverted_index([([d["_id"] for d in docs], matrix)], out, vocab=template.vocab,
                                encoder=template.encoder, quantization="uint16", scale=template.scale,
                                encoder_dir=template.encoder_dir, progress=False)


def test_bm25_add_equals_a_build_with_frozen_statistics(bm25_parts, tmp_path):
    classic, old, new = bm25_parts
    path = _copy(classic, tmp_path)
    index = heron.Index.open(path)
    before = _search(index)
    assert index.generation is None  # classic, write-once
    assert index.add(new[:10]) == 10
    assert _search(index) == before  # pending: searches still see the last commit
    generation = index.commit()
    assert generation == index.generation and generation >= 2  # the conversion is a commit of its own
    index.add(new[10:])
    assert index.commit() == generation + 1
    assert index.snapshot.num_docs == len(old + new) and len(index.snapshot.segments) == 3
    reference = heron.Index.open(_frozen_reference(classic, old + new, tmp_path / "reference"))
    for k in (3, 10, 50):
        assert _search(index, k=k) == _search(reference, k=k)  # same ids, same float32 scores, same tie order
    # a term only new documents hold is dropped (the frozen vocabulary cannot hold it): no error, no hit
    index.add([{"_id": "zz", "text": "qqqxyzzy qqqxyzzy"}])
    index.commit()
    assert index.search("qqqxyzzy", k=5) == []
    assert index.search("stem cells", k=100, allow=["zz"]) == []


def test_delete_upsert_refresh_and_merge(bm25_parts, tmp_path):
    classic, old, new = bm25_parts
    path = _copy(classic, tmp_path)
    writer = heron.Index.open(path)
    reader = heron.Index.open(path)  # another reader: it sees the commit it opened until refresh()
    writer.add(new)
    g1 = writer.commit()
    assert reader.generation is None and reader.refresh() and reader.generation == g1
    gone = [old[0]["_id"], new[0]["_id"], "no-such-id"]
    assert writer.delete(gone) == 2
    edited = {**new[1], "title": "Edited title", "text": "Replacement text about stem cells and telomeres"}
    assert writer.upsert([edited]) == 1
    g2 = writer.commit()
    assert g2 == g1 + 1
    assert reader.generation == g1 and reader.refresh() and reader.generation == g2
    assert not reader.refresh()  # nothing newer
    live = [d for d in old + new if d["_id"] not in gone[:2] and d["_id"] != edited["_id"]] + [edited]
    reference = heron.Index.open(_frozen_reference(classic, live, tmp_path / "reference"))
    for index in (writer, reader):
        assert _search(index, k=50) == _search(reference, k=50)
        assert _search(index, k=10, prf="rocchio") == _search(reference, k=10, prf="rocchio")  # feedback vectors
        assert index.search("stem cells", k=50, allow=gone[:2]) == []
        top = index.search("stem cells telomeres", k=50, fields=True)
        row = next(h for h in top if h.doc_id == edited["_id"])
        assert (row.title, row.text) == ("Edited title", edited["text"])
    with pytest.raises(HeronError, match="already"):
        writer.add([new[2]])  # an id already live: only upsert replaces it
    writer.rollback()
    merged = writer.merge(1)
    assert merged == g2 + 1 and len(writer.snapshot.segments) == 1
    assert _search(writer, k=50) == _search(reference, k=50)
    assert reader.refresh() and _search(reader, k=50) == _search(reference, k=50)
    info = writer.describe()
    assert info["generation"] == merged and info["members"][writer.default]["num_docs"] == len(live)


def test_one_writer_at_a_time(bm25_parts, tmp_path):
    classic, _, new = bm25_parts
    path = _copy(classic, tmp_path)
    first, second = heron.Index.open(path), heron.Index.open(path)
    first.add(new[:2])
    from concurrent.futures import ThreadPoolExecutor

    from heron.api import IndexBusy

    with ThreadPoolExecutor(1) as other:  # another thread (or process) is refused while the lock is held
        with pytest.raises(IndexBusy, match="another"):
            other.submit(second.delete, [new[0]["_id"]]).result()
        first.commit()  # releases the lock
        assert other.submit(second.delete, [new[0]["_id"]]).result() == 1
        assert other.submit(second.commit).result() == first.generation + 1


# -- SPLADE: same model, same scale → the very same impacts ---------------------------------------------------
@pytest.mark.models
def test_splade_add_equals_a_from_scratch_build_with_the_same_scale(tiny_beir, tmp_path):
    from heron.indexing.inverted import InvertedIndex

    docs = [{**d, "text": d["text"][:300]} for d in _corpus(tiny_beir)[:14]]  # short: encoding is the cost
    classic = _build("splade", _dataset(tmp_path / "old", docs[:10], tiny_beir), tmp_path / "splade")
    scale = InvertedIndex.open(classic).scale
    index = heron.Index.open(classic)
    index.add(docs[10:])
    index.commit()
    scratch = _build("splade", _dataset(tmp_path / "all", docs, tiny_beir), tmp_path / "scratch", scale=scale)
    seg, ref = index.snapshot.member(index.snapshot.members[0]), InvertedIndex.open(scratch)
    assert seg.doc_ids == ref.doc_ids
    ours = seg.vectors(range(len(docs)))
    theirs = ref.vectors(range(len(docs)))
    # documents are encoded in batches of other sizes (padding): a weight may round to the neighbouring impact
    diff = abs(ours - theirs)
    assert diff.max() <= 1.5 / scale and diff.nnz <= 0.01 * theirs.nnz + 2
    ranked, expected = _search(index), _search(heron.Index.open(scratch))
    print(f"impacts differing from the from-scratch build: {diff.nnz} of {theirs.nnz}")
    if diff.nnz == 0:
        assert ranked == expected
    else:
        assert [[d for d, _ in q[:3]] for q in ranked] == [[d for d, _ in q[:3]] for q in expected]


# -- a bundle: every member takes the same changes in one commit ------------------------------------------------
BUNDLE = """\
dataset: {data}
output: {out}
indexes:
  bm25: {{encoder: {{type: bm25}}}}
  dense: {{encoder: {{type: dense, model: minilm}}, faiss: {{type: flat}}}}
"""


@pytest.mark.models
def test_bundle_members_change_together_and_dense_equals_brute_force(tiny_beir, tmp_path):
    from heron.build.bundle import build_bundle, load_bundle_config
    from heron.retrieval.encoders.dense import DenseEncoder

    docs = _corpus(tiny_beir)[:20]
    config = tmp_path / "bundle.yaml"
    config.write_text(BUNDLE.format(data=_dataset(tmp_path / "old", docs[:12], tiny_beir), out=tmp_path / "b"))
    path = build_bundle(load_bundle_config(config), progress=False, log=lambda *a: None)
    index = heron.Index.open(path)
    index.add(docs[12:])
    index.delete([docs[0]["_id"]])
    index.upsert([{**docs[1], "text": "dense retrieval of edited documents"}])
    generation = index.commit()
    snap = index.snapshot
    assert snap.generation == generation and snap.layout == "bundle"
    live = [d["_id"] for d in docs if d["_id"] not in (docs[0]["_id"], docs[1]["_id"])] + [docs[1]["_id"]]
    for name in ("bm25", "dense"):
        assert snap.member(name).doc_ids == live  # the members agree on which documents exist, in one order
    encoder = DenseEncoder.load(snap.member("dense").encoder_dir)
    queries = encoder.encode_queries(QUERIES)
    vectors = snap.member("dense").vectors(range(len(live)))
    scores = queries @ vectors.T
    for q, hits in enumerate(index.search_batch(QUERIES, k=5, retriever="dense")):
        order = sorted(range(len(live)), key=lambda i: (-scores[q, i], i))[:5]
        assert [h.doc_id for h in hits] == [live[i] for i in order]
        np.testing.assert_allclose([h.score for h in hits], scores[q, order], rtol=1e-5, atol=1e-6)
    fused = index.search("dense retrieval of edited documents", k=3, retriever="bm25+dense", fields=True)
    assert fused[0].doc_id == docs[1]["_id"] and fused[0].text == "dense retrieval of edited documents"


@pytest.mark.models
@pytest.mark.parametrize("faiss_type", ["ivf-flat"])  # (hnsw: the same path, no training; slower to build)
def test_faiss_segments_of_a_trained_type(tiny_beir, tmp_path, faiss_type):
    """An IVF member takes new segments of its own type, its coarse quantiser trained on the new segment (nlist
    re-resolved for its size); with every list probed it finds each new document by its own text."""
    docs = [{**d, "text": d["text"][:200]} for d in _corpus(tiny_beir)[:16]]
    classic = _build("dense", _dataset(tmp_path / "old", docs[:12], tiny_beir), tmp_path / "dense",
                     faiss={"type": faiss_type})
    index = heron.Index.open(classic)
    index.add(docs[12:])
    index.commit()
    parts = index.snapshot.member(index.snapshot.members[0]).parts
    assert [p.index_type for p in parts] == [faiss_type] * 2
    if faiss_type == "ivf-flat":
        assert parts[1].manifest["faiss"]["params"]["nlist"] <= 4
    texts = [d["text"] for d in docs[12:]]
    hits = index.search_batch(texts, k=1)
    assert [h[0].doc_id for h in hits] == [d["_id"] for d in docs[12:]]


def test_a_commit_may_not_delete_every_document(bm25_parts, tmp_path):
    classic, old, _ = bm25_parts
    path = _copy(classic, tmp_path)
    with heron.Index.open(path) as index:
        assert index.delete([d["_id"] for d in old]) == len(old)
        with pytest.raises(HeronError, match="delete every document"):
            index.commit()
        index.add([{"_id": "keeper", "text": "stem cells"}])
        generation = index.commit()  # with one document added, the same deletions commit
        assert index.snapshot.num_docs == 1 and index.generation == generation
        assert [h.doc_id for h in index.search("stem cells")] == ["keeper"]
