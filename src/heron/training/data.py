"""Training pairs from a dataset's *train* qrels — never its test (or dev) judgments.

:func:`training_pairs` refuses an evaluation split and checks that no query id of the dataset's
``test`` (and ``dev``) qrels is among the training queries, so a trainer cannot see an evaluation
query even when a split file is mislabelled. Every trainer records the training query ids it used
(``training.json`` beside a checkpoint) so the guarantee can be checked afterwards.

Example::

    >>> pairs = training_pairs(load_dataset("scifact"))                   # doctest: +SKIP
    >>> len(pairs.pairs), len(pairs.query_ids)                            # doctest: +SKIP
    (919, 809)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from heron.errors import HeronError

EVAL_SPLITS = ("test", "dev")


@dataclass
class TrainingPairs:
    """``pairs``: (query id, positive doc id) with grade > 0; ``queries``: their texts."""

    dataset: str
    split: str
    pairs: list[tuple[str, str]]
    queries: dict[str, str]

    @property
    def query_ids(self) -> list[str]:
        return sorted(self.queries)

    def summary(self) -> dict:
        digest = hashlib.sha256("\n".join(self.query_ids).encode()).hexdigest()
        return {"dataset": self.dataset, "split": self.split, "num_pairs": len(self.pairs),
                "num_queries": len(self.queries), "query_ids_sha256": digest}


def evaluation_query_ids(dataset) -> set[str]:
    """Query ids of every evaluation split the dataset has (test, dev)."""
    held = set()
    for split in EVAL_SPLITS:
        if split in dataset.splits():
            held |= set(dataset.qrels(split))
    return held


def training_pairs(dataset, split: str = "train") -> TrainingPairs:
    """Positive (query, document) pairs of ``split`` (default ``train``); evaluation splits are refused."""
    if split in EVAL_SPLITS:
        raise HeronError(f"{dataset.name}: refusing to train on the {split!r} qrels (evaluation data); "
                         f"use the train split")
    if split not in dataset.splits():
        raise HeronError(f"{dataset.name}: no {split!r} qrels to train on (available: "
                         f"{', '.join(dataset.splits()) or 'none'})")
    qrels = dataset.qrels(split)
    held = evaluation_query_ids(dataset)
    leaked = sorted(set(qrels) & held)
    if leaked:
        raise HeronError(f"{dataset.qrels_path(split)}: {len(leaked)} training queries also appear in the "
                         f"evaluation qrels (first: {leaked[0]!r}); refusing to train")
    texts = dataset.queries(split)
    pairs = [(qid, did) for qid, docs in qrels.items() for did, grade in docs.items() if grade > 0]
    used = {qid for qid, _ in pairs}
    return TrainingPairs(dataset.name, split, pairs, {qid: texts[qid] for qid in used})


# -- hard negatives ----------------------------------------------------------------------------------------
def hard_negatives(dataset, pairs: TrainingPairs, depth: int, retriever: str = "bm25") -> dict[str, list[str]]:
    """Per training query, the top-``depth`` documents of ``retriever`` that are not judged relevant to it.

    ``retriever``: ``bm25`` (heron's native BM25), ``splade`` (splade-tiny on heron's inverted index,
    built into the cache on first use) or the folder of an index of ``dataset`` (``heron build-index``).
    Only the *training* queries are searched.
    """
    from heron.retrieval import get_retriever

    if depth < 1:
        raise HeronError(f"hard-negative depth must be ≥ 1, got {depth}")
    run = get_retriever(retriever).retrieve(dataset, pairs.queries, k=depth)
    judged: dict[str, set[str]] = {}
    for qid, did in pairs.pairs:
        judged.setdefault(qid, set()).add(did)
    return {qid: [d for d in run.get(qid, {}) if d not in judged.get(qid, set())] for qid in pairs.queries}


# -- MS MARCO-style triples ----------------------------------------------------------------------------------
@dataclass
class Triple:
    query: str
    positive: str
    negative: str


def read_triples(path, limit: int | None = None, held_out: set[str] | None = None) -> list[Triple]:
    """``query \\t positive passage \\t negative passage`` rows (MS MARCO ``triples.train.small.tsv``, ``.gz`` too).

    ``held_out``: texts of evaluation queries (:func:`evaluation_query_texts`); a triple whose query is
    one of them is refused, so a mislabelled file cannot leak evaluation queries into training.
    """
    import gzip
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise HeronError(f"{path}: triples file does not exist")
    held = {_norm(t) for t in held_out or ()}
    opener = gzip.open if path.suffix == ".gz" else open
    triples: list[Triple] = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3 or not all(p.strip() for p in parts):
                raise HeronError(f"{path}:{lineno}: expected 3 tab-separated fields (query, positive, negative), "
                                 f"got {len(parts)}")
            if held and _norm(parts[0]) in held:
                raise HeronError(f"{path}:{lineno}: the query is an evaluation query ({parts[0][:60]!r}); "
                                 f"refusing to train on it")
            triples.append(Triple(*parts))
            if limit is not None and len(triples) >= limit:
                break
    if not triples:
        raise HeronError(f"{path}: no triples")
    return triples


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def evaluation_query_texts(dataset) -> set[str]:
    """Texts of every query with evaluation (test / dev) judgments in ``dataset``."""
    texts = dataset.all_queries()
    return {texts[q] for q in evaluation_query_ids(dataset) if q in texts}


# -- teacher scores ---------------------------------------------------------------------------------------------
def teacher_scores(path, pairs: TrainingPairs) -> dict[str, dict[str, float]]:
    """Teacher scores for the *training* queries, from a TREC run file (``qid Q0 docid rank score tag``).

    Queries of the run that are not training queries are ignored (a teacher run may cover test queries
    too: they never reach training).
    """
    from heron.eval import read_trec_run

    run = read_trec_run(path)
    wanted = set(pairs.queries)
    scores = {qid: docs for qid, docs in run.items() if qid in wanted}
    if not scores:
        raise HeronError(f"{path}: the run scores none of the {len(wanted)} training queries")
    return scores


def check_no_evaluation_queries(dataset, query_ids) -> None:
    """Raise unless none of ``query_ids`` has evaluation (test / dev) judgments: every trainer asserts it."""
    leaked = sorted(set(query_ids) & evaluation_query_ids(dataset))
    if leaked:
        raise HeronError(f"{dataset.name}: {len(leaked)} training queries have evaluation judgments "
                         f"(first: {leaked[0]!r}); refusing to train")
