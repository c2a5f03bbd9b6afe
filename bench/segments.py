"""Segments: adding 10 % more documents vs rebuilding, and search latency over many segments vs one.

Synthetic SPLADE-like vectors (no encoding: encoding is excluded from both sides): ``--docs`` documents of about
``--nnz`` non-zeros over a 30,522-term vocabulary, term frequencies Zipf-like, weights gamma-distributed;
queries of about 24 terms from the same distribution. Steps, all on the same machine in one run:

1. a segmented index of ``--docs`` documents built as ``--segments`` segments (convert the first, add the rest);
2. **add**: build the ``--add-fraction`` new documents as one segment, ``add_segment`` + ``commit``;
3. **rebuild**: build every document (old + new) as one classic index, as a user without segments would;
4. exact top-10 and top-1000 latency, one query at a time, over the segmented index (all segments in one
   compiled call sharing one heap, ``reader.ONE_CALL``; and, for comparison, per segment and merged, one after
   the other) and over the rebuilt index (one thread: a single query is one kernel call), after checking that
   both return the same ids and scores; the three take turns query by query (the same load for each);
5. **merge** to one segment (time), the same latency through the merged segment, and with 1 % deleted.

Usage: ``python bench/segments.py --docs 200000`` (prints a JSON report; ``--out`` keeps the indexes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from heron.indexing.inverted.builder import build_inverted_index
from heron.indexing.registry import open_index
from heron.indexing.segments import IndexWriter, SegmentedIndex, convert_to_segmented, reader

VOCAB_SIZE = 30522
CHUNK = 20000
BLOCK = 1000  # documents generated together (from one seed)


def term_probabilities(vocab: int) -> np.ndarray:
    p = 1.0 / (np.arange(vocab) + 20.0) ** 0.95
    return p / p.sum()


def _block(index: int, nnz: int, seed: int, p: np.ndarray) -> sp.csr_matrix:
    """Documents ``BLOCK * index`` .. ``BLOCK * (index + 1)``: the same whichever range they are read for."""
    rng = np.random.default_rng([seed, index])
    lengths = rng.poisson(nnz, BLOCK).clip(1)
    terms = rng.choice(len(p), size=int(lengths.sum()), p=p)
    rows = np.repeat(np.arange(BLOCK), lengths)
    weights = rng.gamma(1.5, 0.6, size=len(terms)).astype(np.float32)
    matrix = sp.csr_matrix((weights, (rows, terms)), shape=(BLOCK, len(p)))
    matrix.sum_duplicates()
    return matrix


#: seconds spent generating documents (the stand-in for encoding), added up by :func:`documents`
GENERATED_S = [0.0]


def documents(start: int, stop: int, nnz: int, seed: int, p: np.ndarray):
    """``(ids, csr)`` chunks of documents ``start``..``stop`` (the time spent making them is added to
    ``GENERATED_S``: a build's time less it is the build without "encoding")."""
    for lo in range(start, stop, CHUNK):
        started = time.perf_counter()
        hi = min(lo + CHUNK, stop)
        blocks = range(lo // BLOCK, (hi - 1) // BLOCK + 1)
        matrix = sp.vstack([_block(b, nnz, seed, p) for b in blocks], format="csr")
        base = blocks[0] * BLOCK
        chunk = [f"doc{i}" for i in range(lo, hi)], matrix[lo - base:hi - base]
        GENERATED_S[0] += time.perf_counter() - started
        yield chunk


def make_queries(count: int, seed: int, p: np.ndarray) -> list[dict]:
    rng = np.random.default_rng([seed, 999])
    vocab = [f"t{i}" for i in range(len(p))]
    out = []
    for _ in range(count):
        terms = np.unique(rng.choice(len(p), size=24, p=np.sqrt(p) / np.sqrt(p).sum()))
        out.append({vocab[t]: float(w) for t, w in zip(terms, rng.gamma(2.0, 0.5, size=len(terms)))})
    return out


def latency(index, queries: list[dict], k: int) -> dict:
    index.search_batch(queries[:5], k, threads=1)  # warm up (compiled kernels, page cache)
    times, cpu = [], []
    for q in queries:
        started, started_cpu = time.perf_counter(), time.thread_time()
        index.search_batch([q], k, threads=1)
        times.append(time.perf_counter() - started)
        cpu.append(time.thread_time() - started_cpu)
    ms = np.array(times) * 1000
    # CPU time of the searching thread: steadier than wall time on a machine shared with other work
    return {"mean_ms": round(float(ms.mean()), 3), "p50_ms": round(float(np.median(ms)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3), "cpu_mean_ms": round(float(np.mean(cpu)) * 1000, 3)}


def paired_latency(searches: dict, queries: list[dict], k: int) -> dict:
    """:func:`latency` of several searches (name → ``search(queries, k)``) taking turns query by query, so that
    every one sees the same load of a shared machine (measured one after the other, ratios drifted by 2x)."""
    for search in searches.values():
        search(queries[:5], k)
    times = {name: [] for name in searches}
    cpu = {name: [] for name in searches}
    for q in queries:
        for name, search in searches.items():
            started, started_cpu = time.perf_counter(), time.thread_time()
            search([q], k)
            times[name].append(time.perf_counter() - started)
            cpu[name].append(time.thread_time() - started_cpu)
    out = {}
    for name in searches:
        ms = np.array(times[name]) * 1000
        out[name] = {"mean_ms": round(float(ms.mean()), 3), "p50_ms": round(float(np.median(ms)), 3),
                     "p99_ms": round(float(np.percentile(ms, 99)), 3),
                     "cpu_mean_ms": round(float(np.mean(cpu[name])) * 1000, 3)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--nnz", type=int, default=120, help="average non-zeros per document")
    parser.add_argument("--segments", type=int, default=10)
    parser.add_argument("--add-fraction", type=float, default=0.1)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="where to build (default: a temporary folder)")
    args = parser.parse_args()

    root = args.out or Path(tempfile.mkdtemp(prefix="heron-bench-segments-"))
    root.mkdir(parents=True, exist_ok=True)
    p = term_probabilities(VOCAB_SIZE)
    vocab = [f"t{i}" for i in range(VOCAB_SIZE)]
    scale = 255 / 8.0  # fixed for every build (gamma weights above 8 are clipped): identical impacts everywhere
    common = {"vocab": vocab, "encoder": {"type": "synthetic-splade"}, "scale": scale, "progress": False}
    n, added = args.docs, int(args.docs * args.add_fraction)
    report: dict = {"docs": n, "added": added, "segments": args.segments, "nnz_per_doc": args.nnz,
                    "queries": args.queries, "cpus": os.cpu_count()}

    # 1. the segmented index of n documents
    started = time.perf_counter()
    bounds = np.linspace(0, n, args.segments + 1).astype(int)
    path = build_inverted_index(documents(0, bounds[1], args.nnz, args.seed, p), root / "segmented", **common)
    convert_to_segmented(path)
    with IndexWriter(path, merge_policy={"enabled": False}) as writer:
        for s in range(1, args.segments):
            built = build_inverted_index(documents(bounds[s], bounds[s + 1], args.nnz, args.seed, p),
                                         root / f"part{s}", **common)
            writer.add_segment(built)
    report["build_segmented_s"] = round(time.perf_counter() - started, 2)

    # 2. add 10 %: build the new documents as a segment, add it, commit
    started = started_add = time.perf_counter()
    GENERATED_S[0] = 0.0
    # the new segment is built as heron.build.segment builds it: not resumable (a killed add is redone whole)
    built = build_inverted_index(documents(n, n + added, args.nnz, args.seed, p), root / "new", resume=False,
                                 **common)
    build_s = time.perf_counter() - started
    add_generated = GENERATED_S[0]
    opening = time.perf_counter()
    with IndexWriter(path, merge_policy={"enabled": False}) as writer:
        adding = time.perf_counter()
        writer.add_segment(built)
        committing = time.perf_counter()
        writer.commit()
    done = time.perf_counter()
    report["add"] = {"build_s": round(build_s, 2), "of_which_generating_s": round(add_generated, 2),
                     "open_writer_s": round(adding - opening, 2), "add_segment_s": round(committing - adding, 2),
                     "commit_s": round(done - committing, 2), "total_s": round(done - started, 2)}

    # 3. rebuild everything as one index
    started = time.perf_counter()
    GENERATED_S[0] = 0.0
    rebuilt = build_inverted_index(documents(0, n + added, args.nnz, args.seed, p), root / "rebuilt", **common)
    rebuild_s = time.perf_counter() - started
    report["rebuild_s"] = round(rebuild_s, 2)
    report["rebuild_generating_s"] = round(GENERATED_S[0], 2)
    report["add_speedup"] = round(rebuild_s / (done - started_add), 1)
    # generating the synthetic vectors stands in for encoding, which the comparison excludes: both sides less it
    report["add_speedup_without_generating"] = round((rebuild_s - GENERATED_S[0]) / (done - started_add - add_generated), 1)
    # the rebuild above is what `heron build-index` does (resumable: per-shard checkpoints); the same rebuild
    # without them, for a like-for-like comparison of the builder's work
    started = time.perf_counter()
    GENERATED_S[0] = 0.0
    build_inverted_index(documents(0, n + added, args.nnz, args.seed, p), root / "rebuilt-once", resume=False,
                         **common)
    once_s = time.perf_counter() - started
    report["rebuild_not_resumable_s"] = round(once_s, 2)
    report["add_speedup_vs_not_resumable"] = round(once_s / (done - started_add), 1)
    report["add_speedup_vs_not_resumable_without_generating"] = round(
        (once_s - GENERATED_S[0]) / (done - started_add - add_generated), 1)
    shutil.rmtree(root / "rebuilt-once", ignore_errors=True)

    # 4. latency: all segments vs the rebuilt index, after an equality check
    queries = make_queries(args.queries, args.seed, p)
    segmented = SegmentedIndex.open(path)
    member = segmented.member(segmented.members[0])
    single = open_index(rebuilt)
    for k in (10, 1000):
        got, want = member.search_batch(queries[:50], k), single.search_batch(queries[:50], k)
        assert got[0] == want[0] and all(np.array_equal(a, b) for a, b in zip(got[1], want[1])), f"k={k} differs"
    report["segments_in_index"] = len(segmented.segments)
    report["latency"] = {}
    reader.SEGMENT_THREADS = 1

    def per_segment_merged(qs, k):
        reader.ONE_CALL = False
        try:
            return member.search_batch(qs, k, threads=1)
        finally:
            reader.ONE_CALL = True

    for k in (10, 1000):
        got = paired_latency({"single": lambda qs, k: single.search_batch(qs, k, threads=1),
                              "segmented": lambda qs, k: member.search_batch(qs, k, threads=1),
                              "per_segment": per_segment_merged}, queries, k)
        one, seg, per_segment = got["single"], got["segmented"], got["per_segment"]
        report["latency"][f"top{k}"] = {
            "rebuilt_single": one, "segmented": seg, "segmented_per_segment_merged": per_segment,
            "ratio": round(seg["mean_ms"] / one["mean_ms"], 2),
            "ratio_cpu": round(seg["cpu_mean_ms"] / one["cpu_mean_ms"], 2),
            "ratio_per_segment_merged": round(per_segment["mean_ms"] / one["mean_ms"], 2)}

    # 5. merge to one segment; latency through the merged segment, then with 1 % deleted
    started = time.perf_counter()
    with IndexWriter(path) as writer:
        writer.merge(1)
    report["merge_s"] = round(time.perf_counter() - started, 2)
    merged = SegmentedIndex.open(path)
    merged_member = merged.member(merged.members[0])
    report["latency_merged"] = {f"top{k}": latency(merged_member, queries, k) for k in (10, 1000)}
    rng = np.random.default_rng(args.seed)
    with IndexWriter(path) as writer:
        writer.delete([f"doc{i}" for i in rng.choice(n + added, size=(n + added) // 100, replace=False)])
    deleted = SegmentedIndex.open(path)
    report["latency_merged_1pct_deleted"] = {f"top{k}": latency(deleted.member(deleted.members[0]), queries, k)
                                             for k in (10, 1000)}
    report["describe"] = {key: deleted.describe()[key] for key in ("generation", "num_docs", "deleted_docs", "bytes",
                                                                    "postings", "bytes_per_posting")}
    print(json.dumps(report, indent=1))
    if args.out is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
