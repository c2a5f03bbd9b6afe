"""Evaluation: datasets, runs, trec_eval metrics, significance tests and result reports."""

from heron.eval.datasets import Dataset, Document, load_dataset, open_dataset
from heron.eval.metrics import DEFAULT_METRICS, METRICS, EvalResult, evaluate
from heron.eval.runs import read_trec_run, remove_self_hits, write_trec_run
from heron.eval.significance import PairedTest, paired_test

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "Dataset",
    "Document",
    "EvalResult",
    "PairedTest",
    "evaluate",
    "load_dataset",
    "open_dataset",
    "paired_test",
    "read_trec_run",
    "remove_self_hits",
    "write_trec_run",
]
