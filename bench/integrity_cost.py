"""What the integrity checks cost: xxh3 and sha256 throughput, index open time, query latency, full check.

Measures, for each index given:

* **index_open**: :func:`heron.indexing.registry.open_index` alone — where the checks at open run (sizes,
  headers, hashes) — median of ``--repeat`` runs with the files in the page cache (a warm-up open first);
* **open**: ``Index.open(path)`` plus opening its member with its query encoder (what ``heron query`` and a
  server start do; the first search opens the member), in a fresh ``Index`` each time;
* **query**: the median and p99 latency of single-query searches over the dataset's test queries (the
  query encoder and kernels warmed first), which includes the per-search size check of the mapped files;
* **check**: :func:`heron.indexing.registry.verify_index` — every byte of every file hashed (what
  ``heron index check`` and a server's background check run);

and the throughput of xxh3-128 and sha256 over a buffer of ``--hash-mb`` megabytes and over a file of
that size read through :func:`heron.storage.integrity.xxh3_file` (page cache warm).

Run it once with ``PYTHONPATH`` on the code to measure and once on the code to compare with (e.g. the
commit before the integrity checks): the figures of docs/reliability/integrity.md come from::

    PYTHONPATH=src .venv/bin/python bench/integrity_cost.py indexes/scifact-bm25 indexes/scifact-splade \\
        --dataset scifact --out bench/out/integrity-after.json
    PYTHONPATH=/path/to/old/src .venv/bin/python bench/integrity_cost.py ... --out bench/out/integrity-before.json

Speed numbers belong here and in the docs, never in tests.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def _median_seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def hash_throughput(megabytes: int) -> dict:
    import xxhash

    data = os.urandom(megabytes << 20)
    out = {}
    for name, make in (("xxh3_128", xxhash.xxh3_128), ("sha256", hashlib.sha256)):
        seconds = _median_seconds(lambda make=make: make(data).hexdigest(), 3)
        out[f"{name}_gb_per_s"] = round(len(data) / seconds / 1e9, 2)
    try:
        from heron.storage.integrity import xxh3_file
    except ImportError:  # the code compared with predates xxh3
        return out
    with tempfile.NamedTemporaryFile(dir=os.environ.get("TMPDIR")) as handle:
        handle.write(data)
        handle.flush()
        xxh3_file(handle.name)  # into the page cache
        seconds = _median_seconds(lambda: xxh3_file(handle.name), 3)
        out["xxh3_file_gb_per_s"] = round(len(data) / seconds / 1e9, 2)
    return out


def measure_index(path: Path, queries: list[str], repeat: int) -> dict:
    from heron.api import Index
    from heron.indexing.registry import open_index

    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    open_index(path)
    index_open_seconds = _median_seconds(lambda: open_index(path), repeat)

    def open_member():
        index = Index.open(path)
        index.retriever(index.default)

    open_member()  # files into the page cache, kernels compiled
    open_seconds = _median_seconds(open_member, repeat)
    index = Index.open(path)
    for text in queries[:20]:
        index.search(text, k=10)
    latencies = []
    for text in queries:
        started = time.perf_counter()
        index.search(text, k=10)
        latencies.append(time.perf_counter() - started)
    latencies.sort()
    out = {"bytes": size, "index_open_ms": round(index_open_seconds * 1e3, 2), "open_ms": round(open_seconds * 1e3, 2),
           "query_median_ms": round(statistics.median(latencies) * 1e3, 3),
           "query_p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))] * 1e3, 3), "queries": len(latencies)}
    try:
        from heron.indexing.registry import verify_index
    except ImportError:
        return out
    out["check_ms"] = round(_median_seconds(lambda: verify_index(path), repeat) * 1e3, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("indexes", nargs="+", type=Path)
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--split", default="test")
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--hash-mb", type=int, default=256)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from heron.eval import load_dataset

    queries = list(load_dataset(args.dataset).queries(args.split).values())
    result = {"hash": hash_throughput(args.hash_mb),
              "indexes": {str(p): measure_index(p, queries, args.repeat) for p in args.indexes}}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
