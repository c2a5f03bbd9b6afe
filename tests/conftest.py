"""Shared fixtures: real BEIR data (via $HERON_DATA, as CI sets it) and a clean heron cache per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_BEIR = REPO.parent / "shared" / "data" / "beir"

# Tests find BEIR datasets by name as users do: through $HERON_DATA (CI exports it; default: ../shared).
if not os.environ.get("HERON_DATA") and SHARED_BEIR.is_dir():
    os.environ["HERON_DATA"] = str(SHARED_BEIR)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def scifact():
    from heron.eval import load_dataset

    return load_dataset("scifact")


@pytest.fixture(scope="session")
def nfcorpus():
    from heron.eval import load_dataset

    return load_dataset("nfcorpus")
