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


@pytest.fixture
def one_torch_thread():
    """Run a test with torch on one thread (small training runs are faster so, and steadier), then restore."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def scifact():
    from heron.eval import load_dataset

    return load_dataset("scifact")


@pytest.fixture(scope="session")
def nfcorpus():
    from heron.eval import load_dataset

    return load_dataset("nfcorpus")


def make_tiny_beir(root: Path, num_docs: int = 60, num_train: int = 30, num_test: int = 12) -> Path:
    """A small BEIR folder cut from SciFact: each query is a document's title, relevant to that document.

    Train queries come from the first documents and test queries from later ones, with distinct ids.
    """
    import json

    from heron.eval import load_dataset

    src = load_dataset("scifact")
    docs = []
    for doc in src.iter_corpus():
        if doc.title:
            docs.append(doc)
        if len(docs) == num_docs:
            break
    root.mkdir(parents=True, exist_ok=True)
    (root / "qrels").mkdir(exist_ok=True)
    with open(root / "corpus.jsonl", "w") as f:
        for d in docs:
            f.write(json.dumps({"_id": d.id, "title": "", "text": d.text}) + "\n")
    with open(root / "queries.jsonl", "w") as f:
        for i, d in enumerate(docs[:num_train + num_test]):
            f.write(json.dumps({"_id": f"q{i}", "text": d.title}) + "\n")
    for split, rows in (("train", range(num_train)), ("test", range(num_train, num_train + num_test))):
        with open(root / "qrels" / f"{split}.tsv", "w") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for i in rows:
                f.write(f"q{i}\t{docs[i].id}\t1\n")
    return root


def make_writable(root: Path) -> Path:
    """Give write permission back to ``root`` and every file under it (heron publishes files read-only), for
    tests that damage or edit an index, model or checkpoint on purpose."""
    import stat

    for path in [Path(root), *Path(root).rglob("*")]:
        if path.is_file():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    return Path(root)


@pytest.fixture(scope="session")
def tiny_beir(tmp_path_factory):
    return make_tiny_beir(tmp_path_factory.mktemp("tiny") / "tiny")
