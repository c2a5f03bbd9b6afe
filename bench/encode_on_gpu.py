#!/usr/bin/env python
"""Encode a corpus with heron's SPLADE encoder on a CUDA GPU, and turn the result into the benchmark vectors.

Two steps, for a GPU machine that cannot install heron (the lent ``device`` machine has torch, transformers,
numpy and scipy, not pytrec_eval):

``encode`` (on the GPU machine, from the repository root, ``src`` on the path): reads ``--corpus`` (BEIR
``corpus.jsonl`` or ``.jsonl.gz``), encodes every document's ``title + " " + text`` with ``SpladeEncoder`` in
fp32 (timed twice) and in fp16 (timed, compared), and writes to ``--out``: ``indptr.npy``, ``indices0.npy`` /
``indices1.npy`` (uint16 term ids, split to keep each file under 16 MiB), ``impacts.npy`` (uint8, quantised as
heron's builder does: scale = 255 / largest weight, ``rint``, clipped to [1, 255]), ``first300.npz`` (the
first 300 documents' float weights) and ``report.json`` (timings, the fp16 difference, scale). The model comes
from ``$HERON_CACHE/models`` (carry the folder along).

``vectors`` (here): checks ``first300.npz`` against this machine's CPU encoding (same terms, weights within
1e-4) and writes ``bench/forward_index.py prepare``'s layout — the documents' impacts and scale, and the
split's queries (first ``--limit``) encoded here by the same model's query side — to ``--npz``.

    # on the GPU machine (device tool; carry a folder holding corpus.jsonl.gz and cache/models/<model>):
    HERON_CACHE=$PWD/carry/cache python3 bench/encode_on_gpu.py encode --corpus carry/corpus.jsonl.gz --out $OUT
    # here:
    python bench/encode_on_gpu.py vectors --encoded /work/.device/N --dataset ~/.cache/heron/datasets/dictionaries \\
        --split test --limit 500 --npz /tmp/fwd/dict.npz
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def _texts(corpus: str) -> list[str]:
    """Each document's text as heron encodes it (``Document.contents``: title and text)."""
    _without_pytrec_eval()
    from heron.eval.datasets import Document

    opener = gzip.open if corpus.endswith(".gz") else open
    with opener(corpus, "rt") as f:
        docs = [json.loads(line) for line in f if line.strip()]
    return [Document(d["_id"], d.get("title", ""), d["text"]).contents for d in docs]


def _without_pytrec_eval() -> None:
    """Let heron import where pytrec_eval is missing (the GPU image): nothing here evaluates."""
    try:
        import pytrec_eval  # noqa: F401
    except ImportError:
        sys.modules["pytrec_eval"] = types.ModuleType("pytrec_eval")


def encode(corpus: str, out: str, model: str, max_length: int, batch_size: int) -> None:
    import torch

    _without_pytrec_eval()
    from heron.retrieval.encoders.splade import SpladeEncoder

    texts = _texts(corpus)
    report = {"docs": len(texts), "device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    mats = {}
    for fp16 in (False, True, False):
        enc = SpladeEncoder(model, device="cuda", fp16=fp16, doc_max_length=max_length, batch_size=batch_size)
        enc.encode_documents(texts[:2000])  # warm-up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        m = enc.encode_documents(texts)
        torch.cuda.synchronize()
        key = "fp16" if fp16 else "fp32"
        report.setdefault(f"{key}_s", []).append(round(time.perf_counter() - t0, 2))
        print(key, report[f"{key}_s"][-1], "s, nnz", m.nnz, flush=True)
        mats[key] = m.tocsr()
    a, b = mats["fp32"], mats["fp16"]
    a.sort_indices()
    b.sort_indices()
    report["nnz"] = {"fp32": int(a.nnz), "fp16": int(b.nnz)}
    report["fp16_vs_fp32_max_abs"] = float(abs(a - b).max())
    report["fp16_vs_fp32_max_rel_of_max"] = report["fp16_vs_fp32_max_abs"] / float(a.data.max())
    report["scale"] = 255.0 / float(a.data.max())
    report["V"] = int(a.shape[1])
    half = len(a.indices) // 2
    np.save(f"{out}/indptr.npy", a.indptr.astype(np.int64))
    np.save(f"{out}/indices0.npy", a.indices[:half].astype(np.uint16))
    np.save(f"{out}/indices1.npy", a.indices[half:].astype(np.uint16))
    np.save(f"{out}/impacts.npy", np.clip(np.rint(a.data.astype(np.float64) * report["scale"]), 1, 255).astype(np.uint8))
    first = a[:300]
    np.savez(f"{out}/first300.npz", indptr=first.indptr, indices=first.indices, data=first.data)
    Path(f"{out}/report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report), flush=True)


def vectors(encoded: str, dataset: str, split: str, limit: int, npz: str, model: str, max_length: int) -> None:
    import scipy.sparse as sp

    from heron.retrieval.encoders.splade import SpladeEncoder

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from approx_presets import split_queries

    d = Path(encoded)
    report = json.loads((d / "report.json").read_text())
    indptr = np.load(d / "indptr.npy")
    indices = np.concatenate([np.load(d / "indices0.npy"), np.load(d / "indices1.npy")]).astype(np.int32)
    impacts = np.load(d / "impacts.npy")
    if not (len(indices) == len(impacts) == indptr[-1]):
        raise SystemExit(f"{encoded}: {len(indices)} term ids, {len(impacts)} impacts, {indptr[-1]} in indptr")
    f = np.load(d / "first300.npz")
    gpu = sp.csr_matrix((f["data"], f["indices"], f["indptr"]), shape=(len(f["indptr"]) - 1, report["V"]))
    encoder = SpladeEncoder(model, device="cpu", doc_max_length=max_length)
    cpu = sp.csr_matrix(encoder.encode_documents(_texts(str(Path(dataset) / "corpus.jsonl"))[:gpu.shape[0]]))
    cpu.sort_indices()
    gpu.sort_indices()
    same = np.array_equal(cpu.indptr, gpu.indptr) and np.array_equal(cpu.indices, gpu.indices)
    diff = float(abs(cpu - gpu).max()) if same else float("inf")
    print(f"GPU against CPU, first {gpu.shape[0]} documents: same terms {same}, largest weight difference {diff:.2g}")
    if not same or diff > 1e-4:
        raise SystemExit("the GPU encoding is not this model's CPU encoding")
    q = sp.csr_matrix(encoder.encode_queries([x["text"] for x in split_queries(Path(dataset), split, limit)]))
    np.savez(npz, indptr=indptr, indices=indices, data=impacts, scale=report["scale"], V=report["V"],
             qindptr=q.indptr, qindices=q.indices, qdata=q.data.astype(np.float32))
    print(f"{len(indptr) - 1} documents, {len(impacts)} postings, scale {report['scale']:.2f}, {q.shape[0]} {split} "
          f"queries -> {npz}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=("encode", "vectors"))
    ap.add_argument("--model", default="splade-tiny")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--corpus", help="encode: corpus.jsonl[.gz]")
    ap.add_argument("--out", help="encode: output folder")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--encoded", help="vectors: the folder encode wrote")
    ap.add_argument("--dataset", help="vectors: the BEIR dataset folder (corpus, queries, qrels)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--limit", type=int, default=500)
    ap.add_argument("--npz", help="vectors: output file")
    args = ap.parse_args()
    if args.cmd == "encode":
        encode(args.corpus, args.out, args.model, args.max_length, args.batch_size)
    else:
        vectors(args.encoded, args.dataset, args.split, args.limit, args.npz, args.model, args.max_length)


if __name__ == "__main__":
    main()
