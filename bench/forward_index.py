#!/usr/bin/env python
"""The forward index of the approximate search: layouts compared, and the chosen one measured end to end.

The approximate search (``heron.indexing.inverted.approx``) scores every document of a visited block
exactly from the forward index, so the forward layout sits in its inner loop. Two modes:

``options`` — the candidate layouts on the same vectors and the same approximate structures, each
searched by its own copy of the approximate kernel (identical but for how a document row is read):

* ``int32``   — format 2: int64 offsets, int32 term ids, uint8 impacts (5 B per entry);
* ``uint16``  — narrow term ids (the vocabulary fits in 16 bits: 3 B per entry);
* ``bitpack`` — per document, the first term id (16 bits) and width in one header word, then the
  ``n - 1`` gaps ``t_i - t_{i-1} - 1`` bit-packed at the width of the largest gap (codec.py's frame of
  reference applied to a document row), plus a word offset per document;
* ``uint32-offsets`` — any of them with uint32 instead of int64 document offsets (size only: 4 B/doc).

``index`` — build a real index with approximate structures from the same vectors (``build_inverted_index``,
the impacts' own scale, so the impacts are identical) and measure the files' sizes, the build time and
the approximate search at the presets (``InvertedIndex.search_batch``, one thread, and one query at a
time). It uses only the public API, so the same command runs on the code before this change
(``PYTHONPATH=<old>/src``) for the "before" column.

Vectors: ``--vectors NAME.npz`` as written by ``prepare`` (a heron SPLADE index's stored impacts and
its own query encoder applied to the BEIR test queries)::

    python bench/forward_index.py prepare scifact /path/to/scifact-splade-tiny-index out/scifact.npz
    python bench/forward_index.py options out/scifact.npz out/nfcorpus.npz
    python bench/forward_index.py index out/scifact.npz --work /tmp/fwd-work
    python bench/forward_index.py seismic out/scifact.npz --work /tmp/fwd-work   # Seismic's index size
    python bench/forward_index.py summaries /tmp/fwd-work/scifact-approx         # summary sizes
    python bench/forward_index.py summaries NEW-approx --compare OLD-approx       # the same summaries?
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from numba import njit

from heron.indexing.inverted.approx import _summary_scores, query_order
from heron.indexing.inverted.topk import SLACK, heap_finish, heap_offer, heap_reset

PRESETS = ("recall90", "recall95", "recall99")


# -- vectors --------------------------------------------------------------------------------------------------
def prepare(name: str, index_path: str, out: str, data: str | None = None) -> None:
    """Save an index's stored impacts and its query encoder's BEIR test queries to ``out`` (npz)."""
    from heron.indexing.inverted import InvertedIndex
    from heron.retrieval.sparse import SparseIndexRetriever

    data = Path(data or os.environ.get("HERON_DATA", "data/beir")) / name
    index = InvertedIndex.open(index_path)
    fwd = index.forward_matrix().tocsr()
    fwd.sort_indices()
    test = {line.split("\t")[0] for line in (data / "qrels" / "test.tsv").read_text().splitlines()[1:]}
    queries = [json.loads(line) for line in (data / "queries.jsonl").read_text().splitlines() if line.strip()]
    queries = [q for q in queries if q["_id"] in test]
    q = sp.csr_matrix(SparseIndexRetriever(index).encode([q["text"] for q in queries]))
    np.savez(out, indptr=fwd.indptr.astype(np.int64), indices=fwd.indices.astype(np.int32),
             data=np.asarray(fwd.data), scale=index.scale, V=index.vocab_size, qindptr=q.indptr,
             qindices=q.indices, qdata=q.data.astype(np.float32))
    print(f"{name}: {fwd.shape[0]} docs, {fwd.nnz} non-zeros, {q.shape[0]} queries ({q.nnz} terms) -> {out}")


def load(path: str) -> tuple[sp.csr_matrix, sp.csr_matrix, float]:
    z = np.load(path)
    v = int(z["V"])
    docs = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=(len(z["indptr"]) - 1, v))
    queries = sp.csr_matrix((z["qdata"], z["qindices"], z["qindptr"]), shape=(len(z["qindptr"]) - 1, v))
    return docs, queries, float(z["scale"])


def exact_top(docs: sp.csr_matrix, queries: sp.csr_matrix, k: int) -> list[set[int]]:
    scores = (queries.astype(np.float64) @ docs.T.astype(np.float64)).toarray()
    out = []
    for row in scores:
        top = np.argsort(-row, kind="stable")[:k]
        out.append({int(d) for d in top if row[d] > 0})
    return out


def recall(found: np.ndarray, truth: list[set[int]]) -> float:
    got = [len(truth[i] & {int(d) for d in found[i] if d >= 0}) / max(1, len(truth[i])) for i in range(len(truth))]
    return float(np.mean(got))


# -- the layouts ------------------------------------------------------------------------------------------------
def bitpack_rows(indptr: np.ndarray, terms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(word_offsets int64[N+1], words uint32[W + 1])`` of the ``bitpack`` layout (one pad word)."""
    n = len(indptr) - 1
    lens = np.diff(indptr)
    t = terms.astype(np.int64)
    gaps = np.diff(t, prepend=0) - 1
    firsts = indptr[:-1][lens > 0]
    gaps[firsts] = 0
    doc = np.repeat(np.arange(n), lens)
    top = np.zeros(n, np.int64)
    np.maximum.at(top, doc, gaps)
    width = np.zeros(n, np.int64)
    nz = top > 0
    width[nz] = np.floor(np.log2(top[nz])).astype(np.int64) + 1
    nwords = np.where(lens > 0, 1 + ((lens - 1).clip(0) * width + 31) // 32, 0)
    wo = np.zeros(n + 1, np.int64)
    np.cumsum(nwords, out=wo[1:])
    words = np.zeros(int(wo[-1]) + 1, np.uint32)
    _pack_rows(indptr, t, gaps, width, wo, words)
    return wo, words


@njit(cache=True)
def _pack_rows(indptr, t, gaps, width, wo, words):
    for d in range(indptr.shape[0] - 1):
        a, b = indptr[d], indptr[d + 1]
        if b == a:
            continue
        w = width[d]
        words[wo[d]] = np.uint32(t[a] | (w << 16))
        base = wo[d] + 1
        pos = 0
        for i in range(a + 1, b):
            v = np.uint64(gaps[i])
            wi = base + (pos >> 5)
            off = pos & 31
            words[wi] |= np.uint32((v << np.uint64(off)) & np.uint64(0xFFFFFFFF))
            if off + w > 32:
                words[wi + 1] |= np.uint32(v >> np.uint64(32 - off))
            pos += w


@njit(cache=True, nogil=True)
def _score_plain(fo, ft, fi, d, qdense):
    s = 0.0
    for i in range(fo[d], fo[d + 1]):
        s += qdense[ft[i]] * fi[i]
    return s


@njit(cache=True, nogil=True)
def _score_packed(fo, wo, words, fi, d, qdense):
    a = fo[d]
    m = fo[d + 1] - a
    if m == 0:
        return 0.0
    w0 = wo[d]
    head = np.uint64(words[w0])
    t = np.int64(head & np.uint64(0xFFFF))
    w = np.int64(head >> np.uint64(16))
    mask = (np.uint64(1) << np.uint64(w)) - np.uint64(1)
    s = qdense[t] * fi[a]
    base = w0 + 1
    pos = 0
    for j in range(1, m):
        wi = base + (pos >> 5)
        off = np.uint64(pos & 31)
        pair = np.uint64(words[wi]) | (np.uint64(words[wi + 1]) << np.uint64(32))
        t += np.int64((pair >> off) & mask) + 1
        s += qdense[t] * fi[a + j]
        pos += w
    return s


@njit(nogil=True)
def _search_plain(lb, bdo, bd, ss, lch, cb, cc, cp, ct, ce, pb, pv, fo, ft, fi, q_indptr, q_terms, q_weights, query_cut,
                  heap_factor, num_docs, qdense, acc, stamp, hs, hd, out_idx, out_scores):
    for q in range(q_indptr.shape[0] - 1):
        heap_reset(hs, hd)
        _visit(lb, bdo, bd, ss, lch, cb, cc, cp, ct, ce, pb, pv, q_terms, q_weights, q_indptr[q], q_indptr[q + 1], query_cut,
               heap_factor, qdense, acc, stamp, q + 1, hs, hd, fo, ft, fi, fi, False)
        heap_finish(hs, hd, out_idx, out_scores, q)


@njit(nogil=True)
def _search_packed(lb, bdo, bd, ss, lch, cb, cc, cp, ct, ce, pb, pv, fo, wo, words, fi, q_indptr, q_terms, q_weights,
                   query_cut, heap_factor, num_docs, qdense, acc, stamp, hs, hd, out_idx, out_scores):
    for q in range(q_indptr.shape[0] - 1):
        heap_reset(hs, hd)
        _visit(lb, bdo, bd, ss, lch, cb, cc, cp, ct, ce, pb, pv, q_terms, q_weights, q_indptr[q], q_indptr[q + 1], query_cut,
               heap_factor, qdense, acc, stamp, q + 1, hs, hd, fo, wo, words, fi, True)
        heap_finish(hs, hd, out_idx, out_scores, q)


@njit(nogil=True)
def _visit(lb, bdo, bd, ss, lch, cb, cc, cp, ct, ce, pb, pv, q_terms, q_weights, qlo, qhi, query_cut, heap_factor, qdense, acc,
           stamp, gen, hs, hd, fo, f1, f2, fi, packed):
    """The loop of ``approx._approx`` (no allow mask; its summary scores), the row read by ``_score_plain`` /
    ``_score_packed``."""
    n = qhi - qlo
    order = query_order(q_terms, q_weights, qlo, qhi, qdense)
    q_sorted = np.sort(q_terms[qlo:qhi].astype(np.int64))
    hits = np.empty((n, 3), np.int64)
    err = np.zeros(2, np.int64)
    nlists = lb.shape[0] - 1
    for r in range(min(query_cut, n)):
        t = q_terms[qlo + order[r]]
        if t >= nlists or q_weights[qlo + order[r]] <= 0 or lb[t + 1] == lb[t]:
            continue
        for c in range(lch[t], lch[t + 1]):
            nb = _summary_scores(lb, cb, cc, cp, ct, ce, pb, pv, t, c, q_sorted, qdense, acc, hits, err)
            for b in range(cb[c], cb[c] + nb):
                if acc[b - cb[c]] * ss[b] * heap_factor * SLACK < hs[0]:
                    continue
                for p in range(bdo[b], bdo[b + 1]):
                    d = bd[p]
                    if stamp[d] == gen:
                        continue
                    stamp[d] = gen
                    if packed:
                        s = _score_packed(fo, f1, f2, fi, d, qdense)
                    else:
                        s = _score_plain(fo, f1, fi, d, qdense)
                    heap_offer(hs, hd, np.float32(s), d)
    for i in range(qlo, qhi):
        qdense[q_terms[i]] = 0.0


def options(paths: list[str], repeat: int, k: int) -> list[dict]:
    from heron.indexing.inverted import approx as A
    from heron.indexing.inverted import forward as F
    from heron.indexing.inverted.approx import PRESETS as KNOBS

    rows = []
    for path in paths:
        docs, queries, _ = load(path)
        name = Path(path).stem
        n, v = docs.shape
        fo = docs.indptr.astype(np.int64)
        ft32 = docs.indices.astype(np.int32)
        fi = np.asarray(docs.data).astype(np.uint8)
        csc = docs.tocsc()
        csc.sort_indices()
        t0 = time.perf_counter()
        arrays = A.build_approx(csc.indptr.astype(np.int64), csc.indices.astype(np.int32),
                                csc.data.astype(np.uint8), fo, ft32, fi, n, threads=1)
        arrays = dict(arrays)
        build_s = time.perf_counter() - t0
        structures = A._structures(arrays)
        approx_bytes = sum(a.nbytes for a in arrays.values())
        wo, words = bitpack_rows(fo, ft32)
        layouts = {
            "int32": ("plain", (fo, ft32, fi)),
            "uint16": ("plain", (fo, ft32.astype(np.uint16), fi)),
            "bitpack": ("packed", (fo, wo, words, fi)),
        }
        sizes = {"int32": fo.nbytes + ft32.nbytes + fi.nbytes, "uint16": fo.nbytes + 2 * len(ft32) + fi.nbytes,
                 "bitpack": fo.nbytes + wo.nbytes + 4 * (len(words) - 1) + fi.nbytes}
        truth = exact_top(docs, queries, k)
        qi, qt, qw = (queries.indptr.astype(np.int64), queries.indices.astype(np.int32),
                      queries.data.astype(np.float32))
        # the shipped kernel (approx.batch_runner: uint16 ids, chunk checks with kept flags) on the same structures
        checksum = F.checksums(fo, ft32.astype(np.uint16), fi)
        layouts["heron"] = ("heron", {**arrays, "forward_offsets": fo, "forward_terms": ft32.astype(np.uint16),
                                      "forward_impacts": fi, "forward_checksum": checksum,
                                      "forward_checked": F.new_checked(n)})
        sizes["heron"] = sizes["uint16"] + checksum.nbytes
        # the same kernel on raw arrays without checksums or flags: each visited row's bounds checked per visit
        layouts["heron-rows"] = ("heron", {**arrays, "forward_offsets": fo, "forward_terms": ft32.astype(np.uint16),
                                           "forward_impacts": fi})
        sizes["heron-rows"] = sizes["uint16"]
        none = (np.zeros(0, np.int64), np.zeros(0, np.int32))
        for preset, knobs in KNOBS.items():
            results = {}
            best = dict.fromkeys(layouts, float("inf"))
            for _ in range(repeat):  # layouts interleaved, best of ``repeat``
                for layout, (kind, fwd) in layouts.items():
                    qdense = np.zeros(v, np.float64)
                    acc = np.zeros(A.CHUNK_BLOCKS, np.float64)
                    stamp = np.zeros(n, np.int32)
                    hs, hd = np.empty(k, np.float32), np.empty(k, np.int32)
                    out_idx = np.full((len(qi) - 1, k), -1, np.int32)
                    out_scores = np.zeros((len(qi) - 1, k), np.float32)
                    t0 = time.perf_counter()
                    if kind == "plain":
                        _search_plain(*structures, *fwd, qi, qt, qw, np.int64(knobs["query_cut"]),
                                      np.float64(knobs["heap_factor"]), n, qdense, acc, stamp, hs, hd, out_idx,
                                      out_scores)
                    elif kind == "packed":
                        _search_packed(*structures, *fwd, qi, qt, qw, np.int64(knobs["query_cut"]),
                                       np.float64(knobs["heap_factor"]), n, qdense, acc, stamp, hs, hd, out_idx,
                                       out_scores)
                    else:
                        A.batch_runner(fwd, n, qi, qt, qw, *none, 1, out_idx, out_scores, **knobs)(0)
                    best[layout] = min(best[layout], time.perf_counter() - t0)
                    results[layout] = (out_idx.copy(), out_scores.copy())
            for layout in layouts:
                out_idx = results[layout][0]
                rows.append({"dataset": name, "preset": preset, "layout": layout,
                             "forward_bytes": sizes[layout], "bytes_per_entry": round(sizes[layout] / docs.nnz, 3),
                             "approx_bytes": approx_bytes,
                             "ms_per_query": round(1000 * best[layout] / (len(qi) - 1), 4),
                             "recall@10": round(recall(out_idx, truth), 4), "approx_build_s": round(build_s, 2)})
            base = results["int32"]
            for layout, (idx, scores) in results.items():
                assert np.array_equal(idx, base[0]) and np.array_equal(scores, base[1]), (name, preset, layout)
        flags, err = F.new_checked(n), np.zeros(2, np.int64)
        F.check_range(fo, ft32.astype(np.uint16), fi, checksum, F.new_checked(n), np.int64(v), np.int64(0),
                      np.int64(1), err)  # compiled
        t0 = time.perf_counter()
        assert F.check_range(fo, ft32.astype(np.uint16), fi, checksum, flags, np.int64(v), np.int64(0), np.int64(n), err)
        check_ms = 1000 * (time.perf_counter() - t0)
        print(f"{name}: {n} docs, {docs.nnz} entries; offsets int64 {fo.nbytes} B, as uint32 {4 * (n + 1)} B; "
              f"checking every chunk once: {check_ms:.2f} ms", flush=True)
    return rows


def index_run(path: str, work: str, repeat: int, k: int, threads: int, reuse: bool = False,
              approx: dict | None = None, dump: bool = False) -> dict:
    """Build an index with approximate structures from the vectors and measure it (module docstring);
    ``dump``: save the batch results (ids, scores per preset) to ``work/NAME-results.npz``."""
    import heron
    from heron.indexing.inverted import InvertedIndex, build_inverted_index

    docs, queries, scale = load(path)
    name = Path(path).stem
    n, v = docs.shape
    out = Path(work) / f"{name}-approx"
    build_s = None
    if not (reuse and (out / "manifest.json").exists()):
        if out.exists():
            shutil.rmtree(out)
        weights = sp.csr_matrix((np.asarray(docs.data, np.float64) / scale, docs.indices, docs.indptr),
                                shape=docs.shape)
        t0 = time.perf_counter()
        build_inverted_index([([str(i) for i in range(n)], weights)], out, vocab=[str(i) for i in range(v)],
                             encoder={"type": "bench"}, scale=scale, approx=approx or {}, progress=False)
        build_s = round(time.perf_counter() - t0, 2)
    index = InvertedIndex.open(out)
    stored = index.forward_matrix()
    assert np.array_equal(stored.indices, docs.indices) and np.array_equal(np.asarray(stored.data), docs.data), \
        "the rebuilt index's impacts differ from the vectors'"
    files = {rel: entry["bytes"] for rel, entry in index.manifest["files"].items()}
    groups = {"forward": sum(b for r, b in files.items() if r.startswith("forward_")),
              "approx": sum(b for r, b in files.items() if r.startswith("approx/")),
              "exact (postings, blocks)": sum(b for r, b in files.items()
                                              if not r.startswith(("forward_", "approx/"))
                                              and r.endswith(".npy")),
              "other (ids, vocab, manifest)": sum(b for r, b in files.items() if not r.endswith(".npy"))}
    qs = [(queries.indices[queries.indptr[i]:queries.indptr[i + 1]].astype(np.int32),
           queries.data[queries.indptr[i]:queries.indptr[i + 1]].astype(np.float32)) for i in range(queries.shape[0])]
    truth = exact_top(docs, queries, k)
    presets, results = {}, {}
    for preset in PRESETS:
        index.search_batch(qs, k=k, mode="approx", preset=preset, threads=1)  # warm (compile, check chunks)
        batch, one = float("inf"), float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            ids, scores = index.search_batch(qs, k=k, mode="approx", preset=preset, threads=threads)
            batch = min(batch, time.perf_counter() - t0)
            t0 = time.perf_counter()
            for terms, w in qs:
                index.search(terms, w, k=k, mode="approx", preset=preset)
            one = min(one, time.perf_counter() - t0)
        found = np.array([[int(x) for x in row] + [-1] * (k - len(row)) for row in ids])
        if dump:
            results[f"{preset}_ids"] = found
            results[f"{preset}_scores"] = np.array([list(s) + [-np.inf] * (k - len(s)) for s in scores], np.float32)
        presets[preset] = {"batch_ms_per_query": round(1000 * batch / len(qs), 4),
                           "one_ms_per_query": round(1000 * one / len(qs), 4), "recall@10": round(recall(found, truth), 4)}
    if dump:
        np.savez(Path(work) / f"{name}-results.npz", **results)
    return {"dataset": name, "heron": str(Path(heron.__file__).parent), "docs": n, "nnz": int(docs.nnz),
            "queries": len(qs), "build_s": build_s, "approx_params": approx or {}, "files": files, "groups": groups,
            "total_bytes": sum(files.values()), "presets": presets}


def seismic_size(path: str, work: str) -> dict:
    """Seismic's index for the same impacts, built as bench/lsrbench builds it (its defaults, heron's
    static-pruning budget), and the size of its saved file."""
    import seismic

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from lsrbench.engines import SEISMIC_BUILD

    docs, _, _ = load(path)
    n = docs.shape[0]
    nonempty = int(np.count_nonzero(np.diff(docs.tocsc().indptr)))
    params = dict(SEISMIC_BUILD, n_postings=max(1000, -(-int(0.2 * docs.nnz) // max(nonempty, 1))))
    dataset = seismic.SeismicDataset(dim=docs.shape[1])
    dataset.add_documents_by_id(np.array([str(i) for i in range(n)], dtype=seismic.get_seismic_string()),
                                docs.indices.astype(np.int64), np.asarray(docs.data, np.float32),
                                docs.indptr.astype(np.int64))
    t0 = time.perf_counter()
    index = seismic.SeismicIndex.build_from_dataset(dataset, num_threads=1, **params)
    build_s = time.perf_counter() - t0
    out = Path(work) / f"{Path(path).stem}-seismic"
    out.mkdir(parents=True, exist_ok=True)
    index.save(str(out / "index"))
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"dataset": Path(path).stem, "seismic_bytes": size, "build_s_1_thread": round(build_s, 2),
            "params": params}


def _summaries(index_path: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every block's summary of an index as ``(ascending term ids, quantised values)``, from the layout stored
    per posting list (``approx.decode_summary``) or the earlier per-block one (one-byte term gaps; fillers of
    value 0 dropped), so that summaries built before and after a change can be compared."""
    root = Path(index_path) / "approx"
    if (root / "component_terms.npy").exists():
        from heron.indexing.inverted.approx import ARRAY_NAMES, decode_summary

        arrays = {name: np.load(root / f"{name}.npy") for name in ARRAY_NAMES}
        return [decode_summary(arrays, b) for b in range(len(arrays["summary_scales"]))]
    so, st, sv = (np.load(root / f"{name}.npy") for name in ("summary_offsets", "summary_terms", "summary_values"))
    out = []
    for b in range(len(so) - 1):
        t, v = np.cumsum(st[so[b]:so[b + 1]].astype(np.int64)), sv[so[b]:so[b + 1]]
        out.append((t[v > 0], v[v > 0]))
    return out


def summary_estimate(index_path: str, compare: str | None = None) -> dict:
    """The size of an index's approximate summaries as stored per chunk of a posting list: bytes, (block,
    value) pairs (one per summary entry), distinct summary terms per chunk, bytes per entry. ``compare``: another index's
    summaries (either layout) must be the same (term, value) pairs block by block (before / after)."""
    from heron.indexing.inverted.approx import ARRAY_NAMES

    root = Path(index_path) / "approx"
    arrays = {name: np.load(root / f"{name}.npy", mmap_mode="r") for name in ARRAY_NAMES}
    names = ("list_chunks", "chunk_blocks", "chunk_components", "chunk_pairs", "component_terms", "component_ends",
             "pair_blocks", "pair_values")
    size = sum(int(arrays[name].nbytes) for name in names)
    entries, terms = len(arrays["pair_values"]), len(arrays["component_terms"])
    row = {"index": str(index_path), "blocks": len(arrays["summary_scales"]), "chunks": len(arrays["chunk_blocks"]) - 1,
           "summary_bytes": size, "entries": entries, "chunk_terms": terms,
           "entries_per_chunk_term": round(entries / max(1, terms), 3), "bytes_per_entry": round(size / max(1, entries), 3)}
    if compare:
        mine, theirs = _summaries(index_path), _summaries(compare)
        row["same_summaries_as"] = compare
        row["same_summaries"] = len(mine) == len(theirs) and all(
            np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(mine, theirs))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("name")
    p.add_argument("index")
    p.add_argument("out")
    p.add_argument("--data")
    o = sub.add_parser("options")
    o.add_argument("vectors", nargs="+")
    o.add_argument("--repeat", type=int, default=5)
    o.add_argument("-k", type=int, default=10)
    i = sub.add_parser("index")
    i.add_argument("vectors", nargs="+")
    i.add_argument("--work", default="/tmp/forward-bench")
    i.add_argument("--repeat", type=int, default=5)
    i.add_argument("--threads", type=int, default=1)
    i.add_argument("-k", type=int, default=10)
    i.add_argument("--reuse", action="store_true", help="search an index built by an earlier run")
    i.add_argument("--approx", default="{}", help="build_approx parameters (JSON)")
    i.add_argument("--dump", action="store_true", help="save the results to WORK/NAME-results.npz")
    z = sub.add_parser("seismic")
    z.add_argument("vectors", nargs="+")
    z.add_argument("--work", default="/tmp/forward-bench")
    e = sub.add_parser("summaries", help="summary sizes; --compare: the same summaries as another index?")
    e.add_argument("indexes", nargs="+")
    e.add_argument("--compare", help="an index whose summaries must be the same (one index given)")
    args = parser.parse_args()
    if args.cmd == "prepare":
        prepare(args.name, args.index, args.out, args.data)
    elif args.cmd == "options":
        for row in options(args.vectors, args.repeat, args.k):
            print(json.dumps(row), flush=True)
    elif args.cmd == "index":
        for path in args.vectors:
            print(json.dumps(index_run(path, args.work, args.repeat, args.k, args.threads, args.reuse,
                                       json.loads(args.approx), args.dump)), flush=True)
    elif args.cmd == "summaries":
        for path in args.indexes:
            print(json.dumps(summary_estimate(path, args.compare)), flush=True)
    elif args.cmd == "seismic":
        for path in args.vectors:
            print(json.dumps(seismic_size(path, args.work)), flush=True)


if __name__ == "__main__":
    main()
