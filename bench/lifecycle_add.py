"""Adding documents through heron.Index (encoding included) vs rebuilding the index from scratch.

Splits a BEIR corpus into a base (the first ``1 - fraction`` of the documents) and the rest; builds the base
index, then times ``Index.add(rest) + commit()`` (encode only the new documents with the index's own encoder,
build one segment, commit) against ``heron build-index`` over the whole corpus. Prints one JSON line.

    python bench/lifecycle_add.py --dataset scifact --encoder bm25
    python bench/lifecycle_add.py --dataset scifact --encoder splade --docs 1100
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--encoder", default="bm25", choices=["bm25", "splade", "dense"])
    parser.add_argument("--docs", type=int, default=None, help="use the first N documents only")
    parser.add_argument("--fraction", type=float, default=0.1, help="share of the documents added")
    args = parser.parse_args()

    import heron
    from heron.build import build_index, make_config
    from heron.eval import load_dataset

    dataset = load_dataset(args.dataset)
    docs = [{"_id": d.id, "title": d.title, "text": d.text} for d in dataset.iter_corpus()][:args.docs]
    cut = len(docs) - int(len(docs) * args.fraction)
    work = Path(tempfile.mkdtemp(prefix="heron-add-bench-"))
    try:
        def folder(name, rows):
            root = work / name
            root.mkdir()
            with open(root / "corpus.jsonl", "w", encoding="utf-8") as handle:
                handle.writelines(json.dumps(r) + "\n" for r in rows)
            (root / "queries.jsonl").write_text('{"_id": "q", "text": "x"}\n')
            return root

        def build(data, out):
            started = time.perf_counter()
            build_index(make_config({"dataset": str(data), "output": str(out), "encoder": {"type": args.encoder}}),
                        progress=False)
            return time.perf_counter() - started

        build(folder("base", docs[:cut]), work / "index")
        rebuild_s = build(folder("all", docs), work / "rebuilt")
        index = heron.Index.open(work / "index")
        started = time.perf_counter()
        index.add(docs[cut:])
        index.commit()
        add_s = time.perf_counter() - started
        print(json.dumps({"dataset": args.dataset, "encoder": args.encoder, "base_docs": cut,
                          "added_docs": len(docs) - cut, "add_commit_s": round(add_s, 2),
                          "rebuild_s": round(rebuild_s, 2), "speedup": round(rebuild_s / add_s, 1),
                          "generation": index.generation, "segments": len(index.snapshot.segments)}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
