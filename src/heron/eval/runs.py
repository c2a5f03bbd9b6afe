"""Runs: ``{query_id: {doc_id: score}}``, with TREC run-file reading and writing.

TREC run format, one line per retrieved document::

    query-id  Q0  doc-id  rank  score  tag
"""

from __future__ import annotations

import math
from pathlib import Path

from heron.errors import InputFormatError
from heron.eval.datasets import text_rows
from heron.storage import write_text_atomic

#: a run: ``{query_id: {doc_id: score}}``, what retrievers produce, fusion combines and metrics score
Run = dict[str, dict[str, float]]

__all__ = ["Run", "ranked", "read_trec_run", "remove_self_hits", "truncate", "write_trec_run"]


def ranked(docs: dict[str, float]) -> list[tuple[str, float]]:
    """Documents of one query in rank order: score descending, then doc id descending (trec_eval's order)."""
    return sorted(docs.items(), key=lambda item: (item[1], item[0]), reverse=True)


def truncate(run: Run, k: int) -> Run:
    """Keep the top ``k`` documents of every query (trec_eval's tie order)."""
    return {qid: dict(ranked(docs)[:k]) for qid, docs in run.items()}


def remove_self_hits(run: Run) -> Run:
    """Drop a retrieved document whose id equals the query id (BEIR's ``ignore_identical_ids``)."""
    return {qid: {d: s for d, s in docs.items() if d != qid} for qid, docs in run.items()}


def write_trec_run(run: Run, path: str | Path, tag: str = "heron") -> Path:
    """Write ``run`` as a TREC run file (queries in id order, documents in rank order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "".join(f"{qid} Q0 {docid} {rank} {score:.6f} {tag}\n" for qid in sorted(run)
                                     for rank, (docid, score) in enumerate(ranked(run[qid]), start=1)))
    return path


def read_trec_run(path: str | Path) -> Run:
    """Read a TREC run file; a malformed line raises an error naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise InputFormatError(path, None, "run file does not exist")
    run: Run = {}
    for lineno, parts in text_rows(path, tabs=False):
        if len(parts) != 6:
            raise InputFormatError(path, lineno, f"expected 6 fields (qid Q0 docid rank score tag), got {len(parts)}")
        try:
            score = float(parts[4])
        except ValueError:
            raise InputFormatError(path, lineno, f"field 'score' is not a number: {parts[4]!r}") from None
        if not math.isfinite(score):
            raise InputFormatError(path, lineno, f"field 'score' must be a finite number, got {parts[4]!r}")
        qid, docid = parts[0], parts[2]
        docs = run.setdefault(qid, {})
        if docid in docs:
            first = next(n for n, row in text_rows(path, tabs=False) if row[0] == qid and row[2] == docid)
            raise InputFormatError(path, lineno, f"field 'docid': document {docid!r} retrieved twice for query "
                                                 f"{qid!r} (first on line {first})")
        docs[docid] = score
    return run
