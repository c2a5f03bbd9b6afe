"""``heron eval`` and ``heron compare``."""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from heron.cli.options import SEARCH_HELP, checked_flags, parse_search, refuse_unused, with_search_keys
from heron.errors import HeronError
from heron.eval import evaluate, load_dataset, paired_test, read_trec_run, remove_self_hits
from heron.eval.metrics import DEFAULT_METRICS, METRICS
from heron.eval.report import cost_table, print_table, result_name, results_table, save_result, significance_table
from heron.retrieval import RETRIEVERS, check_retriever_spec, get_retriever


def _check_metrics(metrics: list[str]) -> list[str]:
    for m in metrics:
        if m not in METRICS:
            raise HeronError(f"unknown metric '{m}' (known: {', '.join(METRICS)})")
    return metrics


def _with_prf_for_dataset(ret, ds, method, options):
    """A named retriever with PRF: the index-backed ones (splade, dense, an index folder) only."""
    from heron.retrieval import CachedIndexRetriever
    from heron.retrieval.base import IndexRetriever
    from heron.retrieval.prf import with_prf

    if isinstance(ret, CachedIndexRetriever):
        ret = ret.for_dataset(ds)
    if not isinstance(ret, IndexRetriever):
        raise HeronError(f"--prf needs an index-backed retriever (splade, dense, an index folder); "
                         f"{ret.describe().get('name', ret.name)!r} is not one")
    return with_prf(ret, method, **options)


def _self_hits(ds, split: str):
    """Whether to drop self-hits on ``ds`` (forced by a flag, else found in the data); says so when found."""
    hits = ds.self_hits(split)
    if hits.found and hits.removed:
        typer.echo(f"{ds.name}: self-hits likely ({hits.found} of {hits.total} {split} query ids are corpus ids "
                   f"holding the query's text): dropping a retrieved document whose id is the query id, as "
                   f"BEIR does; --keep-self-hits keeps them")
    elif hits.found:
        typer.echo(f"{ds.name}: {hits.found} of {hits.total} {split} query ids are corpus ids holding the "
                   f"query's text; self-hits kept (--remove-self-hits drops them)")
    return hits


def _cost_row(ret, dataset: str, queries: dict[str, str]) -> dict:
    """The retrieval cost of an inverted-index retriever on ``queries`` (before any PRF)."""
    from heron.eval.cost import index_cost

    base = getattr(ret, "base", ret)
    if not hasattr(getattr(base, "index", None), "df"):
        raise HeronError(f"--cost: {ret.describe()['name']!r} is not a heron inverted index (SPLADE, CSR, BM25)")
    return {"dataset": dataset, "retriever": result_name(ret.describe()), **index_cost(base, queries.values())}


def _check_numeric_options(retriever: list[str], index, *, fusion, fusion_weight, rrf_k, k1, b, threads, engine,
                           prf, prf_docs, prf_alpha, prf_beta, prf_terms):
    """Every numeric option of ``heron eval`` checked (finite, in range: :mod:`heron.retrieval.options`) and
    every option refused where no retriever of the command takes it; the fusion and BM25 options as checked."""
    from heron.retrieval import accepted_options
    from heron.retrieval.options import BM25Options, FusionOptions, PRFOptions

    members = [part.strip() for name in retriever for part in name.split("+")]
    if not any("+" in name for name in retriever):
        refuse_unused({"--fusion": fusion, "--fusion-weight": fusion_weight, "--rrf-k": rrf_k},
                      "to a fused retriever (members joined by '+', e.g. -r bm25+splade)")
    if fusion == "linear":
        refuse_unused({"--rrf-k": rrf_k}, "to --fusion rrf")
    fusion_options = checked_flags(FusionOptions, method=("--fusion", fusion), rrf_k=("--rrf-k", rrf_k),
                                   weights=("--fusion-weight", fusion_weight or None))
    if not any("k1" in accepted_options(m) for m in members):
        refuse_unused({"--k1": k1, "--b": b}, "to the bm25 and bm25-lucene retrievers")
    bm25_options = checked_flags(BM25Options, k1=("--k1", k1), b=("--b", b))
    if not index and not any("threads" in accepted_options(m) for m in members):
        refuse_unused({"--threads": threads}, "to index-backed retrievers and bm25-lucene (bm25 scores on one thread)")
    if not index:
        refuse_unused({"--engine": None if engine == "heron" else engine}, "to --index")
    if not prf:
        refuse_unused({"--prf-docs": prf_docs, "--prf-alpha": prf_alpha, "--prf-beta": prf_beta,
                       "--prf-terms": prf_terms}, "with --prf")
    elif prf.strip() != "rocchio":
        refuse_unused({"--prf-alpha": prf_alpha, "--prf-beta": prf_beta}, "to --prf rocchio")
    checked_flags(PRFOptions, docs=("--prf-docs", prf_docs), alpha=("--prf-alpha", prf_alpha),
                  beta=("--prf-beta", prf_beta), terms=("--prf-terms", prf_terms))
    return fusion_options, bm25_options


def _check_results_dir(results_dir: Path) -> None:
    """``--results-dir`` made (or found) up front, before any slow work: a file there is a one-line error."""
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise HeronError(f"--results-dir {results_dir}: exists and is not a directory") from None
    except OSError as exc:
        raise HeronError(f"--results-dir {results_dir}: cannot create it ({exc.strerror}: {exc.filename})") from None
    if not os.access(results_dir, os.W_OK | os.X_OK):
        raise HeronError(f"--results-dir {results_dir}: not writable")


@with_search_keys
def eval_command(
    dataset: Annotated[list[str], typer.Option("--dataset", "-d", metavar="NAME", help="BEIR name (resolved via "
                                               "$HERON_DATA, the cache, then download) or a dataset folder; "
                                               "repeatable.")],
    retriever: Annotated[list[str], typer.Option("--retriever", "-r", metavar="NAME", help="Retriever name; "
                                                 "repeatable. Known: " + ", ".join(RETRIEVERS) + ", or an index "
                                                 "directory; join members with '+' to fuse them (splade+dense). "
                                                 "Default: bm25 when no --index.")] = None,
    index: Annotated[list[Path] | None, typer.Option("--index", "-i", metavar="DIR", help="Index directory from heron "
                                                     "build-index, searched with its own query encoder, or a "
                                                     "milvus:// address of one exported member; "
                                                     "repeatable.")] = None,
    search: Annotated[list[str] | None, typer.Option("--search", "-s", metavar="KEY=VALUE",
                                                     help=SEARCH_HELP)] = None,
    threads: Annotated[int | None, typer.Option(min=1, metavar="N", help="Search threads (default: all cores).")]
    = None,
    fusion: Annotated[str | None, typer.Option(help="How '+' retrievers are fused: rrf (the default) or linear "
                                               "(min-max).")] = None,
    fusion_weight: Annotated[list[float] | None, typer.Option(metavar="W", help="Weight of each fused member, in "
                                                              "order; repeatable (default: equal).")] = None,
    rrf_k: Annotated[float | None, typer.Option(help="RRF constant k (default 60).")] = None,
    engine: Annotated[str, typer.Option(help="Serve --index with heron's kernels (heron) or with a Lucene "
                                        "impact index built from it (lucene; needs the lucene extra).")] = "heron",
    split: Annotated[str, typer.Option(help="Qrels split to evaluate on.")] = "test",
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=10000, metavar="N",
                                   help="Documents retrieved per query.")] = 1000,
    metric: Annotated[list[str] | None, typer.Option("--metric", "-m", metavar="NAME", help="Metrics to show; "
                                                        "repeatable. Known: " + ", ".join(METRICS) + ".")] = None,
    results_dir: Annotated[Path, typer.Option(help="Where runs, metrics JSON and results.md go.")] = Path("results"),
    remove_hits: Annotated[bool, typer.Option(
        "--remove-self-hits", help="Drop a retrieved doc whose id is the query id (BEIR's ArguAna and Quora "
        "rule). Default: on when the data shows it (most query ids are corpus ids holding the query's text).")
    ] = False,
    keep_hits: Annotated[bool, typer.Option("--keep-self-hits", help="Never drop self-hits, even when found.")
                         ] = False,
    k1: Annotated[float | None, typer.Option(help="BM25 k1 ≥ 0 (bm25, bm25-lucene; default 0.9).")] = None,
    b: Annotated[float | None, typer.Option(help="BM25 b in [0, 1] (bm25, bm25-lucene; default 0.4).")] = None,
    prf: Annotated[str | None, typer.Option(help="Pseudo-relevance feedback on every index-backed retriever: "
                                            "rocchio, average, or model:PATH (heron train prf).")] = None,
    prf_docs: Annotated[int | None, typer.Option(min=1, metavar="N", help="PRF: feedback documents (default 3, or the "
                                                 "model's).")] = None,
    prf_alpha: Annotated[float | None, typer.Option(help="Rocchio: weight of the query (default 1).")] = None,
    prf_beta: Annotated[float | None, typer.Option(help="Rocchio: weight of the feedback centroid (default "
                                                   "0.5).")] = None,
    prf_terms: Annotated[int | None, typer.Option(min=0, metavar="N", help="PRF on sparse indexes: weights kept "
                                                  "per revised query (default 100; 0 = all).")] = None,
    cost: Annotated[bool, typer.Option("--cost/--no-cost", help="Also report each sparse index's retrieval cost: "
                                       "terms per query and document, postings traversed per query, FLOPS "
                                       "(written to cost.json).")] = False,
) -> None:
    """Evaluate retrievers on datasets: prints a results table, writes runs and metrics.

    With two or more retrievers, each is compared with the first by a paired
    t-test and a Wilcoxon signed-rank test over per-query nDCG@10.

    Results go to RESULTS_DIR/DATASET/NAME/ (run.trec, metrics.json, which
    records the retriever and whether self-hits were dropped). NAME is
    MODEL[-SEARCH][+prf-METHOD-kDOCS...]: MODEL is the index's model, the same
    for -r splade and -i an index of splade-tiny (splade-tiny); SEARCH a
    non-default search (approx-recall95); PRF settings other than the
    defaults are spelled out (splade-tiny+prf-rocchio-k3-a1-b0.8). Fused
    retrievers join their members' names with '+', then -rrf or -linear.

    Self-hits (a retrieved document whose id is the query id): dropped, as
    BEIR does for ArguAna and Quora, when at least half the evaluated
    query ids are corpus ids holding the query's text, whatever the folder
    is called; a line says so. --keep-self-hits or --remove-self-hits
    decides instead.

    {search_keys}
    It applies to every --index. --threads stays a top-level option: every
    retriever and engine takes it.

    Examples:
      heron eval -d scifact -r bm25 -r bm25-lucene
      heron eval -d scifact -i indexes/scifact-splade-tiny \\
          --search mode=approx,preset=recall95
      heron eval -d scifact -r bm25+splade+dense --fusion rrf
      heron eval -d scifact -i indexes/scifact-minilm-flat -s truncate_dims=32
      heron eval -d scifact -i indexes/scifact-splade-tiny --cost
      heron eval -d scifact -i indexes/scifact-splade-tiny \\
          --prf rocchio --prf-docs 3
      heron eval -d scifact -i indexes/scifact-splade-tiny \\
          --prf model:checkpoints/scifact-prf-lol
    """
    metrics = _check_metrics(metric or DEFAULT_METRICS)
    if remove_hits and keep_hits:
        raise HeronError("--remove-self-hits and --keep-self-hits contradict each other: give one")
    self_hits = True if remove_hits else False if keep_hits else None
    retriever = list(retriever or ([] if index else ["bm25"]))
    indexes = []
    if fusion not in (None, "rrf", "linear"):
        raise HeronError(f"unknown fusion {fusion!r} (choose rrf or linear)")
    fusion_options, bm25_options = _check_numeric_options(
        retriever, index, fusion=fusion, fusion_weight=fusion_weight, rrf_k=rrf_k, k1=k1, b=b, threads=threads,
        engine=engine, prf=prf, prf_docs=prf_docs, prf_alpha=prf_alpha, prf_beta=prf_beta, prf_terms=prf_terms)
    _check_results_dir(results_dir)
    search_options = parse_search(search)
    if search_options and (not index or engine != "heron"):
        raise HeronError("--search applies to --index searched by heron's engine (named retrievers and "
                         "--engine lucene search with their defaults)")
    if index:
        from heron.retrieval import open_index_retriever

        if engine == "lucene":
            from heron.retrieval.lucene_impact import LuceneImpactRetriever

            indexes = [LuceneImpactRetriever(p, threads=threads) for p in index]
        elif engine == "heron":
            indexes = [open_index_retriever(p, threads=threads, **search_options) for p in index]
        else:
            raise HeronError(f"unknown engine {engine!r} (choose heron or lucene)")
    for name in retriever:  # validate every name before any slow work
        check_retriever_spec(name)
    prf_options = None
    if prf:
        from heron.retrieval.prf import parse_prf, with_prf

        prf_method = parse_prf(prf)  # a bad spec or model folder fails before any slow work
        prf_options = {"docs": prf_docs, "alpha": prf_alpha, "beta": prf_beta, "terms": prf_terms}
        indexes = [with_prf(ix, prf_method, **prf_options) for ix in indexes]
    command = "heron " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    rows, tests, costs = [], [], []
    for ds_name in dataset:
        ds = load_dataset(ds_name, remove_self_hits=self_hits)
        queries, qrels = ds.queries(split), ds.qrels(split)
        hits = _self_hits(ds, split)
        per_ret, used = [], set()
        chosen = [(name, None) for name in retriever] + [(ix.describe()["name"], ix) for ix in indexes]
        for name, ret in chosen:
            if ret is None:
                ret = get_retriever(name, fusion=fusion_options.method, fusion_weights=fusion_options.weights,
                                    rrf_k=fusion_options.rrf_k, depth=max(k, 1000), k1=bm25_options.k1,
                                    b=bm25_options.b, threads=threads)
                if prf_options is not None:
                    ret = _with_prf_for_dataset(ret, ds, prf_method, prf_options)
            start = time.perf_counter()
            run = ret.retrieve(ds, queries, k=k)
            info = ret.describe()
            label = result_name(info)
            if label in used:  # the same model twice (say -r splade and -i an index of splade-tiny)
                label = f"{label}@{Path(info['index']).name}" if info.get("index") else f"{label}#{len(used) + 1}"
            used.add(label)
            info = {**info, "name": label, **({"described_as": info["name"]} if info.get("name") != label else {})}
            seconds = time.perf_counter() - start
            if hits.removed:
                run = remove_self_hits(run)
            result = evaluate(run, qrels, metrics)
            if cost:
                costs.append(_cost_row(ret, ds.name, queries))
            save_result(results_dir, ds.name, split, info, run, result, seconds, command,
                        self_hits=hits.to_dict())
            rows.append({"dataset": ds.name, "retriever": info, "num_queries": result.num_queries,
                         "mean": result.mean, "seconds": seconds})
            per_ret.append((label, result))
        base_name, base = per_ret[0]
        for name, result in per_ret[1:]:
            m = "ndcg@10" if "ndcg@10" in metrics else metrics[0]
            tests.append((ds.name, m, f"{base_name} → {name}", paired_test(base.per_query[m], result.per_query[m])))
    print_table(results_table(rows, metrics))
    if tests:
        print_table(significance_table(tests))
    if costs:
        from heron.storage import write_json_atomic

        print_table(cost_table(costs))
        Path(results_dir).mkdir(parents=True, exist_ok=True)
        write_json_atomic(Path(results_dir) / "cost.json", costs)
    typer.echo(f"runs and metrics written under {results_dir}/ (summary: {results_dir}/results.md)")


def compare_command(
    run_a: Annotated[Path, typer.Argument(help="Baseline TREC run file (A).")],
    run_b: Annotated[Path, typer.Argument(help="Other TREC run file (B).")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset whose qrels judge both runs.")],
    split: Annotated[str, typer.Option(help="Qrels split.")] = "test",
    metric: Annotated[list[str] | None, typer.Option("--metric", "-m", help="Metrics; repeatable.")] = None,
) -> None:
    """Paired significance test (t-test and Wilcoxon) between two run files, per metric.

    Example: heron compare results/scifact/bm25/run.trec results/scifact/bm25-lucene/run.trec -d scifact
    """
    metrics = _check_metrics(metric or ["ndcg@10", "recall@100"])
    ds = load_dataset(dataset)
    qrels = ds.qrels(split)
    runs = [read_trec_run(run_a), read_trec_run(run_b)]
    if _self_hits(ds, split).removed:
        runs = [remove_self_hits(r) for r in runs]
    res_a, res_b = (evaluate(r, qrels, metrics) for r in runs)
    pair = f"{run_a.parent.name or run_a.name} → {run_b.parent.name or run_b.name}"
    tests = [(ds.name, m, pair, paired_test(res_a.per_query[m], res_b.per_query[m])) for m in metrics]
    print_table(significance_table(tests))
