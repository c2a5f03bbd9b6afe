#!/usr/bin/env python
"""MUVERA candidate recall: heron's FDE against an independent implementation, same token vectors.

For a multi-vector index (``heron build-index --encoder multivector``) and a dataset's test queries:
the exact Chamfer (MaxSim) top-10 by brute force, then for each FDE implementation the share of that
top-10 found in the FDE top-N (exact inner product over all document FDEs), N ∈ {50, 100, 200, 500, 1000}.
Implementations: heron (``heron.multivector.muvera``) and fastembed's ``Muvera`` post-processor (NumPy;
installed by the ``bench`` extra), both at R = 20, k_sim = 5, d_proj = 16. Both draw their projections
at random, so one seed is one sample: the comparison runs each implementation at the same seeds
(``--seeds``, default 42,1,2,3,4) and reports the mean recall and every seed's value.

    .venv/bin/python bench/muvera_recall.py --index indexes/scifact-colbert --dataset scifact
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
NS = (50, 100, 200, 500, 1000)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--seeds", default="42,1,2,3,4")
    ap.add_argument("--out", default=str(HERE / "out"))
    args = ap.parse_args()

    from heron.eval import load_dataset
    from heron.indexing.multivector_store import MultiVectorIndex
    from heron.multivector.maxsim import maxsim_candidates
    from heron.multivector.muvera import MuveraEncoder
    from heron.retrieval.multivector import MultiVectorRetriever

    index = MultiVectorIndex.open(args.index)
    retriever = MultiVectorRetriever(index, device="cpu")
    ds = load_dataset(args.dataset)
    queries = retriever.encode(list(ds.queries("test").values()))
    docs = [index.document(i) for i in range(index.num_docs)]
    everything = np.arange(index.num_docs)
    truth = [set(np.argsort(-maxsim_candidates(q, index.tokens, index.offsets, everything), kind="stable")[:10])
             for q in queries]
    seeds = [int(x) for x in args.seeds.split(",")]
    results = {"index": args.index, "dataset": args.dataset, "num_docs": index.num_docs, "queries": len(queries),
               "seeds": seeds, "recall_of_chamfer_top10": {}, "per_seed": {}}
    try:
        from fastembed.postprocess import Muvera
    except ImportError:
        Muvera = None
        print("fastembed is not installed (pip install -e '.[bench]'): heron only")
    for name in ("heron", "fastembed") if Muvera is not None else ("heron",):
        per_seed, seconds = [], 0.0
        for seed in seeds:
            t0 = time.perf_counter()
            if name == "heron":
                impl = MuveraEncoder(index.dim, reps=20, k_sim=5, d_proj=16, seed=seed)
                d_fde = impl.encode_documents(docs)
                q_fde = impl.encode_queries(queries)
            else:
                impl = Muvera(index.dim, k_sim=5, dim_proj=16, r_reps=20, random_seed=seed)
                d_fde = np.stack([impl.process_document(d) for d in docs]).astype(np.float32)
                q_fde = np.stack([impl.process_query(q) for q in queries]).astype(np.float32)
            seconds += time.perf_counter() - t0
            order = np.argsort(-(q_fde @ d_fde.T), axis=1, kind="stable")
            per_seed.append({str(n): float(np.mean([len(t & set(order[i, :n].tolist())) / 10
                                                    for i, t in enumerate(truth)])) for n in NS})
        results["per_seed"][name] = per_seed
        results["recall_of_chamfer_top10"][name] = {str(n): float(np.mean([r[str(n)] for r in per_seed]))
                                                     for n in NS}
        results.setdefault("encode_seconds_per_seed", {})[name] = seconds / len(seeds)
        print(name, {n: round(v, 4) for n, v in results["recall_of_chamfer_top10"][name].items()},
              f"(mean of {len(seeds)} seeds), {seconds / len(seeds):.1f} s to encode", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"muvera_recall-{ds.name}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
