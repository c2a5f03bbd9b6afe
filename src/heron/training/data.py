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
