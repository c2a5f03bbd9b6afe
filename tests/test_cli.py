"""The command line end to end: real subprocesses, real data, one-line errors with exit code 2."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest


def heron(*args, env=None, cwd=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "heron", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=600)


def heron_here(*args, env=None):
    """``heron ARGS`` run inside this process (no interpreter start, no torch import: seconds less per call),
    as ``heron`` returns it; ``env`` set for the call only. For commands that need no process of their own
    (no kill, no Ray, no training)."""
    from unittest import mock

    from test_bad_input import cli

    with mock.patch.dict(os.environ, env or {}):
        code, out, err = cli(*args)
    assert code != "exception", err
    return subprocess.CompletedProcess(["heron", *args], 0 if code is None else code, out, err)


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
    for cmd in ("build-index", "query", "eval", "compare", "models", "serve", "train"):
        assert cmd in out.stdout
    import click
    import typer

    from heron.cli import app

    helps, root = {}, typer.main.get_command(app)
    for sub in ([], ["eval"], ["compare"], ["serve"], ["models"], ["models", "fetch"], ["models", "list"],
                ["build-index"], ["query"], ["train"], ["train", "csr"], ["train", "colbert"], ["train", "splade"],
                ["train", "prf"], ["data"], ["data", "dictionaries"], ["index", "add"], ["index", "delete"],
                ["index", "merge"], ["index", "info"], ["export", "milvus"]):
        proc = heron_here(*sub, "--help", env={"COLUMNS": "80"})
        assert proc.returncode == 0 and "Usage" in proc.stdout, sub
        assert max(len(line) for line in proc.stdout.splitlines()) <= 80, sub  # readable in 80 columns
        # rich cuts what does not fit with "…": no option name (nor any other word) may be cut
        assert not re.search(r"[\w/-]…", proc.stdout), (sub, [line for line in proc.stdout.splitlines() if "…" in line])
        command = root
        for name in sub:
            command = command.commands[name]
        words = set(re.findall(r"-[\w-]+", proc.stdout))
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert set(param.opts + param.secondary_opts) <= words, (sub, param.opts, param.secondary_opts)
        helps[" ".join(sub)] = " ".join(proc.stdout.split())
    assert all(preset in helps["eval"].split("--search")[-1] for preset in ("recall90", "recall95", "recall99"))
    # build-index says what it builds; eval and query group the search knobs into --search
    assert all(kind in helps["build-index"] for kind in ("inverted index", "FAISS", "multi-vector", "bundle"))
    for command in ("eval", "query"):
        assert "--search" in helps[command] and "mode=exact|taat|approx" in helps[command]
        assert not any(old in helps[command] for old in ("--mode", "--preset", "--query-cut", "--heap-factor",
                                                          "--candidates", "--ef-search", "--truncate-dims"))
    assert all("--config" in helps[f"train {t}"] for t in ("csr", "colbert", "splade", "prf"))


def test_eval_bm25_scifact_writes_run_and_metrics(tmp_path):
    proc = heron("eval", "--dataset", "scifact", "--retriever", "bm25", "--results-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "0.6789" in proc.stdout  # nDCG@10 in the printed table
    record = json.loads((tmp_path / "scifact" / "bm25" / "metrics.json").read_text())
    assert round(record["mean"]["ndcg@10"], 4) == 0.6789
    assert record["num_queries"] == 300 and len(record["per_query"]["ndcg@10"]) == 300
    run_lines = (tmp_path / "scifact" / "bm25" / "run.trec").read_text().splitlines()
    assert len(run_lines) <= 300 * 1000 and run_lines[0].split()[1] == "Q0"
    # which documents come back: hand-checked queries whose one judged document BM25 ranks first by a margin
    top = {q: doc for q, _, doc, rank, *_ in (line.split() for line in run_lines) if rank == "1"}
    assert top["5"] == "13734012"  # "1/2000 in UK have abnormal PrP positivity." (11.9 vs 8.6 for the next)
    assert top["49"] == "5953485"  # "ADAR1 binds to Dicer to cleave pre-miRNA." (17.4 vs 15.0)
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


# -- build-index → query / eval --search on a small real index (60 SciFact abstracts) -------------------------
@pytest.fixture(scope="module")
def tiny_index(tiny_beir, tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "tiny-bm25"
    proc = heron("build-index", "--dataset", str(tiny_beir), "--encoder", "bm25", "--output", str(path))
    assert proc.returncode == 0, proc.stderr
    return path


def brute_force(index_path, text: str) -> tuple[list[str], np.ndarray]:
    """Every document scored from the index's own stored vectors with scipy: ids and scores, best first."""
    from heron.retrieval.sparse import SparseIndexRetriever

    retriever = SparseIndexRetriever(index_path)
    scores = (retriever.encode([text]) @ retriever.index.forward_matrix(dequantize=True).T).toarray()[0]
    order = np.lexsort((np.arange(len(scores)), -scores))
    order = order[scores[order] > 0]
    return [retriever.index.doc_ids[i] for i in order], scores[order]


def test_query_returns_the_right_documents(tiny_index, tiny_beir):
    # tiny_beir's queries are document titles: q0 is the title of its one relevant document
    query = json.loads((tiny_beir / "queries.jsonl").read_text().splitlines()[0])["text"]
    relevant = (tiny_beir / "qrels" / "train.tsv").read_text().splitlines()[1].split("\t")[1]
    want_ids, want_scores = brute_force(tiny_index, query)
    assert want_ids[0] == relevant and want_scores[0] > 1.5 * want_scores[1]
    for search in ([], ["--search", "mode=exact"], ["-s", "mode=taat"]):
        proc = heron("query", "--index", str(tiny_index), "-k", "5", "--json", *search, query)
        assert proc.returncode == 0, proc.stderr
        hits = json.loads(proc.stdout)["hits"]
        assert [h["doc_id"] for h in hits] == want_ids[:5], search
        assert np.allclose([h["score"] for h in hits], want_scores[:5], rtol=1e-5)
    proc = heron("query", "--index", str(tiny_index), "-k", "3", query)  # the table: rank 1 is that document
    assert proc.returncode == 0, proc.stderr
    first_row = next(line for line in proc.stdout.splitlines() if line.strip("│ ").startswith("1 "))
    assert first_row.split("│")[2].strip() == relevant
    assert_one_line_error(heron("query", "--index", str(tiny_index), "-s", "mode=approx", query),
                          "no approximate-search structures")


def test_eval_search_modes_give_the_same_run(tiny_index, tiny_beir, tmp_path):
    runs = {}
    for mode in ("exact", "taat"):
        proc = heron("eval", "-d", str(tiny_beir), "-i", str(tiny_index), "--search", f"mode={mode}", "-k", "10",
                     "--results-dir", str(tmp_path / mode))
        assert proc.returncode == 0, proc.stderr
        (run,) = (tmp_path / mode).rglob("run.trec")
        runs[mode] = [line.split()[:5] for line in run.read_text().splitlines()]
    assert runs["exact"] == runs["taat"] and runs["exact"]
    top = {q: doc for q, _, doc, rank, _ in runs["exact"] if rank == "1"}
    qrels = [line.split("\t") for line in (tiny_beir / "qrels" / "test.tsv").read_text().splitlines()[1:]]
    assert sum(top[q] == doc for q, doc, _ in qrels) >= 0.9 * len(qrels)  # a title finds its own abstract


def test_search_modes_with_an_allow_list(tiny_index):
    """In process, what --search mode=… selects: exact and taat rank an allow-list identically; approx refuses
    one in a single line (it would rank only the allowed documents it happens to visit) — no silent switch."""
    from heron.errors import HeronError, QueryError
    from heron.retrieval.sparse import SparseIndexRetriever

    exact, taat = SparseIndexRetriever(tiny_index), SparseIndexRetriever(tiny_index, mode="taat")
    allowed = exact.index.doc_ids[::3]
    (ids, scores), = exact.search(["cancer cells and tumour growth"], k=5, allow=allowed)
    assert ids and set(ids) <= set(allowed)
    (taat_ids, taat_scores), = taat.search(["cancer cells and tumour growth"], k=5, allow=allowed)
    assert taat_ids == ids and np.array_equal(taat_scores, scores)
    with pytest.raises(QueryError, match="approximate search cannot rank an allow-list"):
        SparseIndexRetriever(tiny_index, mode="approx").search(["cancer"], k=5, allow=allowed)
    with pytest.raises(HeronError, match="unknown search mode 'pruned' \\(choose exact, taat, approx\\)"):
        SparseIndexRetriever(tiny_index, mode="pruned")


@pytest.mark.parametrize("search, fragments", [
    (["heap_factor=abc"], ["--search: field 'heap_factor'", "'abc'"]),
    (["heap_factor=0"], ["field 'heap_factor'", "greater than 0"]),
    (["mode=pruned"], ["field 'mode'", "'exact', 'taat' or 'approx'", "'pruned'"]),
    (["preset=recall50"], ["field 'preset'", "'recall50'"]),
    (["nope=1"], ["unknown key 'nope'", "mode, preset, query_cut"]),
    (["mode"], ["expected KEY=VALUE"]),
    (["mode=taat", "mode=approx"], ["mode: given twice"]),
])
def test_search_option_errors(search, fragments):
    args = [arg for value in search for arg in ("--search", value)]
    assert_one_line_error(heron("eval", "-d", "scifact", "-i", ".", *args), *fragments)


def test_search_option_needs_an_index():
    assert_one_line_error(heron("eval", "-d", "scifact", "--search", "mode=taat"), "--search applies to --index")


# -- heron train: every trainer takes a YAML config, flags override it -----------------------------------------
@pytest.mark.parametrize("trainer", ["csr", "colbert"])
def test_train_config_file_and_flags(trainer, tmp_path, monkeypatch):
    """In process: the trainer gets the config file's fields with the given flags on top (no training)."""
    from typer.testing import CliRunner

    from heron.cli import app

    module = __import__(f"heron.training.{trainer}", fromlist=["x"])
    seen = {}
    monkeypatch.setattr(module, f"train_{trainer}", lambda config, output: seen.update(config=config) or output)
    config = tmp_path / "train.yaml"
    config.write_text("datasets: [scifact]\nsteps: 7\nbatch_size: 4\nseed: 3\n")
    result = CliRunner().invoke(app, ["train", trainer, "-c", str(config), "--steps", "9", "-o", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    got = seen["config"]
    assert (got.datasets, got.steps, got.batch_size, got.seed) == (["scifact"], 9, 4, 3)
    shipped = os.path.join(os.path.dirname(__file__), "..", "configs", "train", f"{trainer}.yaml")
    result = CliRunner().invoke(app, ["train", trainer, "-c", shipped, "-d", "nfcorpus", "-o", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert seen["config"] == type(got)(datasets=["nfcorpus"])  # the shipped file holds the defaults


@pytest.mark.parametrize("trainer", ["csr", "colbert"])
def test_train_config_errors(trainer, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("datasets: [scifact]\nsteps: 0\n")
    assert_one_line_error(heron("train", trainer, "-c", str(bad), "-o", str(tmp_path / "o")),
                          "bad.yaml: field 'steps'", "greater than or equal to 1")
    bad.write_text("steps: 5\n")
    assert_one_line_error(heron("train", trainer, "-c", str(bad), "-o", str(tmp_path / "o")),
                          "bad.yaml: field 'datasets'")


# -- self-hits: decided from the data, whatever the folder is called ------------------------------------------
def make_debates(root, scifact):
    """An ArguAna-like BEIR folder cut from SciFact: each query is a document (same id, same text) whose
    relevant document is another one, so BM25 ranks the query's own document first."""
    docs = []
    for doc in scifact.iter_corpus():
        docs.append(doc)
        if len(docs) == 20:
            break
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n"
                                               for d in docs))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": d.id, "text": d.contents}) + "\n"
                                                for d in docs[:10]))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{docs[i].id}\t{docs[i + 10].id}\t1\n" for i in range(10)))
    return [d.id for d in docs[:10]]


def test_eval_removes_self_hits_found_in_the_data(scifact, tmp_path):
    query_ids = make_debates(tmp_path / "debates", scifact)
    env = {"HERON_CACHE": str(tmp_path / "cache")}
    results = {}
    for flag in ([], ["--keep-self-hits"]):
        out = tmp_path / ("kept" if flag else "default")
        proc = heron("eval", "-d", str(tmp_path / "debates"), "-r", "bm25", "-k", "10", "--results-dir", str(out),
                     *flag, env=env)
        assert proc.returncode == 0, proc.stderr
        run = [line.split() for line in (out / "debates" / "bm25" / "run.trec").read_text().splitlines()]
        results[bool(flag)] = (proc.stdout, run, json.loads((out / "debates" / "bm25" / "metrics.json").read_text()))
    stdout, run, record = results[False]
    lines = [line for line in stdout.splitlines() if "self-hits" in line]
    assert len(lines) == 1 and "10 of 10 test query ids are corpus ids" in lines[0], stdout
    assert "--keep-self-hits" in lines[0]
    assert not any(qid == docid for qid, _, docid, *_ in run) and {row[0] for row in run} == set(query_ids)
    assert record["self_hits"] == {"removed": True, "reason": "detected: 10 of 10 test query ids are corpus ids "
                                                              "holding the query's text"}
    stdout, run, record = results[True]
    assert "self-hits" not in stdout
    top = {qid: docid for qid, _, docid, rank, *_ in run if rank == "1"}
    assert all(top[q] == q for q in query_ids)  # kept: each query's own document ranks first
    assert record["self_hits"] == {"removed": False, "reason": "forced by --keep-self-hits"}


def test_result_names_follow_one_rule():
    """``-r splade``, ``-i`` an index of splade-tiny and either with PRF are recognisably the same model."""
    from heron.eval.report import result_name
    from heron.retrieval import RETRIEVERS

    named = RETRIEVERS["splade"][0]().describe()
    assert named["name"] == "splade" and result_name(named) == "splade-tiny"
    assert result_name(RETRIEVERS["dense"][0]().describe()) == "minilm"
    assert result_name({"name": "bm25", "k1": 0.9, "b": 0.4}) == "bm25"
    index = {"name": "splade-tiny", "index": "indexes/scifact-splade-tiny", "mode": "exact"}
    assert result_name(index) == "splade-tiny"
    assert result_name({**index, "name": "splade-tiny-approx-recall95"}) == "splade-tiny-approx-recall95"
    prf = {"method": "rocchio", "docs": 3, "alpha": 1.0, "beta": 0.5, "terms": 100}
    assert result_name({**index, "name": "splade-tiny-prf-rocchio3-a1-b0.5", "prf": prf}) == \
        "splade-tiny+prf-rocchio-k3"
    assert result_name({**index, "name": "splade-tiny-prf-rocchio5-a1-b0.8",
                        "prf": {**prf, "docs": 5, "beta": 0.8, "terms": 0}}) == "splade-tiny+prf-rocchio-k5-a1-b0.8-t0"
    assert result_name({**index, "name": "splade-tiny-prf-average3", "prf": {**prf, "method": "average"}}) == \
        "splade-tiny+prf-average-k3"
    fused = {"name": "splade+dense-rrf", "fusion": "rrf",
             "members": [named, RETRIEVERS["dense"][0]().describe()]}
    assert result_name(fused) == "splade-tiny+minilm-rrf"
