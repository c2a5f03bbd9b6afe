"""The runnable examples in module docstrings run (those that need no model or dataset)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["heron.retrieval.muvera", "heron.retrieval.crisp", "heron.retrieval.maxsim", "heron.retrieval.fusion",
           "heron.indexing.faiss_index", "heron.retrieval.encoders.csr", "heron.indexing.shards",
           "heron.indexing.docstore", "heron.training.regularizers", "heron.training.losses", "heron.retrieval.prf",
           "heron.training.prf"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result
