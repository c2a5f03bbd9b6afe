#!/usr/bin/env python
"""Effectiveness through Milvus vs heron on the same index: per member, nDCG@10 (and recall@100) of the
runs of heron's own index and of the exported Milvus collection (the same query encoder), and the share of
queries whose top-10 ids are the same (ties aside: ids that differ only among documents whose scores equal the
10th score to 1e-5 relative count as the same).

    nice -n 10 .venv/bin/python bench/milvus_agreement.py --index /tmp/mvbench/scifact-bundle \\
        --address milvus:///tmp/mvbench/heron.db/scifact --dataset scifact
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def same_top(a: dict, b: dict, k: int = 10, rtol: float = 1e-5) -> bool:
    """The top-``k`` of two runs of one query agree, ties at the cut-off aside."""
    ra = sorted(a.items(), key=lambda x: -x[1])[:k]
    rb = sorted(b.items(), key=lambda x: -x[1])[:k]
    if [d for d, _ in ra] == [d for d, _ in rb] or {d for d, _ in ra} == {d for d, _ in rb}:
        return True
    if len(ra) != len(rb) or not ra:
        return False
    cut = rb[-1][1]
    tol = rtol * (1 + abs(cut))
    above = lambda r: {d for d, s in r if s > cut + tol}  # noqa: E731
    return above(ra) == above(rb) and all(abs(s - cut) <= tol for d, s in ra if d not in dict(rb))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--address", required=True)
    ap.add_argument("--dataset", default="scifact")
    ap.add_argument("--split", default="test")
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--members", default="splade,dense,splade+dense")
    args = ap.parse_args()
    import heron
    from heron.eval import evaluate, load_dataset

    ds = load_dataset(args.dataset)
    queries, qrels = ds.queries(args.split), ds.qrels(args.split)
    qids = list(queries)
    texts = [queries[q] for q in qids]
    local, served = heron.Index.open(args.index), heron.Index.open(args.address)
    out = {}
    for retriever in args.members.split(","):
        runs = {}
        for label, index in (("heron", local), ("milvus", served)):
            hits = [h for start in range(0, len(texts), 100)  # the API caps hits per call
                    for h in index.search_batch(texts[start:start + 100], k=args.depth, retriever=retriever)]
            runs[label] = {q: {h.doc_id: h.score for h in hs} for q, hs in zip(qids, hits)}
        metrics = {label: evaluate(run, qrels, ["ndcg@10", "recall@100"]) for label, run in runs.items()}
        agree = [same_top(runs["milvus"][q], runs["heron"][q]) for q in qids]
        exact = [list(runs["milvus"][q])[:10] == list(runs["heron"][q])[:10] for q in qids]
        scores = [abs(np.array(list(runs["milvus"][q].values())[:10]) - np.array(list(runs["heron"][q].values())[:10]))
                  for q in qids if len(runs["milvus"][q]) >= 10 and len(runs["heron"][q]) >= 10]
        out[retriever] = {label: {m: round(float(v), 4) for m, v in metrics[label].mean.items()} for label in runs}
        out[retriever].update(same_top10_ties_aside=round(float(np.mean(agree)), 4),
                              same_top10_order=round(float(np.mean(exact)), 4),
                              max_abs_score_diff_top10=float(max((s.max() for s in scores), default=0.0)),
                              queries=len(qids))
        print(json.dumps({retriever: out[retriever]}), flush=True)


if __name__ == "__main__":
    main()
