"""The runnable examples in module docstrings run: those that need no model or dataset, and the package's
own (BM25 on SciFact, found through $HERON_DATA like every dataset test)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["heron.multivector.muvera", "heron.multivector.crisp", "heron.multivector.maxsim", "heron.retrieval.fusion",
           "heron.indexing.faiss_index", "heron.retrieval.encoders.csr", "heron.indexing.shards",
           "heron.indexing.docstore", "heron.training.regularizers", "heron.training.losses", "heron.retrieval.prf",
           "heron.training.prf",
           "heron.server.scheduler", "heron.server.health"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result


def test_package_example():
    import heron

    # NORMALIZE_WHITESPACE: BM25's progress display leaves an empty line when output is not a terminal
    result = doctest.testmod(heron, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 5 and result.failed == 0, result
