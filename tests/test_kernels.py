"""heron's numba search kernels: exact methods against brute force, block maxima, batches, approximate search."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heron.indexing.inverted import InvertedIndex, build_inverted_index
from heron.indexing.inverted import approx as A
from heron.indexing.inverted import kernels as K
from heron.indexing.inverted.builder import block_max_reference

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                     HealthCheck.function_scoped_fixture])
EMPTY_MASK = np.zeros(0, np.uint8)


# -- helpers ----------------------------------------------------------------------------------------------
def random_impacts(rng, n, vocab_size, density, top, dtype) -> sp.csr_matrix:
    """An ``n × vocab_size`` CSR of impacts in [1, top] (canonical: sorted, no duplicates)."""
    m = sp.random(n, vocab_size, density=density, format="csr", random_state=rng)
    m.data = rng.integers(1, top + 1, size=m.nnz).astype(np.float64)
    m = sp.csr_matrix(m)
    m.sort_indices()
    return sp.csr_matrix((m.data.astype(dtype), m.indices.astype(np.int32), m.indptr.astype(np.int64)),
                         shape=m.shape)


def index_arrays(fwd: sp.csr_matrix, block_size: int) -> dict[str, np.ndarray]:
    """The index arrays of a forward impact matrix, built with NumPy / SciPy only."""
    csc = fwd.tocsc()
    csc.sort_indices()
    po, pd, pi = csc.indptr.astype(np.int64), csc.indices.astype(np.int32), csc.data.astype(fwd.dtype)
    bo, bl, bm = block_max_reference(po, pd, pi, block_size)
    return {"postings_offsets": po, "postings_docs": pd, "postings_impacts": pi,
            "forward_offsets": fwd.indptr.astype(np.int64), "forward_terms": fwd.indices.astype(np.int32),
            "forward_impacts": fwd.data.astype(fwd.dtype), "block_offsets": bo,
            "block_last_doc": bl.astype(np.int32), "block_max": bm.astype(fwd.dtype)}


def brute_force(fwd: sp.csr_matrix, terms, weights, k: int, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """Reference top-k: float64 scores rounded to float32, best first, ties to the lower document."""
    q = np.zeros(fwd.shape[1])
    q[terms] = np.asarray(weights, np.float64)
    scores = (fwd.astype(np.float64) @ q).astype(np.float32)
    ok = scores > 0
    if mask is not None and len(mask):
        ok &= np.asarray(mask) > 0
    docs = np.flatnonzero(ok)
    docs = docs[np.lexsort((docs, -scores[docs]))][:k]
    idx, out = np.full(k, -1, np.int32), np.full(k, -np.inf, np.float32)
    idx[:len(docs)], out[:len(docs)] = docs, scores[docs]
    return idx, out


def random_query(rng, vocab_size, dyadic=True):
    n = int(rng.integers(1, min(vocab_size, 40) + 1))
    terms = np.sort(rng.choice(vocab_size, size=n, replace=False)).astype(np.int32)
    if dyadic:  # products and sums exact in float64: any summation order gives the same score
        weights = (rng.integers(1, 33, size=n) / 8).astype(np.float32)
    else:
        weights = rng.lognormal(-0.5, 1.0, size=n).astype(np.float32)
    return terms, weights


def taat(arrays, n, terms, weights, k, mask=EMPTY_MASK):
    return K.search_taat(arrays["postings_offsets"], arrays["postings_docs"], arrays["postings_impacts"], n,
                         terms, weights, k, mask)


def exact_search(arrays, n, terms, weights, k, mask=EMPTY_MASK):
    return K.search_exact(arrays["postings_offsets"], arrays["postings_docs"], arrays["postings_impacts"],
                          arrays["block_offsets"], arrays["block_last_doc"], arrays["block_max"], n, terms,
                          weights, k, mask)


def approx(arrays, structures, n, terms, weights, k, query_cut, heap_factor, mask=EMPTY_MASK):
    return A.search_approx(structures, arrays["forward_offsets"], arrays["forward_terms"], arrays["forward_impacts"],
                           n, terms, weights, k, query_cut, heap_factor, mask)


def assert_same(got, want):
    assert got[0].dtype == np.int32 and got[1].dtype == np.float32
    assert np.array_equal(got[0], want[0]), (got[0], want[0])
    assert np.array_equal(got[1], want[1]), (got[1], want[1])


def recall(got_idx, exact_idx) -> float:
    exact = set(exact_idx[exact_idx >= 0].tolist())
    return len(exact & set(got_idx[got_idx >= 0].tolist())) / len(exact) if exact else 1.0


# -- block maxima ------------------------------------------------------------------------------------------
@settings(max_examples=60, **SETTINGS)
@given(sizes=st.lists(st.integers(0, 40), max_size=30), block_size=st.sampled_from([1, 2, 3, 5, 64]),
       dtype=st.sampled_from([np.uint8, np.uint16]), base=st.integers(0, 7), seed=st.integers(0, 2**31 - 1))
def test_build_block_max_matches_reference(sizes, block_size, dtype, base, seed):
    rng = np.random.default_rng(seed)
    offsets = base + np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)  # need not start at 0
    total = int(offsets[-1])
    docs = np.concatenate([np.sort(rng.choice(1000, size=s, replace=False)) for s in sizes] + [np.zeros(0)])
    docs = np.concatenate([rng.integers(0, 1000, base), docs]).astype(np.int32)
    impacts = rng.integers(1, np.iinfo(dtype).max + 1, size=total).astype(dtype)
    got = K.build_block_max(offsets, docs, impacts, block_size)
    want = block_max_reference(offsets, docs, impacts, block_size)
    for g, w in zip(got, want):
        assert np.array_equal(g, w)
    assert got[0].dtype == np.int64 and got[1].dtype == np.int32 and got[2].dtype == dtype


def test_build_block_max_on_memmaps(tmp_path):
    rng = np.random.default_rng(0)
    arrays = index_arrays(random_impacts(rng, 500, 50, 0.1, 255, np.uint8), 16)
    for name in ("postings_offsets", "postings_docs", "postings_impacts"):
        np.save(tmp_path / f"{name}.npy", arrays[name])
    maps = [np.load(tmp_path / f"{name}.npy", mmap_mode="r")
            for name in ("postings_offsets", "postings_docs", "postings_impacts")]
    got = K.build_block_max(*maps, 16)
    assert all(np.array_equal(g, arrays[n]) for g, n in zip(got, ("block_offsets", "block_last_doc", "block_max")))


# -- exact search ------------------------------------------------------------------------------------------
@settings(max_examples=120, **SETTINGS)
@given(n=st.integers(0, 400), vocab_size=st.integers(1, 60), density=st.sampled_from([0.02, 0.1, 0.4]),
       top=st.sampled_from([2, 3, 255, 65535]), block_size=st.sampled_from([1, 2, 3, 8, 64, 128]),
       k=st.one_of(st.integers(1, 12), st.integers(1, 1000)), masked=st.booleans(),
       window=st.sampled_from([64, 128, 4096]), seed=st.integers(0, 2**31 - 1))
def test_exact_methods_match_brute_force(monkeypatch, n, vocab_size, density, top, block_size, k, masked, window,
                                         seed):
    rng = np.random.default_rng(seed)
    dtype = np.uint8 if top <= 255 else np.uint16
    fwd = random_impacts(rng, n, vocab_size, density, top, dtype)
    arrays = index_arrays(fwd, block_size)
    monkeypatch.setattr(K, "WINDOW", window)  # small windows: many windows on small collections
    for _ in range(3):
        terms, weights = random_query(rng, vocab_size)
        mask = (rng.random(n) < rng.choice([0.05, 0.5])).astype(np.uint8) if masked else EMPTY_MASK
        want = brute_force(fwd, terms, weights, k, mask)
        assert_same(taat(arrays, n, terms, weights, k, mask), want)
        assert_same(exact_search(arrays, n, terms, weights, k, mask), want)


@settings(max_examples=40, **SETTINGS)
@given(seed=st.integers(0, 2**31 - 1), k=st.sampled_from([1, 10, 100, 1000]), window=st.sampled_from([64, 4096]))
def test_ties_at_the_threshold(monkeypatch, seed, k, window):
    """Impacts 1-2 and equal weights: scores tie massively; the lower document must always win."""
    rng = np.random.default_rng(seed)
    fwd = random_impacts(rng, 3000, 12, 0.3, 2, np.uint8)
    arrays = index_arrays(fwd, int(rng.choice([1, 4, 64])))
    monkeypatch.setattr(K, "WINDOW", window)
    terms = np.sort(rng.choice(12, size=int(rng.integers(1, 13)), replace=False)).astype(np.int32)
    weights = np.ones(len(terms), np.float32)
    want = brute_force(fwd, terms, weights, k)
    assert_same(taat(arrays, 3000, terms, weights, k), want)
    assert_same(exact_search(arrays, 3000, terms, weights, k), want)


def test_float_weights_exact_equals_taat_and_brute_force():
    """Arbitrary float32 weights on a collection spanning many windows (real window size)."""
    rng = np.random.default_rng(7)
    n, vocab_size = 30000, 2000
    p = 1.0 / np.arange(1, vocab_size + 1)  # Zipfian document frequencies
    rows = np.repeat(np.arange(n), 40)
    cols = rng.choice(vocab_size, size=len(rows), p=p / p.sum())
    fwd = sp.csr_matrix((rng.integers(1, 256, len(rows)).astype(np.float64), (rows, cols)), shape=(n, vocab_size))
    fwd.sum_duplicates()
    fwd.data = np.minimum(fwd.data, 255)
    fwd = sp.csr_matrix(fwd.astype(np.uint8))
    arrays = index_arrays(fwd, 64)
    for k in (1, 10, 1000):
        for masked in (False, True):
            mask = (rng.random(n) < 0.3).astype(np.uint8) if masked else EMPTY_MASK
            terms, weights = random_query(rng, vocab_size, dyadic=False)
            exact = taat(arrays, n, terms, weights, k, mask)
            assert_same(exact_search(arrays, n, terms, weights, k, mask), exact)
            want = brute_force(fwd, terms, weights, k, mask)  # matrix product: another summation order
            keep = want[0] >= 0
            assert np.array_equal(exact[0] >= 0, keep)
            assert np.allclose(exact[1][keep], want[1][keep], rtol=1e-6)
            q = np.zeros(vocab_size)
            q[terms] = weights
            assert np.allclose(fwd[exact[0][keep]].astype(np.float64) @ q, exact[1][keep], rtol=1e-6)
            assert len(set(exact[0][keep].tolist()) ^ set(want[0][keep].tolist())) <= 2  # ulp-level ties at most


def test_edge_cases():
    rng = np.random.default_rng(3)
    fwd = random_impacts(rng, 50, 10, 0.2, 255, np.uint8)
    arrays = index_arrays(fwd, 4)
    terms, weights = np.array([1, 4], np.int32), np.array([1.0, 0.5], np.float32)
    for fn in (taat, exact_search):
        idx, scores = fn(arrays, 50, terms, weights, 0)
        assert idx.shape == (0,) and scores.shape == (0,)
        idx, scores = fn(arrays, 50, np.zeros(0, np.int32), np.zeros(0, np.float32), 5)
        assert idx.tolist() == [-1] * 5 and np.all(scores == -np.inf)
        idx, scores = fn(arrays, 50, terms, weights, 5000)  # k > number of documents
        assert len(idx) == 5000 and np.all(idx[50:] == -1)
        assert_same((idx, scores), brute_force(fwd, terms, weights, 5000))
        idx, scores = fn(arrays, 50, terms, weights, 5, np.zeros(50, np.uint8))  # nothing allowed
        assert idx.tolist() == [-1] * 5
        with pytest.raises(ValueError, match="term ids"):
            fn(arrays, 50, np.array([10], np.int32), np.array([1.0], np.float32), 5)
        with pytest.raises(ValueError, match="non-negative"):
            fn(arrays, 50, np.array([1], np.int32), np.array([-1.0], np.float32), 5)
        with pytest.raises(ValueError, match="allow mask"):
            fn(arrays, 50, terms, weights, 5, np.ones(3, np.uint8))
    empty = index_arrays(random_impacts(rng, 0, 10, 0.2, 255, np.uint8), 4)
    for fn in (taat, exact_search):
        assert fn(empty, 0, terms, weights, 3)[0].tolist() == [-1, -1, -1]


def test_memmapped_read_only_arrays(tmp_path):
    rng = np.random.default_rng(4)
    fwd = random_impacts(rng, 2000, 100, 0.05, 65535, np.uint16)
    arrays = index_arrays(fwd, 8)
    for name, array in arrays.items():
        np.save(tmp_path / f"{name}.npy", array)
    maps = {name: np.load(tmp_path / f"{name}.npy", mmap_mode="r") for name in arrays}
    terms, weights = random_query(rng, 100)
    mask = np.ones(2000, bool)
    mask[::2] = False
    want = brute_force(fwd, terms, weights, 20, mask)
    assert_same(taat(maps, 2000, terms, weights, 20, mask), want)
    assert_same(exact_search(maps, 2000, terms, weights, 20, mask), want)


# -- batches -----------------------------------------------------------------------------------------------
@settings(max_examples=25, **SETTINGS)
@given(seed=st.integers(0, 2**31 - 1), dtype=st.sampled_from([np.uint8, np.uint16]), k=st.integers(1, 60),
       threads=st.sampled_from([1, 2]), filtered=st.booleans(), nq=st.integers(1, 12))
def test_batch_equals_single_queries(seed, dtype, k, threads, filtered, nq):
    rng = np.random.default_rng(seed)
    n, vocab_size = 600, 80
    fwd = random_impacts(rng, n, vocab_size, 0.08, int(np.iinfo(dtype).max), dtype)
    arrays = index_arrays(fwd, 8)
    structures = A.build_approx(*(arrays[name] for name in ("postings_offsets", "postings_docs", "postings_impacts",
                                                            "forward_offsets", "forward_terms", "forward_impacts")),
                                n, n_postings=40, threads=1)
    queries = [random_query(rng, vocab_size, dyadic=False) for _ in range(nq)]
    q_indptr = np.concatenate([[0], np.cumsum([len(t) for t, _ in queries])]).astype(np.int64)
    q_terms = np.concatenate([t for t, _ in queries])
    q_weights = np.concatenate([w for _, w in queries])
    if filtered:  # a different allow-list per query
        lists = [np.sort(rng.choice(n, size=int(rng.integers(0, n)), replace=False)) for _ in range(nq)]
        allow_indptr = np.concatenate([[0], np.cumsum([len(a) for a in lists])]).astype(np.int64)
        allow_docs = np.concatenate(lists).astype(np.int32)
    else:
        lists = [None] * nq
        allow_indptr, allow_docs = np.zeros(0, np.int64), np.zeros(0, np.int32)
    everything = {**arrays, **structures}
    for method in K.MODES:
        extra = {"query_cut": 5, "heap_factor": 0.8} if method == "approx" else {}
        idx, scores = K.search_batch(method, everything, q_indptr, q_terms, q_weights, k, allow_indptr, allow_docs,
                                     threads, **extra)
        assert idx.shape == (nq, k) and scores.shape == (nq, k) and idx.dtype == np.int32
        for q, (terms, weights) in enumerate(queries):
            mask = EMPTY_MASK
            if lists[q] is not None:
                mask = np.zeros(n, np.uint8)
                mask[lists[q]] = 1
            if method == "taat":
                one = taat(arrays, n, terms, weights, k, mask)
            elif method == "exact":
                one = exact_search(arrays, n, terms, weights, k, mask)
            else:
                one = approx(arrays, structures, n, terms, weights, k, 5, 0.8, mask)
            assert_same((idx[q], scores[q]), one)
            if lists[q] is not None:
                assert set(idx[q][idx[q] >= 0].tolist()) <= set(lists[q].tolist())


def test_batch_arguments():
    rng = np.random.default_rng(5)
    arrays = index_arrays(random_impacts(rng, 100, 20, 0.2, 255, np.uint8), 8)
    q_indptr, q_terms, q_weights = np.array([0, 2], np.int64), np.array([1, 3], np.int32), np.ones(2, np.float32)
    none = (np.zeros(0, np.int64), np.zeros(0, np.int32))
    with pytest.raises(ValueError, match="method"):
        K.search_batch("bogus", arrays, q_indptr, q_terms, q_weights, 3, *none, 1)
    with pytest.raises(TypeError, match="no extra"):
        K.search_batch("taat", arrays, q_indptr, q_terms, q_weights, 3, *none, 1, query_cut=3)
    with pytest.raises(ValueError, match="q_indptr"):
        K.search_batch("taat", arrays, np.array([0, 5], np.int64), q_terms, q_weights, 3, *none, 1)
    with pytest.raises(ValueError, match="allow_indptr"):
        K.search_batch("taat", arrays, q_indptr, q_terms, q_weights, 3, np.array([0, 1, 2], np.int64),
                       np.array([0, 1], np.int32), 1)
    with pytest.raises(ValueError, match="approximate-search arrays missing"):
        K.search_batch("approx", arrays, q_indptr, q_terms, q_weights, 3, *none, 1, query_cut=3, heap_factor=1.0)
    idx, scores = K.search_batch("exact", arrays, np.zeros(1, np.int64), np.zeros(0, np.int32),
                                 np.zeros(0, np.float32), 3, *none, 2)
    assert idx.shape == (0, 3)


# -- approximate search --------------------------------------------------------------------------------------
def topical_corpus(seed: int, n: int = 3000, vocab_size: int = 500, dtype=np.uint8):
    """Documents and queries drawn from topics over a Zipfian vocabulary (some geometry to cluster)."""
    rng = np.random.default_rng(seed)
    topics = rng.choice(vocab_size, size=(40, 30))
    p = 1.0 / np.arange(10, vocab_size + 10)
    p /= p.sum()

    def draw(count, per_row, topical):
        topic = rng.integers(0, len(topics), count)
        topical_terms = topics[topic[:, None], rng.integers(0, 30, (count, per_row))]
        cols = np.where(rng.random((count, per_row)) < topical, topical_terms,
                        rng.choice(vocab_size, size=(count, per_row), p=p))
        rows = np.repeat(np.arange(count), per_row)
        m = sp.csr_matrix((rng.lognormal(0, 0.6, count * per_row), (rows, cols.ravel())), shape=(count, vocab_size))
        m.sum_duplicates()
        return m

    docs = draw(n, 30, 0.5)
    top = np.iinfo(dtype).max
    docs.data = np.clip(np.rint(docs.data * top / docs.data.max()), 1, top)
    fwd = sp.csr_matrix(docs.astype(dtype))
    fwd.sort_indices()
    queries = draw(60, 12, 0.7)
    return fwd, [(queries.indices[queries.indptr[i]:queries.indptr[i + 1]].astype(np.int32),
                  queries.data[queries.indptr[i]:queries.indptr[i + 1]].astype(np.float32)) for i in range(60)]


def build_structures(arrays, n, **params):
    return A.build_approx(arrays["postings_offsets"], arrays["postings_docs"], arrays["postings_impacts"],
                          arrays["forward_offsets"], arrays["forward_terms"], arrays["forward_impacts"], n,
                          threads=2, **params)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("clustering", ["kmeans", "docid"])
def test_approx_is_exact_without_pruning(dtype, clustering):
    fwd, queries = topical_corpus(1, dtype=dtype)
    n = fwd.shape[0]
    arrays = index_arrays(fwd, 64)
    structures = build_structures(arrays, n, n_postings=10**9, summary_energy=1.0, clustering=clustering)
    rng = np.random.default_rng(2)
    for i, (terms, weights) in enumerate(queries[:30]):
        mask = (rng.random(n) < 0.3).astype(np.uint8) if i % 3 == 0 else EMPTY_MASK
        for k in (1, 10, 100):
            exact = taat(arrays, n, terms, weights, k, mask)
            assert_same(approx(arrays, structures, n, terms, weights, k, len(terms), 1.0, mask), exact)


@pytest.fixture(scope="module")
def approx_setup():
    fwd, queries = topical_corpus(3)
    n = fwd.shape[0]
    arrays = index_arrays(fwd, 64)
    structures = build_structures(arrays, n, n_postings=150, summary_energy=0.4)
    exact = [taat(arrays, n, t, w, 10)[0] for t, w in queries]
    return fwd, queries, arrays, structures, exact


def test_approx_recall_grows_with_query_cut(approx_setup):
    fwd, queries, arrays, structures, exact = approx_setup
    n = fwd.shape[0]
    means = []
    for heap_factor in (0.7, 1.0):
        per_query = np.array([[recall(approx(arrays, structures, n, t, w, 10, cut, heap_factor)[0], e)
                               for cut in (1, 2, 4, 8, 12)] for (t, w), e in zip(queries, exact)])
        assert np.all(np.diff(per_query, axis=1) >= 0)  # a larger cut visits a superset of blocks: per query
        means.append(per_query.mean(axis=0))
    assert means[1][-1] > 0.9 and means[0][0] < means[0][-1]


def test_approx_recall_grows_with_heap_factor(approx_setup):
    fwd, queries, arrays, structures, exact = approx_setup
    n = fwd.shape[0]
    means = [np.mean([recall(approx(arrays, structures, n, t, w, 10, 6, hf)[0], e)
                      for (t, w), e in zip(queries, exact)]) for hf in (0.3, 0.5, 0.7, 0.9, 1.0)]
    assert np.all(np.diff(means) >= 0), means
    assert means[0] < means[-1]


def test_approx_static_pruning_and_summaries():
    fwd, _ = topical_corpus(4, n=800, dtype=np.uint16)
    n = fwd.shape[0]
    arrays = index_arrays(fwd, 64)
    po, pd, pi = arrays["postings_offsets"], arrays["postings_docs"], arrays["postings_impacts"]
    for energy in (1.0, 0.5):
        s = build_structures(arrays, n, n_postings=25, summary_energy=energy, centroid_fraction=0.2)
        lb, bdo, bd = s["list_blocks"], s["block_doc_offsets"], s["block_docs"]
        assert lb[0] == 0 and lb[-1] == len(bdo) - 1 == len(s["summary_scales"]) and bdo[-1] == len(bd)
        for t in range(fwd.shape[1]):
            docs, imps = pd[po[t]:po[t + 1]], pi[po[t]:po[t + 1]].astype(np.int64)
            top = np.sort(docs[np.lexsort((docs, -imps))][:25])  # the 25 largest impacts, ties to lower docs
            blocks = range(lb[t], lb[t + 1])
            got = np.concatenate([bd[bdo[b]:bdo[b + 1]] for b in blocks] or [np.zeros(0, np.int32)])
            assert np.array_equal(np.sort(got), top)
            for b in blocks:
                members = bd[bdo[b]:bdo[b + 1]]
                assert len(members) and np.all(np.diff(members) > 0)
                terms, values = A.decode_summary(s, b)
                assert np.all(np.diff(terms) > 0) and np.all(values > 0)
                values = values * np.float64(s["summary_scales"][b])
                block_max = fwd[members].max(axis=0).toarray().ravel().astype(np.float64)
                assert np.all(values >= block_max[terms] * (1 - 1e-12))  # quantised upward
                if energy == 1.0:
                    assert np.array_equal(np.sort(terms), np.flatnonzero(block_max))
                else:
                    assert block_max[terms].sum() >= 0.5 * block_max.sum() - 1e-9
                    assert len(terms) <= np.count_nonzero(block_max)
    with pytest.raises(ValueError, match="prune"):
        build_structures(arrays, n, prune="nope")


def test_approx_global_pruning_keeps_about_the_budget():
    fwd, _ = topical_corpus(5, n=1500)
    arrays = index_arrays(fwd, 64)
    s = build_structures(arrays, fwd.shape[0], n_postings=30, prune="global", max_fraction=2.0)
    nonempty = np.count_nonzero(np.diff(arrays["postings_offsets"]))
    kept = len(s["block_docs"])
    assert kept <= 30 * nonempty and kept >= 0.5 * 30 * nonempty
    sizes = [s["block_doc_offsets"][s["list_blocks"][t + 1]] - s["block_doc_offsets"][s["list_blocks"][t]]
             for t in range(fwd.shape[1])]
    assert max(sizes) <= 60


def test_approx_allow_list_and_arguments(approx_setup):
    fwd, queries, arrays, structures, _ = approx_setup
    n = fwd.shape[0]
    allowed = np.zeros(n, np.uint8)
    allowed[np.random.default_rng(0).choice(n, 200, replace=False)] = 1
    for terms, weights in queries[:20]:
        idx, scores = approx(arrays, structures, n, terms, weights, 50, 4, 0.9, allowed)
        assert np.all(allowed[idx[idx >= 0]] == 1)
        assert np.all(np.diff(scores[idx >= 0]) <= 0)
    with pytest.raises(ValueError, match="heap_factor"):
        approx(arrays, structures, n, *queries[0], 10, 4, 0.0)
    with pytest.raises(ValueError, match="query_cut"):
        approx(arrays, structures, n, *queries[0], 10, -1, 1.0)
    with pytest.raises(ValueError, match="missing"):
        A.search_approx({}, arrays["forward_offsets"], arrays["forward_terms"], arrays["forward_impacts"], n,
                        *queries[0], 10, 4, 1.0, EMPTY_MASK)
    assert approx(arrays, structures, n, *queries[0], 10, 0, 1.0)[0].tolist() == [-1] * 10  # no list visited


def test_presets():
    assert set(A.PRESETS) == {"recall90", "recall95", "recall99"}
    cuts = [A.PRESETS[name]["query_cut"] for name in ("recall90", "recall95", "recall99")]
    factors = [A.PRESETS[name]["heap_factor"] for name in ("recall90", "recall95", "recall99")]
    assert cuts == sorted(cuts) and factors == sorted(factors) and all(0 < f <= 2.0 for f in factors)


def test_approx_on_an_empty_collection():
    arrays = index_arrays(random_impacts(np.random.default_rng(0), 0, 10, 0.2, 255, np.uint8), 4)
    structures = build_structures(arrays, 0)
    assert len(structures["list_blocks"]) == 11 and len(structures["block_docs"]) == 0
    idx, _ = approx(arrays, structures, 0, np.array([1, 2], np.int32), np.ones(2, np.float32), 3, 5, 1.0)
    assert idx.tolist() == [-1, -1, -1]


def test_index_end_to_end(tmp_path):
    """Build through the builder with approx parameters, then search every mode through InvertedIndex."""
    fwd, queries = topical_corpus(6, n=2000)
    weights = sp.csr_matrix(fwd, dtype=np.float32)
    ids = [f"doc{i}" for i in range(fwd.shape[0])]
    chunks = [(ids[i:i + 700], weights[i:i + 700]) for i in range(0, len(ids), 700)]
    path = build_inverted_index(chunks, tmp_path / "idx", vocab=[f"t{i}" for i in range(fwd.shape[1])],
                                encoder={"type": "test"}, block_size=16, progress=False,
                                approx={"n_postings": 10**6, "summary_energy": 1.0, "threads": 1})
    index = InvertedIndex.open(path, verify=True)
    assert sorted(index.manifest["approx"]["arrays"]) == sorted(A.ARRAY_NAMES)
    allow = np.zeros(index.num_docs, bool)
    allow[::4] = True
    for terms, w in queries[:10]:
        exact = index.search(terms, w, k=10, mode="taat")
        assert exact[0] and index.search(terms, w, k=10)[0] == exact[0]  # the default mode is exact
        for mode, knobs in (("exact", {}), ("approx", {"query_cut": 100, "heap_factor": 1.0})):
            got = index.search(terms, w, k=10, mode=mode, **knobs)
            assert got[0] == exact[0] and np.array_equal(got[1], exact[1])
        filtered = index.search(terms, w, k=10, mode="approx", preset="recall99", allow=allow)
        assert all(int(d[3:]) % 4 == 0 for d in filtered[0])
    batch = index.search_batch(queries[:10], k=10, mode="approx", preset="recall90", threads=2)
    for (terms, w), ids_, scores in zip(queries[:10], *batch):
        one = index.search(terms, w, k=10, mode="approx", preset="recall90")
        assert ids_ == one[0] and np.array_equal(scores, one[1])
