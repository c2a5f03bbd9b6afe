"""The forward index (``forward.py``): narrow term ids, per-chunk checksums, checks before rows are read,
approximate results unchanged by the layout, damage found instead of wrong scores, older layouts refused."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import scipy.sparse as sp

from heron import storage
from heron.errors import HeronError, IntegrityError
from heron.indexing.inverted import InvertedIndex, build_inverted_index
from heron.indexing.inverted import approx as A
from heron.indexing.inverted import format as fmt
from heron.indexing.inverted import forward as F

N, V = 700, 900


def corpus(seed: int = 0, n: int = N, vocab_size: int = V) -> sp.csr_matrix:
    """Float document vectors with clustered terms (about 40 per document)."""
    rng = np.random.default_rng(seed)
    topics = rng.choice(vocab_size, size=(12, 60))
    rows = np.repeat(np.arange(n), 40)
    cols = np.where(rng.random(n * 40) < 0.6, topics[rng.integers(0, 12, n * 40) % 12, rng.integers(0, 60, n * 40)],
                    rng.integers(0, vocab_size, n * 40))
    m = sp.csr_matrix((rng.lognormal(0, 0.7, n * 40).astype(np.float32), (rows, cols)), shape=(n, vocab_size))
    m.sum_duplicates()
    m.sort_indices()
    return m


def build(tmp_path, name: str, m: sp.csr_matrix, **approx) -> InvertedIndex:
    vocab = [f"t{i}" for i in range(m.shape[1])]
    path = build_inverted_index([([f"d{i}" for i in range(m.shape[0])], m)], tmp_path / name, vocab=vocab,
                                encoder={"type": "test"}, approx=approx, progress=False)
    return InvertedIndex.open(path)


def queries(m: sp.csr_matrix, count: int = 25, seed: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        terms = np.unique(rng.choice(m.shape[1], size=int(rng.integers(3, 30)), replace=False)).astype(np.int32)
        out.append((terms, rng.lognormal(0, 0.5, len(terms)).astype(np.float32)))
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    m = corpus()
    return m, build(tmp_path_factory.mktemp("forward"), "idx", m)


def test_layout_narrow_ids_and_checksums(built):
    m, index = built
    a = index.arrays
    assert a["forward_terms"].dtype == np.uint16 and a["forward_offsets"].dtype == np.int64
    assert a["forward_checksum"].dtype == np.uint32 and a["forward_checksum"].shape == ((N + 63) // 64,)
    files = index.manifest["files"]
    assert files["forward_terms.npy"]["dtype"] == "uint16" and files["forward_terms.npy"]["shape"] == [m.nnz]
    # 2 bytes per term id (format 2 stored 4)
    assert files["forward_terms.npy"]["bytes"] - 128 == 2 * m.nnz
    # the stored rows are the input's, quantised
    fwd = index.forward_matrix()
    assert np.array_equal(fwd.indptr, m.indptr) and np.array_equal(fwd.indices, m.indices)
    dense = m.toarray()
    assert np.array_equal(fwd.toarray(), fmt.quantize(dense, index.scale, np.dtype(np.uint8))[0] * (dense > 0))
    # the checksums are those of the stored rows, recomputed independently of the builder
    assert np.array_equal(F.checksums(a["forward_offsets"], a["forward_terms"], a["forward_impacts"]),
                          a["forward_checksum"])


def test_wide_vocabulary_keeps_int32_ids(tmp_path):
    m = corpus(3, n=80, vocab_size=70_000)
    index = build(tmp_path, "wide", m, n_postings=10**9, summary_energy=1.0)
    assert F.term_dtype(65_536) == np.uint16 and F.term_dtype(65_537) == np.int32
    assert index.arrays["forward_terms"].dtype == np.int32
    assert np.array_equal(index.forward_matrix().indices, m.indices)
    for terms, weights in queries(m, 10, seed=7):
        exact = index.search(terms, weights, k=5)
        approx = index.search(terms, weights, k=5, mode="approx", query_cut=len(terms), heap_factor=1.0)
        assert approx[0] == exact[0] and np.array_equal(approx[1], exact[1])


def test_approx_results_do_not_depend_on_the_term_width(built):
    """Same structures, forward rows as uint16 or as int32: bit-identical results (and, through the index,
    the same as the kernel on the plain arrays)."""
    m, index = built
    a = index.arrays
    wide = np.asarray(a["forward_terms"]).astype(np.int32)
    for preset in A.PRESETS.values():
        qs = queries(m)
        batch = index.search_batch([(t, w) for t, w in qs], k=10, mode="approx", threads=2, **preset)
        for q, (terms, weights) in enumerate(qs):
            narrow = A.search_approx(index.approx, a["forward_offsets"], a["forward_terms"], a["forward_impacts"], N,
                                     terms, weights, 10, preset["query_cut"], preset["heap_factor"], None,
                                     forward_checksum=a["forward_checksum"])
            plain = A.search_approx(index.approx, a["forward_offsets"], wide, a["forward_impacts"], N, terms, weights,
                                    10, preset["query_cut"], preset["heap_factor"], None)
            assert np.array_equal(narrow[0], plain[0]) and np.array_equal(narrow[1], plain[1])
            keep = plain[0] >= 0
            assert batch[0][q] == [f"d{i}" for i in plain[0][keep]]
            assert np.array_equal(batch[1][q], (plain[1][keep] / np.float32(index.scale)).astype(np.float32))


def test_approx_without_pruning_is_exact(tmp_path):
    m = corpus(5, n=300)
    index = build(tmp_path, "exact", m, n_postings=10**9, summary_energy=1.0)
    for terms, weights in queries(m, 15, seed=4):
        exact = index.search(terms, weights, k=10)
        approx = index.search(terms, weights, k=10, mode="approx", query_cut=len(terms), heap_factor=1.0)
        assert approx[0] == exact[0] and np.array_equal(approx[1], exact[1])


@pytest.mark.parametrize("span", ["narrow", "wide"])
def test_approx_interleaved_sums_keep_exact_scores_and_ties(tmp_path, prefetching, span):
    """A visited document is first scored with four interleaved partial sums (``approx._row_dot``). When the
    query's weights make every such sum exact (``approx.sums_exact``: "narrow", the usual case) that is the
    score; otherwise ("wide": one weight of 2**-40 beside weights near 1) only a document that may enter the
    heap is scored again in ascending term order, as the exact kernels add. Either way, with duplicated
    documents (exact ties, at the k-th place too) the answer is the exhaustive one: same ids (ties to the
    lower index), same float32 scores. And the interleaved sum stays within ``SLACK`` of the ordered one."""
    from heron.indexing.inverted.topk import SLACK

    m = corpus(7, n=200)
    m = sp.vstack([m, m[:60]]).tocsr()  # documents 200..259 repeat documents 0..59
    index = build(tmp_path, "ties", m, n_postings=10**9, summary_energy=1.0)
    impact_max = float(np.iinfo(index.arrays["forward_impacts"].dtype).max)
    tied = 0
    for terms, weights in queries(m, 30, seed=9):
        if span == "wide":
            weights = weights.copy()
            weights[len(weights) // 2] = np.float32(2.0 ** -40)
        assert A.sums_exact(weights, 0, len(weights), impact_max) == (span == "narrow")
        for k in (1, 10, 50):
            exact = index.search(terms, weights, k=k)
            approx = index.search(terms, weights, k=k, mode="approx", query_cut=len(terms), heap_factor=1.0)
            assert approx[0] == exact[0] and np.array_equal(approx[1], exact[1])
            tied += len(exact[1]) - len(np.unique(exact[1]))
    assert tied > 0  # the duplicates did tie inside the answers
    a = index.arrays
    fo, ft, fi = (np.asarray(a[name]) for name in ("forward_offsets", "forward_terms", "forward_impacts"))
    qdense = np.zeros(1024)
    qdense[:V] = np.random.default_rng(3).lognormal(0, 0.5, V)
    for d in range(len(fo) - 1):
        ordered = 0.0
        for i in range(fo[d], fo[d + 1]):
            ordered += qdense[ft[i]] * float(fi[i])
        fast = A._row_dot(qdense, ft, fi, fo[d], fo[d + 1])
        assert abs(fast - ordered) <= (SLACK - 1.0) * ordered


def test_sums_exact_bound():
    """``sums_exact``: products are multiples of the smallest weight's last-place unit, partial sums at most
    ``sum(w) * impact_max``; exact when that fits 53 bits of such units (hand-computed edges)."""
    w = np.array([1.0, 0.5], np.float32)  # units 2**-23 and 2**-24; sums up to 1.5 * 255 < 2**9
    assert A.sums_exact(w, 0, 2, 255.0)
    assert not A.sums_exact(w, 0, 2, 0.0)  # impacts not integers: never
    assert A.sums_exact(np.zeros(3, np.float32), 0, 3, 255.0)  # nothing to add
    # one weight of 2**-40 (unit 2**-63): sums must stay below 2**-10 -- a weight near 1 breaks it
    tiny = np.array([2.0 ** -40, 1.0], np.float32)
    assert A.sums_exact(tiny, 0, 1, 255.0) and not A.sums_exact(tiny, 0, 2, 255.0)
    # the edge: unit 2**-23 (weight 1), bound sum(w) * impact_max against 2**30
    edge = np.array([1.0, 2.0 ** 30 / 65535.0 - 1.5], np.float32)  # sum(w) * 65535 just below 2**30
    assert A.sums_exact(edge, 0, 2, 65535.0)
    big = np.array([1.0, 2.0 ** 30 / 65535.0], np.float32)  # sum(w) * 65535 > 2**30
    assert not A.sums_exact(big, 0, 2, 65535.0)
    # and it is a real guarantee: random rows summed in any order agree to the bit when it holds
    rng = np.random.default_rng(0)
    held = 0
    for _ in range(200):
        w = rng.lognormal(-1, 1.5, 40).astype(np.float32)
        impacts = rng.integers(0, 256, 40).astype(np.float64)
        products = w.astype(np.float64) * impacts
        if A.sums_exact(w, 0, 40, 255.0):
            held += 1
            assert math.fsum(products) == sum(products) == sum(products[::-1]) == sum(rng.permutation(products))
    assert held > 150


def damaged_copy(index: InvertedIndex, tmp_path, name: str, rel: str, position: int, value) -> InvertedIndex:
    """A copy of ``index`` with element ``position`` of the array file ``rel`` set to ``value``, opened with
    the large-file checks only (the damage is not seen at open, as in a file over the open-hash limit)."""
    target = tmp_path / name
    shutil.copytree(index.path, target)
    path = target / rel
    path.chmod(0o644)
    array = np.load(path, mmap_mode="r+")
    array[position] = value(int(array[position])) if callable(value) else value
    array.flush()
    del array
    return InvertedIndex.open(target)


def visit_everything(index: InvertedIndex):
    """An approximate search that visits every block (all terms, a huge heap factor)."""
    return index.search(np.arange(V, dtype=np.int32), np.ones(V, np.float32), k=5, mode="approx",
                        query_cut=V, heap_factor=1e9)


@pytest.mark.parametrize("rel, position, value", [
    ("forward_terms.npy", 1234, 60_000),   # out of the vocabulary: would index past the query vector
    ("forward_terms.npy", 1234, lambda t: (t + 1) % V),  # in range: a silently wrong score without the checksum
    ("forward_impacts.npy", 999, 0),       # a changed impact (stored impacts are >= 1)
    ("forward_offsets.npy", 301, 10**12),  # an offset past the end
    ("forward_offsets.npy", 301, 5),       # offsets out of order
    ("forward_checksum.npy", 4, 12345),    # the checksum itself
])
def test_a_damaged_forward_entry_is_an_error_naming_the_file(built, tmp_path, monkeypatch, rel, position, value):
    _, index = built
    monkeypatch.setenv("HERON_OPEN_HASH_BYTES", "0")  # check sizes, headers and ends only at open
    damaged = damaged_copy(index, tmp_path, "damaged", rel, position, value)
    with pytest.raises(IntegrityError) as info:
        visit_everything(damaged)
    assert str(info.value).startswith(f"{damaged.path / rel}: checksum mismatch")  # the full re-hash names it
    assert "\n" not in str(info.value)
    again = InvertedIndex.open(damaged.path)
    with pytest.raises(IntegrityError, match=rel):
        again.search_batch([{"t1": 1.0}] * 3 + [{f"t{i}": 1.0 for i in range(V)}], k=5, mode="approx",
                           query_cut=V, heap_factor=1e9, threads=2)
    with pytest.raises(IntegrityError, match=rel):
        InvertedIndex.open(damaged.path).forward_matrix()


def test_rows_are_checked_once_per_chunk(built, tmp_path, monkeypatch):
    _, index = built
    monkeypatch.setenv("HERON_OPEN_HASH_BYTES", "0")
    damaged = damaged_copy(index, tmp_path, "rows", "forward_impacts.npy", int(index.arrays["forward_offsets"][200]), 0)
    assert damaged.row(10)[0].tolist() == index.row(10)[0].tolist()  # another chunk: readable
    assert damaged._forward_checked.tolist() == [1] + [0] * (len(damaged._forward_checked) - 1)
    with pytest.raises(IntegrityError, match="forward_impacts.npy"):
        damaged.row(200)
    with pytest.raises(IntegrityError, match="forward_impacts.npy"):
        list(damaged.iter_rows())


@pytest.fixture(params=["prefetching", "not prefetching"])
def prefetching(request, monkeypatch):
    """The approximate kernel both ways: prefetching forward rows (as for a forward index of at least
    ``approx.PREFETCH_MIN_BYTES``: every index here is smaller, so the threshold is lowered) and not."""
    if request.param == "prefetching":
        monkeypatch.setattr(A, "PREFETCH_MIN_BYTES", 0)
    return request.param == "prefetching"


def test_the_kernel_bounds_checks_rows_without_checksums(built, prefetching):
    """Raw arrays, no checksums: a term id past the vocabulary or a bad offset is an error, not a crash (a
    prefetch of a damaged row's address is a hint, never a read)."""
    _, index = built
    fwd = (None, index.arrays["forward_terms"], index.arrays["forward_impacts"])
    assert A._prefetching(fwd) == prefetching
    a = index.arrays
    terms, weights = np.arange(V, dtype=np.int32), np.ones(V, np.float32)
    for name, position, value in (("forward_terms", 50, 65_535), ("forward_offsets", 7, -3)):
        arrays = {key: np.array(a[key]) for key in ("forward_offsets", "forward_terms", "forward_impacts")}
        arrays[name][position] = value
        with pytest.raises(IntegrityError, match="forward_terms.npy: forward index"):
            A.search_approx(index.approx, arrays["forward_offsets"], arrays["forward_terms"],
                            arrays["forward_impacts"], N, terms, weights, 5, V, 1e9, None)
    docs = np.array(index.approx["block_docs"])
    docs[3] = N + 5
    with pytest.raises(IntegrityError, match="block_docs.npy"):
        A.search_approx({**index.approx, "block_docs": docs}, a["forward_offsets"], a["forward_terms"],
                        a["forward_impacts"], N, terms, weights, 5, V, 1e9, None)


def reseal(root, change) -> None:
    manifest = json.loads((root / fmt.MANIFEST_FILE).read_text())
    manifest.pop("checksum", None)
    change(manifest)
    (root / fmt.MANIFEST_FILE).chmod(0o644)
    storage.write_manifest(root / fmt.MANIFEST_FILE, manifest)


def test_the_older_forward_layout_is_refused(built, tmp_path):
    _, index = built
    old = tmp_path / "old"
    shutil.copytree(index.path, old)
    (old / "forward_terms.npy").chmod(0o644)
    (old / "forward_checksum.npy").unlink()
    np.save(old / "forward_terms.npy", np.asarray(index.arrays["forward_terms"]).astype(np.int32))

    def as_old(manifest):
        del manifest["files"]["forward_checksum.npy"]
        manifest["files"]["forward_terms.npy"] = fmt.describe_file(old, "forward_terms.npy")

    reseal(old, as_old)
    with pytest.raises(HeronError, match="older layout .*rebuild the index"):
        InvertedIndex.open(old)

    wide = tmp_path / "wide"  # int32 ids with a checksum file: a dtype mismatch, also refused
    shutil.copytree(index.path, wide)
    (wide / "forward_terms.npy").chmod(0o644)
    np.save(wide / "forward_terms.npy", np.asarray(index.arrays["forward_terms"]).astype(np.int32))
    reseal(wide, lambda m: m["files"].update({"forward_terms.npy": fmt.describe_file(wide, "forward_terms.npy")}))
    with pytest.raises(HeronError, match=r"forward_terms.npy: the manifest records int32.*expected uint16"):
        InvertedIndex.open(wide)


def test_vectors_reads_only_the_requested_rows(built):
    m, index = built
    positions = [5, 699, 64, 5, 0, -1]
    rows = index.vectors(positions)
    expected = index.forward_matrix(dequantize=True)[[p % N for p in positions]]
    assert rows.shape == (6, V) and (rows != expected).nnz == 0 and rows.dtype == np.float32
    assert index.vectors([]).shape == (0, V)
    with pytest.raises(IndexError):
        index.vectors([N])
