"""The command line end to end: real subprocesses, real data, one-line errors with exit code 2."""

import json
import os
import subprocess
import sys

import pytest


def heron(*args, env=None, cwd=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "heron", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=600)


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err


def test_help_is_complete():
    out = heron("--help")
    assert out.returncode == 0
    for cmd in ("build-index", "query", "eval", "compare", "models"):
        assert cmd in out.stdout
    for sub in (["eval", "--help"], ["compare", "--help"], ["models", "--help"], ["models", "fetch", "--help"],
                ["models", "list", "--help"], ["build-index", "--help"], ["query", "--help"]):
        proc = heron(*sub)
        assert proc.returncode == 0 and "Usage" in proc.stdout, sub


def test_eval_bm25_scifact_writes_run_and_metrics(tmp_path):
    proc = heron("eval", "--dataset", "scifact", "--retriever", "bm25", "--results-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "0.6789" in proc.stdout  # nDCG@10 in the printed table
    record = json.loads((tmp_path / "scifact" / "bm25" / "metrics.json").read_text())
    assert round(record["mean"]["ndcg@10"], 4) == 0.6789
    assert record["num_queries"] == 300 and len(record["per_query"]["ndcg@10"]) == 300
    run_lines = (tmp_path / "scifact" / "bm25" / "run.trec").read_text().splitlines()
    assert len(run_lines) <= 300 * 1000 and run_lines[0].split()[1] == "Q0"
    assert "| scifact | bm25 | 300 | 0.6789 |" in (tmp_path / "results.md").read_text()

    # compare the run with itself: identical, so p = 1
    run = tmp_path / "scifact" / "bm25" / "run.trec"
    proc = heron("compare", str(run), str(run), "--dataset", "scifact")
    assert proc.returncode == 0, proc.stderr
    assert "+0.0000" in proc.stdout


def test_bad_inputs_give_one_line_errors(tmp_path):
    assert_one_line_error(heron("eval", "--dataset", "no-such-set"), "unknown dataset 'no-such-set'")
    assert_one_line_error(heron("eval", "--dataset", "scifact", "--retriever", "nope"), "unknown retriever 'nope'")
    assert_one_line_error(heron("eval", "--dataset", "scifact", "--metric", "p@3"), "unknown metric 'p@3'")
    assert_one_line_error(heron("eval", "--dataset", str(tmp_path / "missing")), "does not exist")

    bad = tmp_path / "bad"
    (bad / "qrels").mkdir(parents=True)
    (bad / "corpus.jsonl").write_text('{"_id": "d1", "text": "fine"}\n{"_id": "d2", "text": \n')
    (bad / "queries.jsonl").write_text('{"_id": "q1", "text": "fine"}\n')
    (bad / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    assert_one_line_error(heron("eval", "--dataset", str(bad), "--results-dir", str(tmp_path / "r")),
                          "corpus.jsonl:2: invalid JSON")
    (bad / "corpus.jsonl").write_text('{"_id": "d1", "text": "fine"}\n')
    (bad / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\n")
    assert_one_line_error(heron("eval", "--dataset", str(bad), "--results-dir", str(tmp_path / "r")),
                          "test.tsv:2: expected 3 tab-separated fields")
    (tmp_path / "r.trec").write_text("q1 Q0 d1 1\n")
    assert_one_line_error(heron("compare", str(tmp_path / "r.trec"), str(tmp_path / "r.trec"), "-d", "scifact"),
                          "r.trec:1: expected 6 fields")


@pytest.mark.parametrize("args", [["eval", "--dataset", "scifact", "--k", "0"], ["eval"]])
def test_usage_errors_exit_2(args):
    proc = heron(*args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
