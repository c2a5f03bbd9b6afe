"""Saving and showing evaluation results: run files, metrics JSON, Markdown and rich tables.

Layout under a results directory (default ``./results``)::

    results/<dataset>/<retriever>/run.trec        the TREC run
    results/<dataset>/<retriever>/metrics.json    means, per-query values, what produced them
    results/results.md                            one Markdown table over every metrics.json below
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from heron import __version__
from heron.eval.metrics import EvalResult
from heron.eval.runs import Run, write_trec_run
from heron.eval.significance import PairedTest
from heron.storage import write_json_atomic, write_text_atomic

LABELS = {"ndcg@10": "nDCG@10", "recall@100": "R@100", "recall@1000": "R@1k", "mrr@10": "MRR@10", "map": "MAP"}


#: PRF settings left out of a result name when they have these values (the ``--prf-*`` defaults)
_PRF_DEFAULTS = {"alpha": 1.0, "beta": 0.5, "terms": 100}


def result_name(retriever: dict) -> str:
    """The name a retriever's results go by (folder, tables, ``results.md``), from its ``describe()``.

    The rule: ``MODEL[-SEARCH][+prf-METHOD-kDOCS[-aALPHA-bBETA][-tTERMS]]``, fused retrievers as their members'
    names joined by ``+`` then ``-rrf`` or ``-linear``.

    - ``MODEL`` is the model the index was built with (``splade-tiny``, ``minilm``), the same whether the
      index comes from a named retriever (``-r splade``, ``-r dense``) or a folder (``-i indexes/…``); a
      retriever with no index is its own name (``bm25``, ``bm25-lucene``).
    - ``SEARCH`` says a non-default search (``approx-recall95``, ``taat``), as the index reports it.
    - PRF settings are shown only where they differ from the ``--prf-*`` defaults (alpha 1, beta 0.5,
      terms 100): ``splade-tiny+prf-rocchio-k3``, ``splade-tiny+prf-rocchio-k5-a1-b0.8``.

    >>> result_name({"name": "splade", "index_config": {"encoder": {"type": "splade", "model": "splade-tiny"}}})
    'splade-tiny'
    >>> result_name({"name": "splade-tiny-prf-rocchio3-a1-b0.5",
    ...              "prf": {"method": "rocchio", "docs": 3, "alpha": 1.0, "beta": 0.5, "terms": 100}})
    'splade-tiny+prf-rocchio-k3'
    """
    if retriever.get("members"):
        fused = "+".join(result_name(m) for m in retriever["members"])
        return f"{fused}-{retriever.get('fusion', 'rrf')}"
    name = str(retriever.get("name", "retriever"))
    model = (retriever.get("index_config") or {}).get("encoder", {}).get("model")
    if model:
        name = str(model)
    prf = retriever.get("prf")
    if not prf:
        return name
    base = name.rsplit("-prf-", 1)[0]
    label = f"{base}+prf-{prf.get('method', 'prf')}-k{prf.get('docs')}"
    if prf.get("method") == "rocchio" and (prf.get("alpha"), prf.get("beta")) != (_PRF_DEFAULTS["alpha"],
                                                                                  _PRF_DEFAULTS["beta"]):
        label += f"-a{prf['alpha']:g}-b{prf['beta']:g}"
    if prf.get("terms") not in (None, _PRF_DEFAULTS["terms"]):
        label += f"-t{prf['terms']}"
    return label


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.+@" else "_" for c in name)


def save_result(results_dir: Path, dataset: str, split: str, retriever: dict, run: Run, result: EvalResult,
                seconds: float, command: str | None = None, self_hits: dict | None = None) -> Path:
    """Write the run, the metrics JSON and refresh ``results.md``; returns the result folder.

    ``self_hits`` (``{"removed": bool, "reason": str}``, :class:`heron.eval.datasets.SelfHits`) records
    whether the run had self-hits dropped before scoring, and why."""
    folder = Path(results_dir) / _safe(dataset) / _safe(retriever["name"])
    folder.mkdir(parents=True, exist_ok=True)
    write_trec_run(run, folder / "run.trec", tag=_safe(retriever["name"]))
    record = {
        "dataset": dataset, "split": split, "retriever": retriever, "seconds": round(seconds, 3),
        "heron_version": __version__, "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command,
        **({"self_hits": self_hits} if self_hits is not None else {}), **result.to_dict(),
    }
    write_json_atomic(folder / "metrics.json", record)
    write_markdown_summary(Path(results_dir))
    return folder


def load_records(results_dir: Path) -> list[dict]:
    records = []
    for path in sorted(Path(results_dir).glob("*/*/metrics.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return records


def markdown_table(rows: list[dict], metrics: list[str]) -> str:
    head = ["dataset", "retriever", "queries", *[LABELS.get(m, m) for m in metrics]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        vals = [f"{r['mean'][m]:.4f}" if m in r["mean"] else "" for m in metrics]
        lines.append("| " + " | ".join([r["dataset"], r["retriever"]["name"], str(r["num_queries"]), *vals]) + " |")
    return "\n".join(lines) + "\n"


def write_markdown_summary(results_dir: Path) -> Path:
    records = load_records(results_dir)
    metrics = [m for m in LABELS if any(m in r["mean"] for r in records)]
    path = Path(results_dir) / "results.md"
    write_text_atomic(path, "# heron results\n\n" + markdown_table(records, metrics))
    return path


def results_table(rows: list[dict], metrics: list[str], title: str = "heron eval") -> Table:
    table = Table(title=title)
    for col in ("dataset", "retriever", "queries"):
        table.add_column(col)
    for m in metrics:
        table.add_column(LABELS.get(m, m), justify="right")
    table.add_column("time (s)", justify="right")
    for r in rows:
        table.add_row(r["dataset"], r["retriever"]["name"], str(r["num_queries"]),
                      *[f"{r['mean'][m]:.4f}" for m in metrics], f"{r['seconds']:.1f}")
    return table


def significance_table(tests: list[tuple[str, str, str, PairedTest]]) -> Table:
    table = Table(title="paired significance (B vs A, two-sided)")
    for col in ("dataset", "metric", "A → B", "A", "B", "Δ", "t-test p", "Wilcoxon p"):
        table.add_column(col, justify="right" if col in {"A", "B", "Δ", "t-test p", "Wilcoxon p"} else "left")
    for dataset, metric, pair, t in tests:
        table.add_row(dataset, LABELS.get(metric, metric), pair, f"{t.mean_a:.4f}", f"{t.mean_b:.4f}",
                      f"{t.delta:+.4f}", f"{t.t_pvalue:.3g}", f"{t.wilcoxon_pvalue:.3g}")
    return table


def cost_table(rows: list[dict]) -> Table:
    """Rows of ``{"dataset", "retriever", **sparse_cost}`` (:mod:`heron.eval.cost`)."""
    table = Table(title="retrieval cost (sparse indexes)")
    for col in ("dataset", "retriever", "query terms", "doc terms", "postings / query", "FLOPS"):
        table.add_column(col, justify="left" if col in ("dataset", "retriever") else "right")
    for r in rows:
        table.add_row(r["dataset"], r["retriever"], f"{r['query_terms']:.1f}", f"{r['doc_terms']:.1f}",
                      f"{r['postings']:,.0f}", f"{r['flops']:.3f}")
    return table


def print_table(table: Table) -> None:
    """Print a table whole: a terminal's width when there is one, else 160 columns (logs, CI)."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table)
