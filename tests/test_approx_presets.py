"""The approximate-search presets and the benchmark that calibrates them (bench/approx_presets.py).

The presets' recall on SciFact, NFCorpus and the dictionary corpus is measured by the benchmark (real
splade-tiny encodings are minutes of CPU, too slow here; docs/BENCHMARKS.md, "Approximate presets on every
real corpus"). These tests check what that measurement rests on: the benchmark's work-counting copy of the
kernel gives heron's answers, its counts are the hand-countable ones, the selection rule picks the
cheapest setting that clears every corpus, and the presets as shipped are what that rule picked from the
committed grid and order recall against exact search on a topical corpus.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from heron.indexing.inverted import InvertedIndex, build_inverted_index
from heron.indexing.inverted import approx as A

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import approx_presets as P  # noqa: E402


def topical_corpus(seed: int = 3, n: int = 3000, v: int = 400, topics: int = 12):
    """Documents and queries drawn from a few topics (each a Zipf-weighted set of terms), so that blocks
    and summaries have structure to exploit, as on real text."""
    rng = np.random.default_rng(seed)
    topic_terms = [rng.choice(v, 60, replace=False) for _ in range(topics)]
    rows, cols, vals = [], [], []
    for d in range(n):
        terms = set()
        for t in rng.choice(topics, 2, replace=False):
            pick = topic_terms[t][np.minimum(rng.zipf(1.5, 25) - 1, 59)]
            terms.update(int(x) for x in pick)
        terms.update(int(x) for x in rng.choice(v, 5))
        for t in sorted(terms):
            rows.append(d)
            cols.append(t)
            vals.append(float(rng.lognormal(0, 0.6)))
    docs = sp.csr_matrix((vals, (rows, cols)), shape=(n, v), dtype=np.float32)
    queries = []
    for _ in range(60):
        t = rng.integers(topics)
        terms = np.unique(np.concatenate([topic_terms[t][:rng.integers(5, 20)], rng.choice(v, 4)])).astype(np.int32)
        queries.append((terms, rng.lognormal(0, 0.7, len(terms)).astype(np.float32)))
    return docs, queries


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    docs, queries = topical_corpus()
    path = build_inverted_index([([str(i) for i in range(docs.shape[0])], docs)], tmp_path_factory.mktemp("p") / "idx",
                                vocab=[f"t{i}" for i in range(docs.shape[1])], encoder={"type": "test"},
                                approx={"n_postings": 300, "summary_energy": 1.0, "threads": 1}, progress=False)
    return InvertedIndex.open(path), queries


def test_counting_kernel_gives_herons_answers(index):
    idx, queries = index
    for qc, hf in ((1, 0.8), (3, 1.0), (5, 1.5), (100, 2.0)):
        counts, found = P.work_counts(idx, queries, qc, hf)
        ids, _ = idx.search_batch(queries, k=P.K, mode="approx", query_cut=qc, heap_factor=hf, threads=1)
        assert [[str(d) for d in row if d >= 0] for row in found] == ids
        assert counts.shape == (len(queries), len(P.WORK_NAMES)) and (counts >= 0).all()
        # blocks visited <= summaries read; documents scored <= the visited blocks' documents
        assert (counts[:, 2] <= counts[:, 0]).all()


def test_counts_are_the_hand_counted_ones(index):
    """With whole summaries (``summary_energy`` 1: every block's summary holds its list's term, so its score
    is positive) and a huge heap factor, every block of the visited lists is read and visited: the counts
    are sums over the structures, computed here directly from the arrays."""
    idx, queries = index
    a = idx.approx
    lb, bdo, bd = (np.asarray(a[name]) for name in ("list_blocks", "block_doc_offsets", "block_docs"))
    fo = np.asarray(idx.arrays["forward_offsets"])
    summaries = [A.decode_summary(a, b) for b in range(len(a["summary_scales"]))]
    counts, _ = P.work_counts(idx, queries, 3, 1e9)
    for q, (terms, weights) in enumerate(queries):
        t, w = idx._prepare_query(terms, weights)
        heaviest = t[np.argsort(-w.astype(np.float64), kind="stable")[:3]]
        blocks = [b for term in heaviest for b in range(lb[term], lb[term + 1])]
        docs = {int(d) for b in blocks for d in bd[bdo[b]:bdo[b + 1]]}
        matches = sum(len(set(summaries[b][0].tolist()) & set(t.tolist())) for b in blocks)
        assert counts[q].tolist() == [len(blocks), len(heaviest) * len(set(t.tolist())) + matches, len(blocks),
                                      len(docs), sum(int(fo[d + 1] - fo[d]) for d in docs), matches]


def test_cheapest_clears_every_corpus_at_least_cost():
    def row(corpus, qc, hf, recall, entries):
        return {"corpus": corpus, "split": "dev", "query_cut": qc, "heap_factor": hf, "recall": recall,
                "summary_entries": entries, "forward_entries": 0}

    rows = [row("a", 2, 1.0, 0.93, 10), row("b", 2, 1.0, 0.91, 10),   # fails b's margin
            row("a", 3, 1.0, 0.95, 30), row("b", 3, 1.0, 0.93, 30),   # clears both: 60
            row("a", 2, 2.0, 0.96, 20), row("b", 2, 2.0, 0.92, 20),   # clears both: 40, the cheapest
            row("a", 4, 2.0, 0.99, 5), row("test-only", 4, 2.0, 0.5, 5)]
    rows.append({**row("b", 1, 1.0, 1.0, 1), "split": "test"})  # test rows never count
    assert P.cheapest(rows, ["a", "b"], 0.90, 0.02) == {"query_cut": 2, "heap_factor": 2.0}
    assert P.cheapest(rows, ["a", "b"], 0.90, 0.04) is None
    assert P.cheapest(rows, ["a"], 0.90, 0.02) == {"query_cut": 4, "heap_factor": 2.0}


def test_recalls_against_exact():
    truth = np.array([[1, 2, 3, -1], [-1, -1, -1, -1], [5, 6, 7, 8]])
    got = P.recalls([[3, 2, 9], [4], ["5", "6"]], truth)
    assert got.tolist() == [2 / 3, 1.0, 0.5]  # no exact hit: recall 1 (nothing to find)


def test_presets_order_recall_against_exact(index):
    """On a topical corpus the presets' recall@10 against exact search grows from recall90 to recall99, and
    their knobs grow with it (more query terms, fewer blocks skipped)."""
    idx, queries = index
    exact, _ = idx.search_batch(queries, k=10, mode="exact", threads=1)
    truth = np.array([[int(d) for d in row] + [-1] * (10 - len(row)) for row in exact])
    recall = {}
    for name in ("recall90", "recall95", "recall99"):
        ids, _ = idx.search_batch(queries, k=10, mode="approx", preset=name, threads=1)
        recall[name] = float(P.recalls(ids, truth).mean())
    assert recall["recall90"] <= recall["recall95"] <= recall["recall99"]
    assert recall["recall99"] >= 0.9
    cuts = [A.PRESETS[name]["query_cut"] for name in ("recall90", "recall95", "recall99")]
    assert cuts == sorted(cuts)
