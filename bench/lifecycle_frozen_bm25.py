"""SciFact test, BM25: an index built on 90 % of the corpus with the other 10 % added through heron.Index
(frozen statistics: N, avgdl, idf and vocabulary of the 90 %) vs a fresh build over 100 %: nDCG@10, R@100.

    python bench/lifecycle_frozen_bm25.py [--dataset scifact]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="scifact")
    args = parser.parse_args()

    import heron
    from heron.build import build_index, make_config
    from heron.eval import evaluate, load_dataset

    ds = load_dataset(args.dataset)
    docs = [{"_id": d.id, "title": d.title, "text": d.text} for d in ds.iter_corpus()]
    cut = len(docs) - len(docs) // 10
    work = Path(tempfile.mkdtemp(prefix="heron-frozen-bm25-"))
    try:
        base_data = work / "base"
        base_data.mkdir()
        with open(base_data / "corpus.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in docs[:cut])
        (base_data / "queries.jsonl").write_text('{"_id": "q", "text": "x"}\n')

        def build(data, out):
            return build_index(make_config({"dataset": str(data), "output": str(work / out),
                                            "encoder": {"type": "bm25"}}), progress=False)

        added = heron.Index.open(build(base_data, "added"))
        added.add(docs[cut:])
        added.commit()
        fresh = heron.Index.open(build(ds.root, "fresh"))
        queries = ds.queries("test")
        qids = list(queries)
        for name, index in (("added, frozen statistics", added), ("fresh build", fresh)):
            hits = [h for s in range(0, len(qids), 100)
                    for h in index.search_batch([queries[q] for q in qids[s:s + 100]], k=100)]
            run = {qid: {h.doc_id: h.score for h in found} for qid, found in zip(qids, hits)}
            mean = evaluate(run, ds.qrels("test")).mean
            print(json.dumps({"dataset": ds.name, "index": name, "ndcg@10": round(mean["ndcg@10"], 4),
                              "recall@100": round(mean["recall@100"], 4)}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
