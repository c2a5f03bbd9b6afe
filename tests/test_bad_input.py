"""The bad-input matrix: every hostile input to the command line exits 2 with one line naming the file, line
and field (or the option) — never a traceback, never a silent wrong answer.

The CLI runs in process (``heron.cli.main`` with its own ``sys.argv``, stdout and stderr), on tiny datasets
written here and a BM25 index of one (no model needed): the whole matrix takes a few seconds.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import sys
import traceback
from pathlib import Path

import pytest

from heron.errors import HeronError

DOCS = [{"_id": f"d{i}", "title": f"title {i}", "text": f"cats and dogs, number{i} of the fish {i}"}
        for i in range(6)]
CORPUS = "".join(json.dumps(d) + "\n" for d in DOCS).encode()
QUERIES = b'{"_id": "q1", "text": "number1 cats"}\n{"_id": "q2", "text": "number2 fish"}\n'
QRELS = b"query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n"


def cli(*args) -> tuple[int | str, str, str]:
    """``heron ARGS`` in this process: (exit code, stdout, stderr); an escaped exception is ``"exception"``
    with its traceback on stderr."""
    from heron.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["heron", *map(str, args)]
    code: int | str = "no exit"
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:
                code = exc.code
            except BaseException:  # noqa: BLE001 - any escape is what the matrix looks for
                err.write(traceback.format_exc())
                code = "exception"
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


def assert_one_line_error(result, *fragments: str, after_progress: bool = False) -> str:
    """Exit code 2, no traceback, and stderr is one line ``error: …`` holding every fragment. With
    ``after_progress`` (an error found while building), the progress lines a build writes to stderr may come
    first; the error is still one line, and the last."""
    code, _, err = result
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and lines[-1] == errors[0], (code, err)
    assert after_progress or len(lines) == 1, err
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


def beir(root: Path, corpus: bytes = CORPUS, queries: bytes = QUERIES, qrels: bytes = QRELS,
         corpus_name: str = "corpus.jsonl") -> Path:
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    (root / corpus_name).write_bytes(corpus)
    (root / "queries.jsonl").write_bytes(queries)
    (root / "qrels" / "test.tsv").write_bytes(qrels)
    return root


def msmarco(root: Path, collection: bytes, queries: dict[str, bytes], qrels: bytes = b"q1 0 d1 1\n") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "collection.tsv").write_bytes(collection)
    for name, data in queries.items():
        (root / name).write_bytes(data)
    (root / "qrels.dev.tsv").write_bytes(qrels)
    return root


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return beir(tmp_path_factory.mktemp("good") / "ds")


@pytest.fixture(scope="module")
def index(good, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("index") / "bm25"
    code, _, err = cli("build-index", "-d", good, "--encoder", "bm25", "-o", path)
    assert code == 0, err
    return path


# -- data files: each case is (corpus, queries, qrels) edits → the fragments of the one-line error ------------
DATA_CASES = {
    "duplicate _id": (dict(corpus=CORPUS + b'{"_id": "d1", "text": "again"}\n'),
                      ["corpus.jsonl:7:", "field '_id'", "duplicate id 'd1'", "first on line 2"]),
    "empty _id": (dict(corpus=CORPUS + b'{"_id": "", "text": "x"}\n'), ["corpus.jsonl:7:", "field '_id' is empty"]),
    "blank _id": (dict(corpus=CORPUS + b'{"_id": "  ", "text": "x"}\n'), ["corpus.jsonl:7:", "field '_id' is empty"]),
    "_id with a space": (dict(corpus=CORPUS + b'{"_id": "d 9", "text": "x"}\n'),
                         ["corpus.jsonl:7:", "field '_id' holds white space"]),
    "_id float": (dict(corpus=CORPUS + b'{"_id": 1.5, "text": "x"}\n'),
                  ["corpus.jsonl:7:", "field '_id' must be a string or an integer, got float"]),
    "_id null": (dict(corpus=CORPUS + b'{"_id": null, "text": "x"}\n'), ["corpus.jsonl:7:", "missing field '_id'"]),
    "text not a string": (dict(corpus=CORPUS + b'{"_id": "d9", "text": ["x"]}\n'),
                          ["corpus.jsonl:7:", "field 'text' must be a string"]),
    "non-UTF-8 corpus": (dict(corpus=CORPUS + b'{"_id": "d9", "text": "caf\xe9"}\n'),
                         ["corpus.jsonl:7:", "not UTF-8 text (byte 0xe9"]),
    "NaN in corpus": (dict(corpus=CORPUS + b'{"_id": "d9", "text": "x", "score": NaN}\n'),
                      ["corpus.jsonl:7:", "field 'score'", "non-finite number NaN"]),
    "Infinity nested": (dict(corpus=CORPUS + b'{"_id": "d9", "text": "x", "meta": {"w": [1, -Infinity]}}\n'),
                        ["corpus.jsonl:7:", "field 'meta.w.1'", "non-finite number -Infinity"]),
    "1e999 in corpus": (dict(corpus=CORPUS + b'{"_id": "d9", "text": "x", "w": 1e999}\n'),
                        ["corpus.jsonl:7:", "field 'w'", "non-finite number 1e999"]),
    "invalid JSON": (dict(corpus=CORPUS + b'{"_id": "d9", "text": \n'), ["corpus.jsonl:7:", "invalid JSON"]),
    "JSON array line": (dict(corpus=CORPUS + b'["d9", "x"]\n'), ["corpus.jsonl:7:", "expected a JSON object"]),
    "empty corpus": (dict(corpus=b"\n\n"), ["corpus.jsonl:", "no documents"]),
    "duplicate query id": (dict(queries=QUERIES + b'{"_id": "q1", "text": "other"}\n'),
                           ["queries.jsonl:3:", "field '_id'", "duplicate id 'q1'", "first on line 1"]),
    "empty query id": (dict(queries=QUERIES + b'{"_id": "", "text": "x"}\n'),
                       ["queries.jsonl:3:", "field '_id' is empty"]),
    "non-UTF-8 queries": (dict(queries=QUERIES + b'{"_id": "q3", "text": "\xff"}\n'),
                          ["queries.jsonl:3:", "not UTF-8 text (byte 0xff"]),
    "qrels score nan": (dict(qrels=b"q1\td1\tnan\n"), ["test.tsv:1:", "field 'score' must be an integer, got 'nan'"]),
    "qrels score inf": (dict(qrels=b"q1\td1\tinf\n"), ["test.tsv:1:", "field 'score' must be an integer, got 'inf'"]),
    "qrels score 1.5": (dict(qrels=b"q1\td1\t1.5\n"), ["test.tsv:1:", "got '1.5'"]),
    "qrels score 1e3": (dict(qrels=b"q1\td1\t1e3\n"), ["test.tsv:1:", "got '1e3'"]),
    "qrels score beyond int": (dict(qrels=b"q1\td1\t1000000000000\n"),
                               ["test.tsv:1:", "field 'score' must be between -2147483647 and 2147483647"]),
    "qrels conflicting grades": (dict(qrels=b"q1\td1\t1\nq2\td2\t1\nq1\td1\t2\n"),
                                 ["test.tsv:3:", "field 'score'", "judged 2 here and 1 on line 1"]),
    "qrels empty corpus-id": (dict(qrels=b"q1\t\t1\n"), ["test.tsv:1:", "field 'corpus-id' is empty"]),
    "qrels query without text": (dict(qrels=b"q9\td1\t1\n"), ["test.tsv", "query-id 'q9' has judgments but no text"]),
    "non-UTF-8 qrels": (dict(qrels=b"q1\td\xc3\x281\t1\n"), ["test.tsv:1:", "not UTF-8 text (byte 0xc3"]),
}


@pytest.mark.parametrize("case", list(DATA_CASES))
def test_bad_dataset_files(case, tmp_path):
    edits, fragments = DATA_CASES[case]
    root = beir(tmp_path / "ds", **edits)
    assert_one_line_error(cli("eval", "-d", root, "-k", "5", "--results-dir", tmp_path / "r"), *fragments)


def test_bad_corpus_refused_by_build_index_too(tmp_path):
    for corpus, fragment in ((CORPUS + b'{"_id": "d2", "text": "x"}\n', "duplicate id 'd2'"), (b"", "no documents"),
                             (CORPUS + b'{"_id": "d9", "text": "\x80"}\n', "not UTF-8")):
        root = beir(tmp_path / "ds", corpus=corpus)
        out = tmp_path / "index"
        assert_one_line_error(cli("build-index", "-d", root, "--encoder", "bm25", "-o", out), "corpus.jsonl", fragment,
                              after_progress=True)
        assert not out.exists()  # nothing published


def test_damaged_gzip_corpus(tmp_path):
    data = gzip.compress(CORPUS * 50)
    root = beir(tmp_path / "ds", corpus=data[: len(data) // 2], corpus_name="corpus.jsonl.gz")
    assert_one_line_error(cli("eval", "-d", root, "--results-dir", tmp_path / "r"), "corpus.jsonl.gz:",
                          "damaged gzip data")


def test_msmarco_files(tmp_path):
    collection = b"d1\tcats\nd2\tdogs\n"
    root = msmarco(tmp_path / "a", collection + b"d1\tagain\n", {"queries.dev.tsv": b"q1\tcats\n"})
    assert_one_line_error(cli("eval", "-d", root, "--split", "dev", "--results-dir", tmp_path / "r"),
                          "collection.tsv:3:", "field 'passage-id'", "duplicate id 'd1'", "first on line 1")
    root = msmarco(tmp_path / "b", collection + b"\tno id\n", {"queries.dev.tsv": b"q1\tcats\n"})
    assert_one_line_error(cli("eval", "-d", root, "--split", "dev", "--results-dir", tmp_path / "r"),
                          "collection.tsv:3:", "field 'passage-id' is empty")
    root = msmarco(tmp_path / "c", collection, {"queries.dev.tsv": b"q1\tcats\n",
                                               "queries.train.tsv": b"q1\tsomething else\n"})
    assert_one_line_error(cli("eval", "-d", root, "--split", "dev", "--results-dir", tmp_path / "r"),
                          "queries.train.tsv:1:", "query 'q1' has another text in", "queries.dev.tsv:1")
    root = msmarco(tmp_path / "d", collection, {"queries.dev.tsv": b"q1\tcats\n"}, qrels=b"q1 0 d1 NaN\n")
    assert_one_line_error(cli("eval", "-d", root, "--split", "dev", "--results-dir", tmp_path / "r"),
                          "qrels.dev.tsv:1:", "field 'score' must be an integer, got 'NaN'")


def test_benign_input_is_accepted(tmp_path):
    """What is not wrong passes: a byte-order mark, CRLF line ends, integer ids, a qrels line repeated with the
    same grade, a query in two MS MARCO files with one text; and the results are right."""
    corpus = b"\xef\xbb\xbf" + CORPUS.replace(b"\n", b"\r\n") + b'{"_id": 7, "text": "number7 birds"}\r\n'
    root = beir(tmp_path / "ds", corpus=corpus, qrels=QRELS + b"q1\td1\t1\n")
    code, _, err = cli("eval", "-d", root, "-k", "5", "--results-dir", tmp_path / "r")
    assert code == 0, err
    record = json.loads((tmp_path / "r" / "ds" / "bm25" / "metrics.json").read_text())
    assert record["num_queries"] == 2 and record["mean"]["ndcg@10"] == 1.0  # each query's own number word
    from heron.eval import load_dataset

    ds = load_dataset(root)
    assert [d.id for d in ds.iter_corpus()] == [f"d{i}" for i in range(6)] + ["7"]
    assert ds.qrels("test") == {"q1": {"d1": 1}, "q2": {"d2": 1}}
    root = msmarco(tmp_path / "m", b"d1\tcats\nd2\tdogs\n", {"queries.dev.tsv": b"q1\tcats\n",
                                                            "queries.dev.small.tsv": b"q1\tcats\n"})
    assert load_dataset(root).all_queries() == {"q1": "cats"}


def test_shipped_datasets_pass_the_strict_readers(scifact, nfcorpus):
    """The real BEIR data: no duplicate or empty ids, integer grades; they load whole."""
    for ds, docs, queries in ((scifact, 5183, 1109), (nfcorpus, 3633, 3237)):
        assert len({d.id for d in ds.iter_corpus()}) == docs == ds.corpus_size()
        assert len(ds.all_queries()) == queries
        assert all(ds.qrels(split) for split in ds.splits())


# -- options: numbers out of range, options that do not apply --------------------------------------------------
OPTION_CASES = {
    "k1 nan": (["--k1", "nan"], ["--k1: Input should be a finite number (got nan)"]),
    "k1 inf": (["--k1", "inf"], ["--k1: Input should be a finite number (got inf)"]),
    "k1 negative": (["--k1", "-3", "--b", "7"], ["--k1: Input should be greater than or equal to 0"]),
    "k1 huge": (["--k1", "1e300"], ["--k1: Input should be less than or equal to 1000"]),
    "b nan": (["--b", "nan"], ["--b: Input should be a finite number (got nan)"]),
    "b above 1": (["--b", "7"], ["--b: Input should be less than or equal to 1 (got 7.0)"]),
    "k zero": (["-k", "0"], ["'--k'", "greater than or equal to 1"]),
    "k not a number": (["-k", "ten"], ["'--k'", "valid integer"]),
    "threads zero": (["-r", "bm25-lucene", "--threads", "0"], ["'--threads'", "greater than or equal to 1"]),
    "fusion weight nan": (["-r", "bm25+bm25-lucene", "--fusion-weight", "nan", "--fusion-weight", "1"],
                          ["--fusion-weight (value 1): Input should be a finite number"]),
    "fusion weight 1e308": (["-r", "bm25+bm25-lucene", "--fusion-weight", "1", "--fusion-weight", "1e308"],
                            ["--fusion-weight (value 2): Input should be less than or equal to 1000000"]),
    "fusion weight negative": (["-r", "bm25+bm25-lucene", "--fusion-weight", "-1", "--fusion-weight", "1"],
                               ["--fusion-weight (value 1): Input should be greater than or equal to 0"]),
    "rrf k negative": (["-r", "bm25+bm25-lucene", "--rrf-k", "-60"], ["--rrf-k: Input should be greater than"]),
    "rrf k inf": (["-r", "bm25+bm25-lucene", "--rrf-k", "inf"], ["--rrf-k: Input should be a finite number"]),
    "unknown fusion": (["-r", "bm25+bm25-lucene", "--fusion", "max"], ["unknown fusion 'max'"]),
    "fusion without '+'": (["--fusion", "linear"], ["--fusion applies to a fused retriever"]),
    "fusion weight without '+'": (["--fusion-weight", "2"], ["--fusion-weight applies to a fused retriever"]),
    "rrf k with linear": (["-r", "bm25+bm25-lucene", "--fusion", "linear", "--rrf-k", "10"],
                          ["--rrf-k applies to --fusion rrf"]),
    "k1 without bm25": (["-r", "splade", "--k1", "1.2"], ["--k1 applies to the bm25 and bm25-lucene retrievers"]),
    "threads with bm25 only": (["--threads", "4"], ["--threads applies to index-backed retrievers"]),
    "engine without index": (["--engine", "lucene"], ["--engine applies to --index"]),
    "prf options without prf": (["--prf-docs", "3", "--prf-beta", "0.2"], ["--prf-docs, --prf-beta apply with --prf"]),
    "unknown metric": (["-m", "p@3"], ["unknown metric 'p@3'"]),
    "unknown retriever": (["-r", "nope"], ["unknown retriever 'nope'"]),
    "missing split": (["--split", "dev"], ["no qrels for split 'dev' (available: test)"]),
    "unknown option": (["--nope"], ["No such option: --nope"]),
    "both self-hit flags": (["--remove-self-hits", "--keep-self-hits"], ["contradict each other"]),
    "search without index": (["-s", "mode=taat"], ["--search applies to --index"]),
}


@pytest.mark.parametrize("case", list(OPTION_CASES))
def test_bad_eval_options(case, good, tmp_path):
    args, fragments = OPTION_CASES[case]
    assert_one_line_error(cli("eval", "-d", good, *args, "--results-dir", tmp_path / "r"), *fragments)
    assert not (tmp_path / "r" / "results.md").exists()


INDEX_OPTION_CASES = {
    "prf alpha nan": (["--prf", "rocchio", "--prf-alpha", "nan"], ["--prf-alpha: Input should be a finite number"]),
    "prf beta 1e300": (["--prf", "rocchio", "--prf-beta", "1e300"], ["--prf-beta: Input should be less than"]),
    "prf alpha with average": (["--prf", "average", "--prf-alpha", "2"], ["--prf-alpha applies to --prf rocchio"]),
    "prf docs zero": (["--prf", "rocchio", "--prf-docs", "0"], ["'--prf-docs'", "greater than or equal to 1"]),
    "prf terms negative": (["--prf", "rocchio", "--prf-terms", "-1"], ["'--prf-terms'", "greater than or equal to 0"]),
    "unknown prf": (["--prf", "magic"], ["unknown PRF 'magic'"]),
    "search heap_factor inf": (["-s", "heap_factor=inf"], ["field 'heap_factor'", "finite number"]),
    "search key of another index type": (["-s", "ef_search=5"], ["ef_search does not apply to an inverted index"]),
}


@pytest.mark.parametrize("case", list(INDEX_OPTION_CASES))
def test_bad_eval_index_options(case, good, index, tmp_path):
    args, fragments = INDEX_OPTION_CASES[case]
    assert_one_line_error(cli("eval", "-d", good, "-i", index, *args, "--results-dir", tmp_path / "r"), *fragments)


def test_results_dir_that_is_a_file(good, tmp_path):
    (tmp_path / "file").write_text("x")
    assert_one_line_error(cli("eval", "-d", good, "--results-dir", tmp_path / "file"),
                          "--results-dir", "exists and is not a directory")
    assert_one_line_error(cli("eval", "-d", good, "--results-dir", tmp_path / "file" / "sub"),
                          "--results-dir", "cannot create it")


def test_bad_query_options(index, tmp_path):
    assert_one_line_error(cli("query", "-i", index, "--fusion", "max", "cats"),
                          "--fusion applies to a fused retriever", "bm25 is one index")
    assert_one_line_error(cli("query", "-i", index, "--fusion", "rrf", "cats"), "--fusion applies to a fused retriever")
    assert_one_line_error(cli("query", "-i", index, "-k", "0", "cats"), "'--k'")
    assert_one_line_error(cli("query", "-i", index, "-k", "1001", "cats"), "'--k'")
    assert_one_line_error(cli("query", "-i", index, " "), "the query is empty")
    assert_one_line_error(cli("query", "-i", index, "-r", "nope", "cats"), "nope")
    assert_one_line_error(cli("query", "-i", index, "-s", "heap_factor=nan", "cats"), "field 'heap_factor'")
    (tmp_path / "file").write_text("x")
    assert_one_line_error(cli("query", "-i", tmp_path / "file", "cats"), "index directory does not exist")
    code, out, err = cli("query", "-i", index, "--json", "number3 fish")  # and a good query still answers
    assert code == 0, err
    assert json.loads(out)["hits"][0]["doc_id"] == "d3"


BUILD_CASES = {
    "model for bm25": (["--encoder", "bm25", "--model", "minilm"],
                       ["encoder.model does not apply to a bm25 encoder (only to splade, dense, csr, multivector)"]),
    "doc max length for bm25": (["--encoder", "bm25", "--doc-max-length", "100"],
                                ["encoder.doc_max_length does not apply to a bm25 encoder"]),
    "query mode idf for bm25": (["--encoder", "bm25", "--query-mode", "idf"], ["encoder.query_mode does not apply"]),
    "k for bm25": (["--encoder", "bm25", "--k", "8"], ["encoder.k does not apply to a bm25 encoder (only to csr)"]),
    "faiss for splade": (["--encoder", "splade", "--faiss", "hnsw"],
                         ["faiss does not apply to a splade index (only to dense, multivector)"]),
    "crisp for bm25": (["--encoder", "bm25", "--crisp", "C4x8"], ["multivector does not apply to a bm25 index"]),
    "quantization for dense": (["--encoder", "dense", "--quantization", "uint8"],
                               ["quantization does not apply to a dense index"]),
    "batch size zero": (["--encoder", "bm25", "--batch-size", "0"], ["field 'encoder.batch_size'"]),
    "unknown encoder": (["--encoder", "bm26"], ["field 'encoder.type'"]),
}


@pytest.mark.parametrize("case", list(BUILD_CASES))
def test_bad_build_options(case, good, tmp_path):
    args, fragments = BUILD_CASES[case]
    assert_one_line_error(cli("build-index", "-d", good, "-o", tmp_path / "out", *args), *fragments)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("yaml, fragments", [
    ("encoder: {type: bm25, k1: .nan}", ["c.yaml: field 'encoder.k1': Input should be a finite number"]),
    ("encoder: {type: bm25, k1: -3, b: 7}", ["c.yaml: field 'encoder.k1'"]),
    ("encoder: {type: bm25, b: 7}", ["c.yaml: field 'encoder.b': Input should be less than or equal to 1"]),
    ("encoder: {type: splade, k1: 1.2}", ["c.yaml: encoder.k1 does not apply to a splade encoder (only to bm25)"]),
    ("encoder: {type: bm25}\nscale: .inf", ["c.yaml: field 'scale': Input should be a finite number"]),
    ("encoder: {type: bm25}\nfaiss: {type: flat}", ["c.yaml: faiss does not apply to a bm25 index"]),
])
def test_bad_build_configs(yaml, fragments, good, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"dataset: {good}\noutput: {tmp_path / 'out'}\n{yaml}\n")
    assert_one_line_error(cli("build-index", config), *fragments)


def test_bundle_member_settings_must_apply(good, tmp_path):
    config = tmp_path / "bundle.yaml"
    config.write_text(f"dataset: {good}\noutput: {tmp_path / 'out'}\nindexes:\n  lex:\n"
                      f"    encoder: {{type: bm25, doc_top_k: 5}}\n")
    assert_one_line_error(cli("build-index", config), "bundle.yaml", "encoder.doc_top_k does not apply to a bm25")


def test_build_output_that_is_a_file(good, tmp_path):
    (tmp_path / "file").write_text("x")
    for output in (tmp_path / "file", tmp_path / "file" / "index"):
        assert_one_line_error(cli("build-index", "-d", good, "--encoder", "bm25", "-o", output),
                              f"{tmp_path / 'file'} exists and is not a directory")
    assert (tmp_path / "file").read_text() == "x"


def test_pickle_weights_are_refused_in_one_line(good, tmp_path):
    """A model folder whose weights are a pickle (here one that would run code when unpickled) is refused up
    front, in one line: heron loads safetensors only."""
    import torch

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    torch.save({"weight": _Payload()}, folder / "pytorch_model.bin")
    assert_one_line_error(cli("build-index", "-d", good, "--encoder", "splade", "--model", folder, "-o",
                              tmp_path / "out"), "pytorch_model.bin", "heron refuses to load",
                          "loads safetensors only")
    from heron.retrieval.encoders.hf import load_checkpoint

    with pytest.raises(HeronError, match="pickle files"):
        load_checkpoint(folder, masked_lm=True)


class _Payload:
    def __reduce__(self):
        return (print, ("unpickled",))


def test_bad_run_files(good, tmp_path):
    run = tmp_path / "run.trec"
    for text, fragments in (("q1 Q0 d1 1 nan heron\n", ["run.trec:1:", "field 'score' must be a finite number"]),
                            ("q1 Q0 d1 1 inf heron\n", ["run.trec:1:", "finite"]),
                            ("q1 Q0 d1 1 2.0 heron\nq1 Q0 d1 2 1.0 heron\n",
                             ["run.trec:2:", "document 'd1' retrieved twice for query 'q1' (first on line 1)"]),
                            ("q1 Q0 d1 1 x heron\n", ["run.trec:1:", "field 'score' is not a number"])):
        run.write_text(text)
        assert_one_line_error(cli("compare", run, run, "-d", good), *fragments)


def test_serve_refuses_bad_numbers_before_starting(index):
    for args, fragment in ((["--timeout", "nan"], "'--timeout'"), (["--timeout", "inf"], "'--timeout'"),
                           (["--port", "-1"], "'--port'"), (["--max-k", "0"], "'--max-k'"),
                           (["--refresh", "nan"], "'--refresh'"), (["--max-write-docs", "0"], "'--max-write-docs'")):
        assert_one_line_error(cli("serve", "-i", index, *args), fragment)


# -- the same checks for Python callers (the API and the server build these objects) ---------------------------
def test_retriever_parameters_checked_in_the_library():
    from heron.retrieval.bm25 import BM25Retriever
    from heron.retrieval.encoders.bm25 import BM25Encoder
    from heron.retrieval.fusion import FusedRetriever
    from heron.retrieval.options import FusionOptions, PRFOptions, checked

    for k1, b in ((math.nan, 0.4), (math.inf, 0.4), (-3, 0.4), (0.9, 7), (0.9, math.nan)):
        with pytest.raises(HeronError, match="bm25: field '(k1|b)'"):
            BM25Retriever(k1=k1, b=b)
        with pytest.raises(HeronError, match="bm25: field '(k1|b)'"):
            BM25Encoder(k1=k1, b=b)
    assert BM25Retriever(k1=0.0, b=1.0).describe()["k1"] == 0.0  # the bounds themselves are valid
    members = [BM25Retriever(), BM25Retriever(k1=1.2)]
    with pytest.raises(HeronError, match="fusion: field 'weights.1'"):
        FusedRetriever(members, "linear", [1.0, 1e308])
    with pytest.raises(HeronError, match="fusion: field 'rrf_k'"):
        FusedRetriever(members, "rrf", rrf_k=math.inf)
    assert checked(FusionOptions, "fusion", weights=[0.5, 2]).weights == [0.5, 2.0]
    with pytest.raises(HeronError, match="prf: field 'alpha': Input should be a finite number"):
        checked(PRFOptions, "prf", alpha=math.nan)
