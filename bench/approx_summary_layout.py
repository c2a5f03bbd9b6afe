#!/usr/bin/env python
"""The summary phase of heron's approximate search, as stored (each block's summary walked in full) against
Seismic's transposed layout (per posting list, for each term the blocks whose summary holds it), timed alone.

For every query of an index built by ``bench/approx_presets.py build``, the block scores of its ``query_cut``
heaviest lists are computed both ways (the same float64 sums of quantised values; checked equal up to
rounding) — no document is scored, so this is the part of ``approx._approx`` the layout changes::

    python bench/approx_summary_layout.py --work /tmp/presets/w --corpus dictionary --query-cut 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import approx_presets as P  # noqa: E402


@njit(cache=True, nogil=True)
def _as_stored(lb, so, st, sv, ss, q_indptr, q_terms, q_weights, query_cut, qdense, out):
    """heron's loop: every entry of every summary of the visited lists against a dense query."""
    total = 0.0
    for q in range(q_indptr.shape[0] - 1):
        lo, hi = q_indptr[q], q_indptr[q + 1]
        for i in range(lo, hi):
            qdense[q_terms[i]] = np.float64(q_weights[i])
        order = np.argsort(-q_weights[lo:hi].astype(np.float64), kind="mergesort")
        for r in range(min(query_cut, hi - lo)):
            t = q_terms[lo + order[r]]
            for b in range(lb[t], lb[t + 1]):
                dot = 0.0
                u = np.int64(0)
                for j in range(so[b], so[b + 1]):
                    u += st[j]
                    dot += qdense[u] * sv[j]
                out[b] = dot * ss[b]
                total += out[b]
        for i in range(lo, hi):
            qdense[q_terms[i]] = 0.0
    return total


@njit(cache=True, nogil=True)
def _transposed(lb, to, tt, tb, tv, ss, q_indptr, q_terms, q_weights, query_cut, acc, out):
    """Seismic's loop: per visited list, for each query term its (block, value) pairs in that list."""
    total = 0.0
    for q in range(q_indptr.shape[0] - 1):
        lo, hi = q_indptr[q], q_indptr[q + 1]
        order = np.argsort(-q_weights[lo:hi].astype(np.float64), kind="mergesort")
        for r in range(min(query_cut, hi - lo)):
            t = q_terms[lo + order[r]]
            b0, b1 = lb[t], lb[t + 1]
            for b in range(b1 - b0):
                acc[b] = 0.0
            # each query term looked up among the list's sorted summary terms (binary search)
            terms = tt[to[t]:to[t + 1]]
            for i in range(lo, hi):
                j = np.searchsorted(terms, q_terms[i])
                if j < terms.shape[0] and terms[j] == q_terms[i]:
                    w = np.float64(q_weights[i])
                    for p in range(tb[to[t] + j], tb[to[t] + j + 1]):
                        acc[tv[p, 0]] += w * tv[p, 1]
            for b in range(b1 - b0):
                out[b0 + b] = acc[b] * ss[b0 + b]
                total += out[b0 + b]
    return total


def transpose(a: dict, lists: set[int]) -> tuple[np.ndarray, ...]:
    """Per list ``t`` of ``lists`` (the others left empty): its summaries' distinct terms
    ``tt[to[t]:to[t+1]]`` (ascending) and for each the (block within the list, value) pairs
    ``tv[tb[j]:tb[j+1]]``."""
    from heron.indexing.inverted.approx import decode_summary

    lb = np.asarray(a["list_blocks"])
    to = [0]
    tt, tb, tv = [], [0], []
    for t in range(len(lb) - 1):
        if t not in lists:
            to.append(len(tt))
            continue
        pairs = {}
        for k, b in enumerate(range(lb[t], lb[t + 1])):
            terms, vals = decode_summary(a, b)
            for term, v in zip(terms.tolist(), vals.tolist()):
                pairs.setdefault(term, []).append((k, v))
        for term in sorted(pairs):
            tt.append(term)
            tv.extend(pairs[term])
            tb.append(len(tv))
        to.append(len(tt))
    return (np.array(to, np.int64), np.array(tt, np.int64), np.array(tb, np.int64),
            np.array(tv, np.int64).reshape(-1, 2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/approx-presets"))
    ap.add_argument("--corpus", default="dictionary")
    ap.add_argument("--split", default="test")
    ap.add_argument("--query-cut", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from heron.indexing.inverted.index import pack_queries

    index = P.open_index(args.work, args.corpus)
    a = index.approx
    queries = P.load_queries(args.work, args.corpus, args.split)
    qi, qt, qw = pack_queries([index._prepare_query(t, w) for t, w in queries])
    qt = qt.astype(np.int64)
    lb, so, st, sv, ss = (np.asarray(a[n]) for n in ("list_blocks", "summary_offsets", "summary_terms",
                                                       "summary_values", "summary_scales"))
    visited = set()
    for q in range(len(qi) - 1):
        w = qw[qi[q]:qi[q + 1]].astype(np.float64)
        visited.update(qt[qi[q]:qi[q + 1]][np.argsort(-w, kind="mergesort")[:args.query_cut]].tolist())
    t0 = time.perf_counter()
    to, tt, tb, tv = transpose(a, visited)
    build = time.perf_counter() - t0
    nb = len(ss)
    out1, out2 = np.zeros(nb), np.zeros(nb)
    qdense = np.zeros(len(lb) - 1, np.float64)
    acc = np.zeros(int(np.diff(lb).max()), np.float64)
    best1 = best2 = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        _as_stored(lb, so, st, sv, ss, qi, qt, qw, args.query_cut, qdense, out1)
        best1 = min(best1, time.perf_counter() - t0)
        t0 = time.perf_counter()
        _transposed(lb, to, tt, tb, tv, ss, qi, qt, qw, args.query_cut, acc, out2)
        best2 = min(best2, time.perf_counter() - t0)
    assert np.allclose(out1, out2, rtol=1e-9, atol=1e-9), "the two layouts disagree"
    assert np.count_nonzero(out1) > 0
    n = len(queries)
    print(f"{args.corpus} {args.split}: {n} queries, query_cut {args.query_cut}; summary phase as stored "
          f"{1000 * best1 / n:.4f} ms/query, transposed {1000 * best2 / n:.4f} ms/query "
          f"({best1 / best2:.1f}x); {len(visited)} lists transposed ({len(tv):,} pairs) in {build:.0f} s (Python)")


if __name__ == "__main__":
    main()
