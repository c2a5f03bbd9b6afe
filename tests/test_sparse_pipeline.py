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
            assert np.allclose(g_scores, w_scores, rtol=1e-5, atol=1e-6)
            # same documents up to ties at equal score
            assert {d for d, s in zip(g_ids, g_scores) if s > g_scores[-1] + 1e-5} == \
                   {d for d, s in zip(w_ids, w_scores) if s > w_scores[-1] + 1e-5}

    proc = heron("eval", "--dataset", "scifact", "--index", str(bm25_index), "--results-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "scifact" / "bm25" / "metrics.json").read_text())
    # uint16 impacts: the index reproduces the native scipy BM25 (0.6789) to four places
    assert round(record["mean"]["ndcg@10"], 4) == 0.6789
    assert round(record["mean"]["recall@100"], 4) == 0.9253


def test_query_command(bm25_index):
    proc = heron("query", "--index", str(bm25_index), "-k", "3", "coffee consumption and cancer risk")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("│") > 0 and "rank" in proc.stdout
    # a query of stop words only encodes to nothing: an empty result, not an error
    proc = heron("query", "--index", str(bm25_index), "the of and")
    assert proc.returncode == 0 and "no results" in proc.stdout
    retriever = SparseIndexRetriever(bm25_index)
    results = retriever.search(["the of and", ""], k=5)
    assert len(results) == 2 and all(ids == [] and len(scores) == 0 for ids, scores in results)
    # an empty argument is a user mistake
    one_line_error(heron("query", "--index", str(bm25_index), "   "), "the query is empty")
    one_line_error(heron("query", "--index", str(bm25_index.parent / "nope"), "x"), "does not exist")
    one_line_error(heron("query", "--index", str(bm25_index), "--mode", "approx", "x"),
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
