"""Dataset loading: BEIR and MS MARCO layouts, name resolution, and one-line errors on malformed input."""

import gzip
import json

import pytest

from heron.errors import HeronError, InputFormatError
from heron.eval.datasets import SelfHits, load_dataset, open_dataset
from heron.eval.runs import read_trec_run, remove_self_hits, write_trec_run


def make_beir(root, corpus_lines=None, qrels_lines=None, gz=False, name="toy"):
    ds = root / name
    (ds / "qrels").mkdir(parents=True)
    corpus_lines = corpus_lines or [
        json.dumps({"_id": "d1", "title": "Cats", "text": "purr loudly"}),
        json.dumps({"_id": "d2", "title": "", "text": "dogs bark"}),
        json.dumps({"_id": 3, "text": "numeric id"}),
    ]
    body = "\n".join(corpus_lines) + "\n"
    if gz:
        with gzip.open(ds / "corpus.jsonl.gz", "wt", encoding="utf-8") as f:
            f.write(body)
    else:
        (ds / "corpus.jsonl").write_text(body)
    (ds / "queries.jsonl").write_text(
        "\n".join(json.dumps({"_id": q, "text": t}) for q, t in [("q1", "cats"), ("q2", "dogs"), ("q3", "x")]) + "\n"
    )
    qrels_lines = qrels_lines or ["query-id\tcorpus-id\tscore", "q1\td1\t1", "q2\td2\t2"]
    (ds / "qrels" / "test.tsv").write_text("\n".join(qrels_lines) + "\n")
    return ds


@pytest.mark.parametrize("gz", [False, True])
def test_beir_folder(tmp_path, gz):
    ds = open_dataset(make_beir(tmp_path, gz=gz))
    docs = list(ds.iter_corpus())
    assert [d.id for d in docs] == ["d1", "d2", "3"]
    assert docs[0].contents == "Cats purr loudly"  # title + " " + text, as BEIR/Pyserini
    assert docs[1].contents == "dogs bark"
    assert ds.queries("test") == {"q1": "cats", "q2": "dogs"}  # only the split's judged queries
    assert ds.qrels("test") == {"q1": {"d1": 1}, "q2": {"d2": 2}}
    assert ds.splits() == ["test"]
    assert ds.corpus_size() == 3
    assert ds.remove_self_hits is None  # decided from the data: no query id is a corpus id here
    assert ds.self_hits("test") == SelfHits(False, "not detected: 0 of 2 test query ids are corpus ids holding "
                                                   "the query's text", 0, 2)


def test_malformed_jsonl_names_file_and_line(tmp_path):
    lines = [json.dumps({"_id": "d1", "text": "ok"}), '{"_id": "d2", "text": "broken"']
    ds = open_dataset(make_beir(tmp_path, corpus_lines=lines))
    with pytest.raises(InputFormatError, match=r"corpus\.jsonl:2: invalid JSON"):
        list(ds.iter_corpus())


def test_missing_id_and_wrong_type(tmp_path):
    ds = open_dataset(make_beir(tmp_path, corpus_lines=[json.dumps({"text": "no id"})]))
    with pytest.raises(InputFormatError, match=r"corpus\.jsonl:1: missing field '_id'"):
        list(ds.iter_corpus())
    ds = open_dataset(make_beir(tmp_path / "b", corpus_lines=[json.dumps({"_id": "a", "text": ["x"]})]))
    with pytest.raises(InputFormatError, match="field 'text' must be a string"):
        list(ds.iter_corpus())


@pytest.mark.parametrize("row,problem", [("q1\td1", "expected 3 tab-separated fields"),
                                         ("q1\td1\thigh", "field 'score' must be an integer"),
                                         ("q1\td1\t1.5", "field 'score' must be an integer")])
def test_bad_qrels_row(tmp_path, row, problem):
    ds = open_dataset(make_beir(tmp_path, qrels_lines=["query-id\tcorpus-id\tscore", "q1\td1\t1", row]))
    with pytest.raises(InputFormatError, match=rf"test\.tsv:3: {problem}"):
        ds.qrels("test")


def test_judged_query_without_text(tmp_path):
    ds = open_dataset(make_beir(tmp_path, qrels_lines=["q9\td1\t1"]))
    with pytest.raises(HeronError, match="query-id 'q9' has judgments but no text"):
        ds.queries("test")


def test_unknown_split(tmp_path):
    ds = open_dataset(make_beir(tmp_path))
    with pytest.raises(HeronError, match="no qrels for split 'dev' \\(available: test\\)"):
        ds.qrels("dev")


def test_msmarco_layout(tmp_path):
    root = tmp_path / "msm"
    root.mkdir()
    (root / "collection.tsv").write_text("0\tthe first passage\n1\tsecond\tpassage with a tab\n")
    (root / "queries.dev.small.tsv").write_text("100\tfirst?\n")
    (root / "qrels.dev.small.tsv").write_text("100 0 0 1\n")
    ds = open_dataset(root)
    assert ds.format == "msmarco"
    assert [(d.id, d.contents) for d in ds.iter_corpus()] == [("0", "the first passage"),
                                                             ("1", "second\tpassage with a tab")]
    assert ds.queries("dev.small") == {"100": "first?"}
    assert ds.qrels("dev.small") == {"100": {"0": 1}}
    assert ds.splits() == ["dev.small"]
    (root / "qrels.bad.tsv").write_text("100 0 1\n")
    with pytest.raises(InputFormatError, match=r"qrels\.bad\.tsv:1: expected 4 fields"):
        ds.qrels("bad")


def test_name_resolution_and_self_hits(tmp_path, monkeypatch):
    make_beir(tmp_path, name="arguana")
    monkeypatch.setenv("HERON_DATA", str(tmp_path))
    monkeypatch.setenv("HERON_CACHE", str(tmp_path / "cache"))
    ds = load_dataset("ArguAna")
    assert ds.root == tmp_path / "arguana"
    assert not ds.self_hits().removed  # the data decides, not the name: no query here is a document
    assert load_dataset("arguana", remove_self_hits=True).self_hits() == SelfHits(True, "forced by --remove-self-hits")


@pytest.mark.parametrize("gz", [False, True])
def test_self_hits_detected_from_the_data(tmp_path, gz):
    """ArguAna-like: queries are documents (same id, same text) → removal on, whatever the folder is called;
    ids that are corpus ids only by coincidence (FiQA numbers both from 0) do not count."""
    docs = [("a1", "Vegetarian diets", "help the environment by cutting emissions"),
            ("a2", "Zoos", "protect endangered species from extinction"),
            ("a3", "Nuclear power", "is a low carbon source of electricity"),
            ("7", "", "an unrelated answer about mortgage rates and banks")]
    lines = [json.dumps({"_id": i, "title": t, "text": x}) for i, t, x in docs]
    lines.insert(1, json.dumps({"title": "Key order", "text": "id last", "_id": "a9"}))  # "_id" not first
    root = make_beir(tmp_path, corpus_lines=lines, gz=gz, name="copy-of-args",
                     qrels_lines=["query-id\tcorpus-id\tscore", "a1\ta2\t1", "a2\ta1\t1", "7\ta3\t1"])
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in [
        {"_id": "a1", "text": "Vegetarian diets help the environment by cutting emissions"},
        {"_id": "a2", "text": "Zoos protect endangered species from extinction."},
        {"_id": "7", "text": "what is the best way to save for retirement?"}]) + "\n")
    hits = open_dataset(root).self_hits("test")
    assert hits == SelfHits(True, "detected: 2 of 3 test query ids are corpus ids holding the query's text", 2, 3)
    assert hits.to_dict() == {"removed": True, "reason": hits.reason}
    assert open_dataset(root, remove_self_hits=False).self_hits("test") == SelfHits(False, "forced by --keep-self-hits")


def test_offline_not_found_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("HERON_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("HERON_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HERON_OFFLINE", "1")
    with pytest.raises(HeronError) as err:
        load_dataset("fiqa")
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "nowhere" / "fiqa") in msg and "HERON_DATA" in msg
    with pytest.raises(HeronError, match="unknown dataset 'nosuch'"):
        load_dataset("nosuch")
    with pytest.raises(HeronError, match="dataset folder does not exist"):
        load_dataset(str(tmp_path / "missing" / "dir"))


def test_real_beir_counts(scifact, nfcorpus):
    assert scifact.corpus_size() == 5183
    assert len(scifact.queries("test")) == 300 and len(scifact.queries("train")) == 809
    assert sum(len(v) for v in scifact.qrels("test").values()) == 339
    assert len(nfcorpus.queries("test")) == 323
    grades = {g for docs in nfcorpus.qrels("test").values() for g in docs.values()}
    assert grades == {1, 2}


def test_trec_run_round_trip_and_errors(tmp_path):
    run = {"q1": {"d1": 1.5, "d2": 2.5}, "q2": {"q2": 3.0, "d9": 1.0}}
    path = write_trec_run(run, tmp_path / "r.trec")
    lines = path.read_text().splitlines()
    assert lines[0] == "q1 Q0 d2 1 2.500000 heron"
    assert read_trec_run(path) == run
    assert remove_self_hits(run)["q2"] == {"d9": 1.0}
    (tmp_path / "bad.trec").write_text("q1 Q0 d1 1 2.0 tag\nq1 Q0 d2 2 notanumber tag\n")
    with pytest.raises(InputFormatError, match=r"bad\.trec:2: field 'score' is not a number"):
        read_trec_run(tmp_path / "bad.trec")
