"""Ray encoding throughput: splade-tiny over the first ``--docs`` SciFact documents, one process vs Ray actors.

Steps, in one run on one machine:

1. **single process**: :class:`~heron.retrieval.encoders.splade.SpladeEncoder` with one torch thread, the model
   loaded and warmed up first, encoding the documents in chunks of ``--shard-docs`` (what ``heron build-index``
   does): documents per second of encoding alone; then the **control without Ray**: two such processes at once
   on alternate documents (what the machine gives two workers at best);
2. **Ray startup**: ``ray.init(num_cpus=--cpus)`` (a local cluster), seconds;
3. **Ray, W workers** for each W in ``--workers`` (default 1 and 2; one CPU and one torch thread per actor): the
   ranges mapped over the actor pool exactly as ``build-index --ray`` encodes them (Ray Data ``map_batches``,
   each range written as a shard). Reported: the *wall* time from handing out the ranges to the last one
   landing (actor start and model loads included), the *pipeline* time (first range started → last range
   finished, from the ranges' own clocks: actors already up), documents per second for both, and per actor;
4. **the full build** (``build_index`` with ``ray``, ``--workers`` max): seconds end to end and the index's
   bytes per document (every file of the segmented index, encoder and docstore included, and the postings alone).

Usage: ``flock /tmp/heron-bench.lock nice -n 0 python bench/ray_encode.py --docs 1000`` (prints JSON; ``uptime``
before and after). Needs the ``distributed`` extra and splade-tiny in heron's cache.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def make_corpus(root: Path, docs: int) -> Path:
    """A BEIR folder holding the first ``docs`` SciFact documents (corpus only, plus one query for the loader)."""
    from heron.eval import load_dataset

    src = load_dataset("scifact")
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "corpus.jsonl", "w") as f:
        for i, doc in enumerate(src.iter_corpus()):
            if i == docs:
                break
            f.write(json.dumps({"_id": doc.id, "title": doc.title, "text": doc.text}) + "\n")
    (root / "queries.jsonl").write_text('{"_id": "q", "text": "x"}\n')
    (root / "qrels").mkdir(exist_ok=True)
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\tx\t1\n")
    return root


def single_process(corpus: Path, shard_docs: int) -> dict:
    import torch

    from heron.build.ray_executor import plan_ranges, read_range
    from heron.retrieval.encoders import splade

    torch.set_num_threads(1)
    encoder = splade.SpladeEncoder("splade-tiny", threads=1, device="cpu")
    ranges, total = plan_ranges(corpus / "corpus.jsonl", shard_docs)
    texts = [[d.contents for d in read_range(corpus / "corpus.jsonl", r)] for r in ranges]
    encoder.encode_documents(texts[0][:32])  # warm-up
    started = time.perf_counter()
    for chunk in texts:
        encoder.encode_documents(chunk)
    seconds = time.perf_counter() - started
    return {"docs": total, "seconds": round(seconds, 2), "docs_per_s": round(total / seconds, 1)}


def _encode_half(args) -> dict:
    corpus, shard_docs = args
    return single_process(Path(corpus), shard_docs)


def parallel_processes(corpus: Path, shard_docs: int, processes: int = 2) -> dict:
    """The control without Ray: ``processes`` plain processes (one torch thread each) encoding disjoint parts of
    the corpus at the same time; aggregate documents per second = documents / the slowest one's seconds."""
    import multiprocessing

    lines = (corpus / "corpus.jsonl").read_text().splitlines(keepends=True)
    parts = []
    for p in range(processes):
        part = corpus.parent / f"part{p}"
        part.mkdir(exist_ok=True)
        (part / "corpus.jsonl").write_text("".join(lines[p::processes]))
        parts.append((str(part), shard_docs))
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        runs = pool.map(_encode_half, parts)
    slowest = max(r["seconds"] for r in runs)
    return {"processes": processes, "per_process_docs_per_s": [r["docs_per_s"] for r in runs],
            "aggregate_docs_per_s": round(sum(r["docs"] for r in runs) / slowest, 1)}


def ray_encode(corpus: Path, work: Path, shard_docs: int, workers: int) -> dict:
    import ray

    from heron.build.config import RayConfig
    from heron.build.ray_executor import STATS_FILE, _encode, plan_ranges, range_dir

    ranges, total = plan_ranges(corpus / "corpus.jsonl", shard_docs)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    kwargs = {"doc_model": "splade-tiny", "batch_size": 32, "device": "cpu", "threads": 1}

    class Bar:
        def update(self, n):
            pass

        def close(self):
            pass

    started = time.time()
    _encode(ray, ranges, workers, False, RayConfig(cpus_per_worker=1), "splade", kwargs, corpus / "corpus.jsonl",
            work, "bench", Bar())
    wall = time.time() - started
    stats = [json.loads((range_dir(work, r["index"]) / STATS_FILE).read_text()) for r in ranges]
    span = max(s["finished"] for s in stats) - min(s["started"] for s in stats)
    per_actor = {}
    for s in stats:
        a = per_actor.setdefault(s["pid"], [0, 0.0])
        a[0] += s["num_docs"]
        a[1] += s["seconds"]
    return {"workers": workers, "docs": total, "ranges": len(ranges), "wall_s": round(wall, 2),
            "wall_docs_per_s": round(total / wall, 1), "first_range_started_after_s": round(
                min(s["started"] for s in stats) - started, 2), "pipeline_s": round(span, 2),
            "pipeline_docs_per_s": round(total / span, 1),
            "per_actor_docs_per_s": sorted(round(d / t, 1) for d, t in per_actor.values())}


def index_bytes(path: Path) -> dict:
    files = [f for f in path.rglob("*") if f.is_file()]
    total = sum(f.stat().st_size for f in files)
    postings = sum(f.stat().st_size for f in files if "encoder" not in f.parts and "docstore" not in f.parts)
    return {"bytes": total, "bytes_without_encoder_docstore": postings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--shard-docs", type=int, default=50)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--control-only", action="store_true", help="only one process and two plain processes "
                        "in parallel (no Ray): what the machine itself gives")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    uptime = [subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()]
    root = Path(tempfile.mkdtemp(prefix="rayenc"))
    try:
        corpus = make_corpus(root / "corpus", args.docs)
        report = {"docs": args.docs, "shard_docs": args.shard_docs, "cpus": args.cpus}
        report["single_process_1_thread"] = single_process(corpus, args.shard_docs)
        report["two_plain_processes"] = parallel_processes(corpus, args.shard_docs)
        report["ratio_two_plain_processes"] = round(report["two_plain_processes"]["aggregate_docs_per_s"] /
                                                    report["single_process_1_thread"]["docs_per_s"], 2)
        if args.control_only:
            raise SystemExit(print(json.dumps(report, indent=2)))
        import logging

        import ray

        started = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
        report["ray_init_s"] = round(time.perf_counter() - started, 2)
        runs = [ray_encode(corpus, root / f"work{w}", args.shard_docs, w) for w in args.workers]
        report["ray"] = runs
        by = {r["workers"]: r for r in runs}
        if 1 in by and 2 in by:
            report["ratio_2w_1w"] = {"wall": round(by[2]["wall_docs_per_s"] / by[1]["wall_docs_per_s"], 2),
                                     "pipeline": round(by[2]["pipeline_docs_per_s"] / by[1]["pipeline_docs_per_s"],
                                                       2)}
        from heron.build import build_index, make_config

        cfg = make_config({"dataset": str(corpus), "output": str(root / "index"), "shard_docs": args.shard_docs,
                           "encoder": {"type": "splade"}, "ray": {"workers": max(args.workers)}})
        started = time.perf_counter()
        out = build_index(cfg, progress=False)
        report["full_build"] = {"workers": max(args.workers), "seconds": round(time.perf_counter() - started, 2),
                                **index_bytes(out)}
        report["full_build"]["bytes_per_doc"] = round(report["full_build"]["bytes"] / args.docs, 1)
        report["full_build"]["bytes_per_doc_without_encoder_docstore"] = round(
            report["full_build"]["bytes_without_encoder_docstore"] / args.docs, 1)
        ray.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    uptime.append(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    report["uptime"] = uptime
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
