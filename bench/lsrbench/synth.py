"""A synthetic learned-sparse corpus calibrated from real splade-tiny encodings.

**Calibration** (:func:`calibrate`, from one or more real ``(documents, queries)`` pairs of float
weight matrices, e.g. SciFact and NFCorpus encoded by splade-tiny) records:

* *document frequencies*: ``p_t = df_t / N`` pooled over the real corpora. Vocabulary terms never seen
  get a smooth Zipf tail: ranks past the last observed one continue the power law fitted (least squares
  on log-log) to the observed rank/frequency curve between rank R/10 and R;
* *document lengths*: the empirical distribution of non-zeros per document (resampled);
* *document weights*: per term, its own empirical weights (resampled), shrunk toward the pooled
  weights of terms with a similar df (log2-df bucket) when the term has few observations
  (``n / (n + 20)`` of the draws come from the term's own weights); unseen terms use the rarest
  bucket. Weights are quantised like heron's uint8 indexes: ``clip(rint(w * 255 / max w), 1, 255)``
  with the pooled maximum weight;
* *queries*: the empirical query lengths; the fraction ``f`` of a real query's terms that occur in its
  exact top-1 document; the relative weights (``w / max w`` of the query) of such "in-document" terms
  and of the others; and the frequency of the other terms in real queries.

**Documents** (:func:`generate`) are drawn independently, in chunks (vectorised NumPy, memory one
chunk): a length ``L`` from the empirical lengths; ``ceil(1.35 L) + 2`` term draws with replacement
from sampling weights ``s_t``; duplicates removed; then the ``L`` terms with the smallest keys
``-log(u) / s_t`` kept (Efraimidis–Spirakis, so frequent terms survive the trim as they would in a
weighted draw without replacement). ``s_t`` starts at ``p_t`` and is corrected by a few fixed-point
rounds on a pilot sample so that the achieved df matches ``p_t · N`` (per term for terms expected in
≥ 50 pilot documents, as one group for the rest). Each posting then gets a weight as above. Document
order is random (no locality), as in a shuffled collection.

**Queries**: length ``L_q`` from the empirical query lengths; a *seed* document drawn at random;
``Binomial(L_q, f)`` terms taken from the seed document without replacement, with probability
proportional to how often each term occurred in real queries *inside* their top-1 document; the rest
drawn (outside the seed document) from how often terms occurred in real queries *outside* their top-1
document; both frequency tables smoothed with 20 % of the df distribution. Relative weights: the term's
own real query weights, shrunk toward the pooled in-document / other weights (``n / (n + 5)`` own). So
a query shares terms with some documents as real queries do (its results are not empty) and touches
common terms as often as real SPLADE queries do. Queries are then integerised like real ones (:mod:`lsrbench.data`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from lsrbench.data import VectorSet, VectorSetWriter

OVERSAMPLE = 1.35
OWN_WEIGHT_PRIOR = 20.0
QUERY_DF_SMOOTHING = 0.2
QUERY_WEIGHT_PRIOR = 5.0


def _stats_of(docs: sp.csr_matrix, queries: sp.csr_matrix) -> dict:
    """Top-1 document overlap of each query and the relative weights in / out of it."""
    scores = (queries @ docs.T).toarray() if queries.shape[0] else np.zeros((0, docs.shape[0]))
    in_w, out_w, in_terms, out_terms, fractions, lengths = [], [], [], [], [], []
    df = np.diff(docs.tocsc().indptr)
    for i in range(queries.shape[0]):
        a, b = queries.indptr[i], queries.indptr[i + 1]
        t, w = queries.indices[a:b], queries.data[a:b]
        keep = (w > 0) & (df[t] > 0)
        t, w = t[keep], w[keep]
        if not len(t):
            continue
        lengths.append(len(t))
        top = int(np.argmax(scores[i]))
        row = docs.indices[docs.indptr[top]:docs.indptr[top + 1]]
        inside = np.isin(t, row)
        rel = w / w.max()
        fractions.append(inside.mean())
        in_w.append(rel[inside])
        out_w.append(rel[~inside])
        in_terms.append(t[inside])
        out_terms.append(t[~inside])
    return {"in_w": np.concatenate(in_w), "out_w": np.concatenate(out_w), "in_terms": np.concatenate(in_terms),
            "out_terms": np.concatenate(out_terms), "fractions": np.array(fractions), "lengths": np.array(lengths)}


def calibrate(sources: list[tuple[sp.csr_matrix, sp.csr_matrix]], names: list[str] | None = None) -> dict:
    """Calibration arrays from real float ``(documents, queries)`` matrices (same vocabulary)."""
    vocab = sources[0][0].shape[1]
    docs_all = sp.vstack([sp.csr_matrix(d, dtype=np.float64) for d, _ in sources]).tocsr()
    docs_all.eliminate_zeros()
    n = docs_all.shape[0]
    csc = docs_all.tocsc()
    csc.sort_indices()
    df = np.diff(csc.indptr)
    wmax = float(docs_all.data.max())
    scale = 255.0 / wmax
    imp = np.clip(np.rint(csc.data * scale), 1, 255).astype(np.uint8)

    # df with a Zipf tail for unseen terms
    p = df / n
    seen = np.flatnonzero(df > 0)
    order = seen[np.argsort(-df[seen], kind="stable")]
    r_last = len(order)
    ranks = np.arange(1, r_last + 1)
    lo = max(1, r_last // 10)
    slope, intercept = np.polyfit(np.log(ranks[lo - 1:]), np.log(p[order][lo - 1:]), 1)
    unseen = np.flatnonzero(df == 0)
    p_tail = np.exp(intercept) * np.arange(r_last + 1, r_last + 1 + len(unseen), dtype=np.float64) ** slope
    target = p.astype(np.float64).copy()
    target[unseen] = np.minimum(p_tail, p[order][-1])
    lengths = np.diff(docs_all.indptr)
    target *= lengths.mean() / target.sum()

    # weight pools: per term (csc) and per log2-df bucket
    bucket = np.where(df > 0, np.floor(np.log2(np.maximum(df, 1))).astype(np.int64), 0)
    nb = int(bucket.max()) + 1
    rng = np.random.default_rng(0)
    b_vals, b_ptr = [], [0]
    per_term_bucket = np.repeat(bucket, df)
    for b in range(nb):
        vals = imp[per_term_bucket == b]
        if len(vals) > 200_000:
            vals = rng.choice(vals, 200_000, replace=False)
        if not len(vals):
            vals = imp[:1]
        b_vals.append(vals)
        b_ptr.append(b_ptr[-1] + len(vals))
    term_bucket = bucket.copy()
    term_bucket[unseen] = 0

    # queries
    q_stats = [_stats_of(sp.csr_matrix(d, dtype=np.float64), sp.csr_matrix(q, dtype=np.float64)) for d, q in sources]
    q_in = np.concatenate([s["in_w"] for s in q_stats])
    q_out = np.concatenate([s["out_w"] for s in q_stats])
    q_len = np.concatenate([s["lengths"] for s in q_stats])
    q_frac = np.concatenate([s["fractions"] for s in q_stats])
    q_in_t = np.concatenate([s["in_terms"] for s in q_stats])
    q_out_t = np.concatenate([s["out_terms"] for s in q_stats])

    def smoothed(terms):
        qf = np.bincount(terms, minlength=vocab).astype(np.float64)
        return (1 - QUERY_DF_SMOOTHING) * qf / max(qf.sum(), 1) + QUERY_DF_SMOOTHING * target / target.sum()

    # per-term relative query weights (all real query terms), for shrunk per-term resampling
    all_t = np.concatenate([q_in_t, q_out_t])
    all_w = np.concatenate([q_in, q_out])
    order_t = np.argsort(all_t, kind="stable")
    qw_ptr = np.zeros(vocab + 1, np.int64)
    np.cumsum(np.bincount(all_t, minlength=vocab), out=qw_ptr[1:])
    return {
        "vocab_size": np.int64(vocab), "num_real_docs": np.int64(n), "impact_scale": np.float64(scale),
        "df_target": target, "real_df": df, "doc_lengths": lengths.astype(np.int64),
        "term_ptr": csc.indptr.astype(np.int64), "term_vals": imp,
        "bucket_ptr": np.array(b_ptr, np.int64), "bucket_vals": np.concatenate(b_vals), "term_bucket": term_bucket,
        "q_lengths": q_len.astype(np.int64), "q_in_fraction": np.float64(q_frac.mean()),
        "q_in_weights": q_in.astype(np.float32), "q_out_weights": q_out.astype(np.float32),
        "q_in_term_p": smoothed(q_in_t), "q_out_term_p": smoothed(q_out_t),
        "q_term_ptr": qw_ptr, "q_term_weights": all_w[order_t].astype(np.float32), "zipf_slope": np.float64(slope),
        "sources": np.array(names or [f"source{i}" for i in range(len(sources))]),
    }


def _weights(cal: dict, terms: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Impacts for postings of ``terms`` (see the module docstring)."""
    tp = cal["term_ptr"]
    own_n = (tp[terms + 1] - tp[terms]).astype(np.float64)
    use_own = rng.random(len(terms)) < own_n / (own_n + OWN_WEIGHT_PRIOR)
    out = np.empty(len(terms), np.uint8)
    t_own = terms[use_own]
    if len(t_own):
        n_own = tp[t_own + 1] - tp[t_own]
        out[use_own] = cal["term_vals"][tp[t_own] + (rng.random(len(t_own)) * n_own).astype(np.int64)]
    t_b = terms[~use_own]
    if len(t_b):
        b = cal["term_bucket"][t_b]
        bp = cal["bucket_ptr"]
        nbv = bp[b + 1] - bp[b]
        out[~use_own] = cal["bucket_vals"][bp[b] + (rng.random(len(t_b)) * nbv).astype(np.int64)]
    return out


def _query_weights(cal: dict, terms: np.ndarray, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Relative query weights: the term's own real query weights, shrunk toward ``pool``."""
    ptr = cal["q_term_ptr"]
    n_own = (ptr[terms + 1] - ptr[terms]).astype(np.float64)
    own = rng.random(len(terms)) < n_own / (n_own + QUERY_WEIGHT_PRIOR)
    out = rng.choice(pool, len(terms)).astype(np.float32)
    t = terms[own]
    if len(t):
        out[own] = cal["q_term_weights"][ptr[t] + (rng.random(len(t)) * (ptr[t + 1] - ptr[t])).astype(np.int64)]
    return out


class Alias:
    """Walker's alias table: O(1) draws from a discrete distribution (vectorised)."""

    def __init__(self, weights: np.ndarray):
        w = np.asarray(weights, np.float64)
        n = len(w)
        prob = w * n / w.sum()
        alias = np.arange(n, dtype=np.int64)
        small = [i for i in range(n) if prob[i] < 1.0]
        large = [i for i in range(n) if prob[i] >= 1.0]
        while small and large:
            s_, l_ = small.pop(), large.pop()
            alias[s_] = l_
            prob[l_] -= 1.0 - prob[s_]
            (small if prob[l_] < 1.0 else large).append(l_)
        for i in small + large:
            prob[i] = 1.0
        self.prob, self.alias, self.n = prob, alias, n

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        i = rng.integers(0, self.n, size)
        return np.where(rng.random(size) < self.prob[i], i, self.alias[i])


def _draw_docs(cal: dict, table: Alias, s: np.ndarray, n_docs: int, rng: np.random.Generator):
    """``(indptr, terms)`` of ``n_docs`` documents (terms ascending per row)."""
    vocab = len(s)
    lengths = rng.choice(cal["doc_lengths"], n_docs)
    lengths = np.minimum(lengths, vocab)
    draws = np.ceil(lengths * OVERSAMPLE).astype(np.int64) + 2
    rows = np.repeat(np.arange(n_docs, dtype=np.int64), draws)
    keys = rows * vocab + table.draw(rng, len(rows))
    keys.sort()
    keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    rows, terms = keys // vocab, keys % vocab
    # keep the L smallest Efraimidis-Spirakis keys -log(u)/s per row: sort by row + key/(1+key)
    prio = -np.log(rng.random(len(rows))) / s[terms]
    order = np.argsort(rows + prio / (1.0 + prio))
    rows_o = rows[order]
    counts = np.bincount(rows_o, minlength=n_docs)
    starts = np.cumsum(counts) - counts
    rank = np.arange(len(rows_o)) - starts[rows_o]
    keep = order[rank < lengths[rows_o]]
    keep.sort()  # back to (row, term) order
    rows, terms = rows[keep], terms[keep]
    indptr = np.zeros(n_docs + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=n_docs), out=indptr[1:])
    return indptr, terms.astype(np.int32)


def sampling_weights(cal: dict, pilot_docs: int = 20000, rounds: int = 4, seed: int = 1) -> np.ndarray:
    """Term sampling weights whose achieved df matches ``df_target`` (fixed-point rounds on a pilot)."""
    target = cal["df_target"]
    s = target.copy() + 1e-12
    rng = np.random.default_rng(seed)
    frequent = target * pilot_docs >= 50
    for _ in range(rounds):
        indptr, terms = _draw_docs(cal, Alias(s), s, pilot_docs, rng)
        got = np.bincount(terms, minlength=len(s)) / pilot_docs
        ratio = np.ones_like(s)
        ratio[frequent] = (target[frequent] + 1e-6) / (got[frequent] + 1e-6)
        rest = ~frequent
        if rest.any() and got[rest].sum() > 0:
            ratio[rest] = target[rest].sum() / got[rest].sum()
        s *= np.clip(ratio, 0.25, 4.0)
    return s


def generate(cal: dict, num_docs: int, num_queries: int, out, seed: int = 0, chunk: int = 50_000,
             progress=None) -> VectorSet:
    """Write a synthetic vector set of ``num_docs`` documents and ``num_queries`` queries to ``out``."""
    rng = np.random.default_rng(seed)
    vocab = int(cal["vocab_size"])
    s = sampling_weights(cal)
    table = Alias(s)
    writer = VectorSetWriter(out, vocab, {"name": f"synthetic-{num_docs}", "source": {
        "generator": "lsrbench.synth", "seed": seed, "calibrated_from": [str(x) for x in cal["sources"]],
        "impact_scale": float(cal["impact_scale"])}})
    for lo in range(0, num_docs, chunk):
        n = min(chunk, num_docs - lo)
        indptr, terms = _draw_docs(cal, table, s, n, rng)
        writer.add_docs(indptr, terms, _weights(cal, terms, rng))
        if progress:
            progress(lo + n)
    # queries: seed documents are read back from what was written
    writer._indptr.flush()
    writer._terms.flush()
    writer._impacts.flush()
    seeds = np.sort(rng.choice(num_docs, num_queries, replace=num_queries > num_docs))
    ptr = np.fromfile(writer.root / "docs_indptr.bin", dtype=np.int64)
    q_out_table = Alias(cal["q_out_term_p"])
    queries = []
    with open(writer.root / "docs_terms.bin", "rb") as ft, open(writer.root / "docs_impacts.bin", "rb"):
        for d in rng.permutation(seeds):
            a, b = int(ptr[d]), int(ptr[d + 1])
            ft.seek(a * 4)
            d_terms = np.fromfile(ft, dtype=np.int32, count=b - a).astype(np.int64)
            length = int(rng.choice(cal["q_lengths"]))
            n_in = min(int(rng.binomial(length, float(cal["q_in_fraction"]))), len(d_terms))
            p_in = cal["q_in_term_p"][d_terms]
            t_in = rng.choice(d_terms, n_in, replace=False, p=p_in / p_in.sum()) if n_in else d_terms[:0]
            n_out = length - n_in
            t_out = np.zeros(0, np.int64)
            while len(t_out) < n_out:
                cand = q_out_table.draw(rng, 4 * n_out + 8)
                cand = cand[~np.isin(cand, d_terms) & ~np.isin(cand, t_out)]
                _, first = np.unique(cand, return_index=True)
                t_out = np.concatenate([t_out, cand[np.sort(first)]])[:n_out]
            w_in = _query_weights(cal, t_in, cal["q_in_weights"], rng)
            w_out = _query_weights(cal, t_out, cal["q_out_weights"], rng)
            queries.append((np.concatenate([t_in, t_out]), np.concatenate([w_in, w_out])))
    return writer.close(queries)


def profile(vs: VectorSet, truth=None, sample_docs: int = 200_000) -> dict:
    """Summary statistics of a vector set, to compare synthetic with real (documented in BENCHMARKS.md)."""
    df = vs.df()
    n = vs.num_docs
    ptr = vs.indptr()
    lengths = np.diff(ptr)
    imp_hist = np.zeros(256, np.int64)
    for _lo, _, _, imp in vs.doc_chunks(stop=min(n, sample_docs)):
        imp_hist += np.bincount(imp, minlength=256)
    vals = np.arange(256)
    cum = np.cumsum(imp_hist) / imp_hist.sum()
    rel = np.sort(df)[::-1] / n
    qs = vs.queries()
    q_len = np.array([len(t) for t, _ in qs])
    touched = np.array([df[t].sum() / n for t, _ in qs])
    out = {
        "docs": n, "nnz_per_doc_mean": float(lengths.mean()),
        "nnz_per_doc_p10_p50_p90": [float(x) for x in np.percentile(lengths, [10, 50, 90])],
        "terms_used": int(np.count_nonzero(df)),
        "df_fraction_top1_top10_top100_top1000": [float(rel[i - 1]) for i in (1, 10, 100, 1000)],
        "terms_df_ge_1pct": int(np.count_nonzero(rel >= 0.01)), "terms_df_ge_10pct": int(np.count_nonzero(rel >= 0.1)),
        "impact_mean": float((imp_hist * vals).sum() / imp_hist.sum()),
        "impact_p10_p50_p90": [int(np.searchsorted(cum, x)) for x in (0.1, 0.5, 0.9)],
        "query_terms_mean": float(q_len.mean()) if len(q_len) else 0.0,
        "query_postings_per_doc_mean": float(touched.mean()) if len(touched) else 0.0,
    }
    if truth is not None:
        # fraction of query terms present in the query's exact top-1 document
        fr = []
        with open(vs.root / "docs_terms.bin", "rb") as ft:
            for q, (t, _) in enumerate(qs):
                top = truth.top(10, q)
                if not len(t) or not len(top):
                    continue
                d = int(top[0])
                ft.seek(int(ptr[d]) * 4)
                row = np.fromfile(ft, dtype=np.int32, count=int(ptr[d + 1] - ptr[d]))
                fr.append(np.isin(t, row).mean())
        out["query_terms_in_top1_doc"] = float(np.mean(fr)) if fr else None
    return out
