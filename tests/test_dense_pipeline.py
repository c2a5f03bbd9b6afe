"""Dense, CSR and fused retrieval from the command line, end to end on a small real-text dataset (builds and
training as commands of their own; eval, query and the one-line errors in this process, which is quicker)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_cli import assert_one_line_error, heron, heron_here

pytestmark = pytest.mark.models


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_beir):
    """Dense flat + HNSW indexes, a tiny CSR checkpoint and its index, all through the CLI."""
    root = tmp_path_factory.mktemp("pipeline")
    env = {"HERON_CACHE": str(root / "cache")}
    import os
    from pathlib import Path

    models = Path(os.environ.get("HERON_CACHE", Path.home() / ".cache" / "heron")) / "models"
    (root / "cache").mkdir()
    (root / "cache" / "models").symlink_to(models)
    for args in (["build-index", "--dataset", str(tiny_beir), "--encoder", "dense", "-o", str(root / "flat")],
                 ["build-index", "--dataset", str(tiny_beir), "--encoder", "dense", "--faiss", "hnsw",
                  "-o", str(root / "hnsw")],
                 ["train", "csr", "-d", str(tiny_beir), "--k", "8", "--steps", "30", "--batch-size", "8",
                  "-o", str(root / "csr-ck")],
                 ["build-index", "--dataset", str(tiny_beir), "--encoder", "csr", "--model", str(root / "csr-ck"),
                  "-o", str(root / "csr")]):
        proc = heron(*args, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
    return root, env


def test_dense_indexes_search_and_eval(built, tiny_beir):
    root, env = built
    from heron.eval import load_dataset
    from heron.indexing.faiss_index import FaissIndex
    from heron.retrieval import open_index_retriever

    flat = FaissIndex.open(root / "flat", verify=True)
    assert flat.index_type == "flat" and flat.num_docs == 60 and flat.dim == 384
    manifest = json.loads((root / "hnsw" / "manifest.json").read_text())
    assert manifest["faiss"]["params"]["m"] == 32 and manifest["encoder"]["model"] == "minilm"
    # the flat index's scores are the brute-force cosine of the stored vectors
    ds = load_dataset(tiny_beir)
    queries = ds.queries("test")
    retriever = open_index_retriever(root / "flat")
    qv = retriever.encode(list(queries.values()))
    (ids, scores), = retriever.search_vectors(qv[:1], k=5)
    brute = np.sort(np.asarray(flat.stored) @ qv[0])[::-1][:5]
    np.testing.assert_allclose(scores, brute, rtol=1e-5, atol=1e-6)

    proc = heron_here("eval", "-d", str(tiny_beir), "--index", str(root / "flat"), "--index", str(root / "hnsw"),
                 "--results-dir", str(root / "res"), env=env)
    assert proc.returncode == 0, proc.stderr
    flat_metrics = json.loads((root / "res" / "tiny" / "minilm" / "metrics.json").read_text())
    assert flat_metrics["mean"]["ndcg@10"] > 0.8  # titles find their own abstracts
    proc = heron_here("query", "--index", str(root / "flat"), "-k", "3", queries["q30"], env=env)
    assert proc.returncode == 0 and "rank" in proc.stdout, proc.stderr
    assert ds.qrels("test")["q30"].popitem()[0] in proc.stdout  # the relevant document is shown


def test_csr_index_and_fusion(built, tiny_beir):
    root, env = built
    from heron.indexing.inverted import InvertedIndex

    index = InvertedIndex.open(root / "csr", verify=True)
    assert index.vocab_size == 4 * 384 and index.encoder["type"] == "csr"
    lengths = np.diff(index.forward_matrix().indptr)
    assert lengths.max() <= 8 and lengths.min() >= 1  # ≤ k latents per document
    spec = f"{root / 'csr'}+{root / 'flat'}"
    proc = heron_here("eval", "-d", str(tiny_beir), "-r", spec, "-r", f"bm25+{root / 'flat'}", "--fusion", "linear",
                 "--index", str(root / "csr"), "--results-dir", str(root / "res2"), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "-linear" in (root / "res2" / "results.md").read_text()


def test_truncated_dense_baseline(built, tiny_beir):
    root, env = built
    from heron.eval import load_dataset
    from heron.retrieval import open_index_retriever

    full = open_index_retriever(root / "flat")
    trunc = open_index_retriever(root / "flat", truncate_dims=384)
    ds = load_dataset(tiny_beir)
    a = full.retrieve(ds, ds.queries("test"), k=10)
    b = trunc.retrieve(ds, ds.queries("test"), k=10)
    for qid in a:  # all dimensions, re-normalised unit vectors: the same ranking
        assert list(a[qid])[:3] == list(b[qid])[:3]
    small = open_index_retriever(root / "flat", truncate_dims=8)
    assert small.describe()["name"].endswith("trunc8")


def test_bad_dense_inputs(built, tiny_beir):
    root, env = built
    assert_one_line_error(heron_here("eval", "-d", str(tiny_beir), "--index", str(root / "csr"), "-s",
                                     "truncate_dims=8", env=env), "not apply to an inverted index")
    assert_one_line_error(heron_here("eval", "-d", str(tiny_beir), "--index", str(root / "flat"), "-s",
                                     "truncate_dims=999", env=env),
                          "truncate_dims=999 must be between 1 and the dimension 384")
    assert_one_line_error(heron_here("eval", "-d", str(tiny_beir), "-r", "bm25+", env=env), "empty member")
    assert_one_line_error(heron_here("eval", "-d", str(tiny_beir), "-r", "bm25+dense", "--fusion", "max", env=env),
                          "unknown fusion 'max'")
    assert_one_line_error(heron_here("build-index", "--dataset", str(tiny_beir), "--encoder", "dense", "--faiss",
                                "annoy", "-o", str(root / "x"), env=env), "faiss.type")
    assert_one_line_error(heron_here("build-index", "--dataset", str(tiny_beir), "--encoder", "csr", "-o",
                                str(root / "x"), env=env), "needs encoder.model")
    assert_one_line_error(heron_here("train", "csr", "-d", str(tiny_beir), "--split", "test", "-o", str(root / "x"),
                                env=env), "refusing to train on the 'test' qrels")
    (root / "flat" / "index.faiss").rename(root / "moved.faiss")
    try:
        assert_one_line_error(heron_here("query", "--index", str(root / "flat"), "cancer", env=env),
                              "index.faiss: file listed in the manifest is missing")
    finally:
        (root / "moved.faiss").rename(root / "flat" / "index.faiss")
