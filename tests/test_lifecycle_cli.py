"""``heron index add | delete | merge | info`` end to end on a small BM25 index: each change one commit, the
searches after it equal a build with the same frozen statistics, mistakes one line and exit code 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import heron


def _heron(*args):
    return subprocess.run([sys.executable, "-m", "heron", *map(str, args)], capture_output=True, text=True,
                          env=dict(os.environ), timeout=300)


def _invoke(*args) -> str:
    from heron.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def _one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def parts(tmp_path_factory, tiny_beir):
    from conftest import make_writable

    from heron.build import build_index, make_config

    tmp = tmp_path_factory.mktemp("cli")
    docs = [json.loads(line) for line in open(tiny_beir / "corpus.jsonl", encoding="utf-8")]
    old = tmp / "old"
    old.mkdir()
    with open(old / "corpus.jsonl", "w") as handle:
        handle.writelines(json.dumps(d) + "\n" for d in docs[:40])
    shutil.copy(tiny_beir / "queries.jsonl", old / "queries.jsonl")
    shutil.copytree(tiny_beir / "qrels", old / "qrels")
    classic = build_index(make_config({"dataset": str(old), "output": str(tmp / "bm25"), "encoder": {"type": "bm25"}}),
                          progress=False)
    new = tmp / "new.jsonl"
    with open(new, "w") as handle:
        handle.writelines(json.dumps(d) + "\n" for d in docs[40:])
    return make_writable(classic), docs, new


def _fresh(classic: Path, tmp: Path) -> Path:
    from conftest import make_writable

    target = tmp / "index"
    shutil.copytree(classic, target)
    return make_writable(target)


def test_add_delete_merge_info(parts, tmp_path):
    classic, docs, new = parts
    index = _fresh(classic, tmp_path)
    info = json.loads(_invoke("index", "info", index, "--json"))
    assert (info["segmented"], info["generation"], info["live_docs"]) == (False, 0, 40)
    out = _invoke("index", "add", index, "--corpus", new, "--quiet")
    assert f"added {len(docs) - 40} documents" in out
    info = json.loads(_invoke("index", "info", index, "--json"))
    assert info["segmented"] and info["live_docs"] == len(docs) and len(info["segments"]) == 2
    first = info["generation"]
    ids = tmp_path / "gone.txt"
    ids.write_text(f"{docs[0]['_id']}\n\n{docs[41]['_id']}\n")
    assert "deleted 2 documents" in _invoke("index", "delete", index, "--ids", ids)
    assert "deleted 1 documents (1 not in the index)" in _invoke("index", "delete", index, docs[1]["_id"], "nope")
    edited = tmp_path / "edited.jsonl"
    edited.write_text(json.dumps({"_id": docs[2]["_id"], "title": "Edited", "text": "telomere stem cells"}) + "\n")
    _invoke("index", "add", index, "--corpus", edited, "--upsert", "-q")
    info = json.loads(_invoke("index", "info", index, "--json"))
    assert info["generation"] == first + 3 and info["live_docs"] == len(docs) - 3
    assert info["deleted_docs"] == 4  # two, one, and the upserted document's older copy
    table = _invoke("index", "info", index)
    assert "bytes/posting" in table and f"generation {first + 3}" in table
    searched = heron.Index.open(index).search("telomere stem cells", k=100)
    assert searched[0].doc_id == docs[2]["_id"]
    assert not {h.doc_id for h in searched} & {docs[0]["_id"], docs[1]["_id"], docs[41]["_id"]}
    out = _invoke("index", "merge", index, "--max-segments", "1")
    assert "→ 1 segments" in out
    info = json.loads(_invoke("index", "info", index, "--json"))
    assert (len(info["segments"]), info["deleted_docs"], info["live_docs"]) == (1, 0, len(docs) - 3)
    assert [(h.doc_id, h.score) for h in heron.Index.open(index).search("telomere stem cells", k=100)] == \
        [(h.doc_id, h.score) for h in searched]
    assert ": ok (" in _invoke("index", "check", index)  # every segment's files hashed in full
    assert '"Edited"' in _invoke("query", "-i", index, "telomere stem cells", "--json", "-k", "1")
    from heron.retrieval import get_retriever  # what heron eval --index opens

    ids, scores = get_retriever(str(index)).search(["telomere stem cells"], k=100)[0]
    assert list(zip(ids, scores.tolist())) == [(h.doc_id, h.score) for h in searched]
    info = json.loads(_invoke("index", "info", index, "--json"))
    assert info["segments"][0]["postings"] > 0 and info["segments"][0]["bytes_per_posting"] > 0
    from conftest import make_writable

    from heron.cli import app

    docs_file = next((index / "segments" / info["segments"][0]["name"]).rglob("docs.jsonl"))  # the live segment
    make_writable(docs_file.parent)
    with open(docs_file, "r+b") as handle:  # one byte changed, size kept
        first = handle.read(1)
        handle.seek(0)
        handle.write(b"X" if first != b"X" else b"Y")
    result = CliRunner().invoke(app, ["index", "check", str(index)])
    assert result.exit_code == 1 and "docs.jsonl" in result.output


def test_mistakes_are_one_line_errors(parts, tmp_path):
    classic, docs, _ = parts
    index = _fresh(classic, tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"_id": "x1", "text": "a"}\n{"_id": "x1", "text": "b"}\n')
    _one_line_error(_heron("index", "add", index, "--corpus", bad), "bad.jsonl:2", "duplicate id 'x1'")
    _one_line_error(_heron("index", "add", index, "--corpus", docs[0]["_id"] + ".jsonl"), "no such corpus file")
    new = tmp_path / "dup.jsonl"
    new.write_text(json.dumps(docs[0]) + "\n")
    _one_line_error(_heron("index", "add", index, "--corpus", new), docs[0]["_id"], "upsert")
    _one_line_error(_heron("index", "delete", index), "give document ids")
    _one_line_error(_heron("index", "info", tmp_path / "nowhere"), "does not exist")
    assert not (index / "segments").exists() or heron.Index.open(index).snapshot.num_docs == 40  # nothing changed


def test_a_second_writer_is_refused_while_one_holds_the_lock(parts, tmp_path):
    classic, docs, new = parts
    index = _fresh(classic, tmp_path)
    writer = heron.Index.open(index)
    writer.delete([docs[0]["_id"]])  # holds the write lock until commit
    try:
        proc = _heron("index", "add", index, "--corpus", new)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert len(errors) == 1 and "another build of this segmented index is running" in errors[0]
    finally:
        writer.commit()
    assert heron.Index.open(index).snapshot.num_docs == 39
