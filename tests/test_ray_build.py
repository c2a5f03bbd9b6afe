"""``heron build-index --ray`` on real Ray clusters (issue 18, Deliver 1): a local ``ray.init()`` cluster and a
two-node cluster on loopback (``ray start --head`` + ``ray start --address``, each a subprocess this module
starts and stops), against the single-process build of the same config: identical ids AND scores in exact
search. Plus resume after a killed driver, and the one-line errors.

The corpus is ~60 real SciFact documents (tests/conftest.make_tiny_beir) cut into ranges of 10, so a build has
six ranges for two encoder actors.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import make_tiny_beir
from test_bad_input import assert_one_line_error, cli
from test_cli import heron

pytest.importorskip("ray", reason="the distributed extra (ray[data]) is not installed: pip install heron[distributed]")

DOCS, SHARD = 60, 10
RANGES = DOCS // SHARD
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_tiny_beir(tmp_path_factory.mktemp("raycorpus") / "tiny", num_docs=DOCS, num_train=0, num_test=15)


def _config(corpus: Path, output: Path, mode: str = "model", ray: dict | None = None, kind: str = "splade"):
    from heron.build import make_config

    encoder = {"type": kind} if kind != "splade" else {"type": "splade", "query_mode": mode}
    raw = {"dataset": str(corpus), "output": str(output), "shard_docs": SHARD, "encoder": encoder}
    if ray is not None:
        raw["ray"] = ray
    return make_config(raw)


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    """Single-process builds (no Ray) of the configs the Ray builds are compared with, built on first use."""
    from heron.build import build_index

    root, built = tmp_path_factory.mktemp("rayref"), {}

    def get(mode: str = "model", kind: str = "splade") -> Path:
        if (mode, kind) not in built:
            built[mode, kind] = build_index(_config(corpus, root / f"{kind}-{mode}", mode, kind=kind), progress=False)
        return built[mode, kind]

    return get


def assert_same_results(expected: Path, got: Path, corpus: Path) -> None:
    """Exact search over both indexes gives the same ids and the same scores (bit for bit) for every query."""
    from heron.api import Index

    a, b = Index.open(expected), Index.open(got)
    queries = [json.loads(line)["text"] for line in (corpus / "queries.jsonl").read_text().splitlines()]
    for query in queries:
        want = [(h.doc_id, h.score) for h in a.search(query, k=10)]
        assert want, query
        assert [(h.doc_id, h.score) for h in b.search(query, k=10)] == want, query


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_nodes():
    """A Ray cluster of two nodes on loopback, 1 CPU each: ``ray start --head --block`` and ``ray start --address
    --block`` as subprocesses in sessions of their own, with a private temp dir; torn down by signalling exactly
    those process groups (never ``ray stop``, which would stop other sessions' clusters too)."""
    temp = Path(tempfile.mkdtemp(prefix="hray", dir="/tmp"))  # short: Ray's socket paths have a length limit
    port = _free_port()
    ray_cli = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--num-cpus", "1",
               "--disable-usage-stats", "--object-store-memory", str(100 * 2**20)]
    # RAY_AUTH_MODE: a private loopback cluster without token authentication (``ray start`` turns it on when a
    # ~/.ray/auth_token exists, and this test's driver would then need that token)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
               RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    procs = []
    try:
        procs.append(subprocess.Popen([*ray_cli, "--head", "--port", str(port), "--temp-dir", str(temp),
                                       "--include-dashboard", "false"],
                                      env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                                      stderr=open(temp / "head.log", "w")))
        address = f"127.0.0.1:{port}"
        _wait_for_nodes(address, 1, procs)
        procs.append(subprocess.Popen([*ray_cli, "--address", address],
                                      env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                                      stderr=open(temp / "worker.log", "w")))
        _wait_for_nodes(address, 2, procs)
        yield address
    finally:
        for proc in reversed(procs):
            _stop_group(proc)
        import shutil

        shutil.rmtree(temp, ignore_errors=True)


def _wait_for_nodes(address: str, count: int, procs, timeout: float = 90.0) -> None:
    """Wait until the cluster at ``address`` reports ``count`` alive nodes (a subprocess asks, so this test
    process keeps no Ray connection)."""
    probe = (f"import ray; ray.init(address={address!r}, logging_level='ERROR', log_to_driver=False); "
             f"print(sum(n['Alive'] for n in ray.nodes()))")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            assert proc.poll() is None, f"ray start exited with {proc.returncode}"
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
        if done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == [str(count)]:
            return
        time.sleep(1.0)
    raise AssertionError(f"the Ray cluster at {address} did not reach {count} nodes")


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the ``ray start --block`` process group this module started (it stops its node's processes),
    SIGKILL what is left of the group after a grace period."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def _heron(*args) -> tuple[int, str, str]:
    """``heron ARGS`` as a command of its own (``test_cli.heron``, this checkout's ``src`` first on the path):
    (exit code, stdout, stderr). Every Ray connection in this module is made by such a child, never by the pytest
    worker: a worker that was a driver on a cluster this module later stops can be taken down with it (an xdist
    "node down" seen once in CI)."""
    done = heron(*map(str, args), env={"PYTHONPATH": os.pathsep.join([str(REPO / "src"),
                                                                       os.environ.get("PYTHONPATH", "")])})
    return done.returncode, done.stdout, done.stderr


def _build_command(corpus: Path, output: Path, tmp_path: Path, mode: str = "model", ray: dict | None = None,
                   kind: str = "splade") -> tuple[int, str, str]:
    """``heron build-index CONFIG`` for the config ``_config`` makes (written as JSON, which YAML reads)."""
    config = tmp_path / f"{output.name}-{kind}-{mode}.yaml"
    config.write_text(_config(corpus, output, mode, ray, kind).model_dump_json(exclude_none=True))
    return _heron("build-index", config)


# -- (1) local cluster ------------------------------------------------------------------------------------------
def test_local_ray_build_equals_single_process(corpus, reference, tmp_path):
    """``heron build-index CONFIG --ray`` (a YAML config with a ``ray:`` section; ``ray.init()`` on this machine,
    two CPU actors), run as a command: the segmented index searches exactly as the single-process build (ids and
    scores); the work folder is gone and the index passes its full check. (A process of its own: after a local
    ``ray.init()`` session, Ray Data actors of a later session in the same process on another cluster fail to
    start, a Ray limitation; a command is what users run anyway.)"""
    from heron.indexing.segments import SegmentedIndex, segmented_problems

    out = tmp_path / "ray"
    config = tmp_path / "ray.yaml"
    config.write_text(json.dumps({"dataset": str(corpus), "output": str(out), "shard_docs": SHARD,
                                  "encoder": {"type": "splade"}, "ray": {"local_cpus": 2, "workers": 2}}))
    code, out_text, err = _heron("build-index", config, "--ray")
    assert code == 0, err[-3000:]
    assert "index ready" in out_text and "on 2 CPU actor(s)" in err
    assert not (tmp_path / "ray.ray").exists()
    snapshot = SegmentedIndex.open(out)
    assert len(snapshot.segments) == 2 and segmented_problems(out) == []
    assert_same_results(reference("model"), out, corpus)


# -- (2) two nodes on loopback ----------------------------------------------------------------------------------
def test_two_node_cluster_builds_the_same_index(corpus, reference, two_nodes, tmp_path):
    """Head + worker node on loopback (one CPU actor on each): inference-free SPLADE (IDF query weights from the
    summed per-range document frequencies) gives the single-process build's ids and scores; its ranges were
    encoded on both nodes' actors; merge: true leaves one segment."""
    from heron.indexing.segments import SegmentedIndex

    out = tmp_path / "ray"
    code, _, err = _build_command(corpus, out, tmp_path, "idf", ray={"address": two_nodes, "merge": True})
    assert code == 0, err[-3000:]
    assert f"{RANGES} ranges encoded on 2 node(s)" in err, err
    assert len(SegmentedIndex.open(out).segments) == 1
    assert_same_results(reference("idf"), out, corpus)


# -- (3) a killed build resumes -----------------------------------------------------------------------------------
def test_killed_build_resumes_only_missing_ranges(corpus, reference, two_nodes, tmp_path):
    """The driver is SIGKILLed as the first range's result arrives (``HERON_TEST_KILL_AT=ray.range``); the rerun
    keeps every range that was done (its files untouched), encodes only the others, and the index equals the
    single-process build. Dense (MiniLM, FAISS flat) on the two-node cluster: the dense path's equality test too
    (the SPLADE ones are the local and two-node builds above; one build fewer keeps the suite short)."""
    from heron.build.ray_executor import STATS_FILE, range_dir

    out = tmp_path / "ray"
    env = dict(os.environ, HERON_TEST_KILL_AT="ray.range",
               PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]))
    driver = ("import sys; from test_ray_build import _config; from heron.build import build_index; "
              f"build_index(_config(__import__('pathlib').Path({str(corpus)!r}), "
              f"__import__('pathlib').Path({str(out)!r}), ray={{'address': {two_nodes!r}}}, kind='dense'), "
              f"progress=False)")
    killed = subprocess.run([sys.executable, "-c", driver], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not out.exists()
    work = out.with_name("ray.ray")
    time.sleep(2.0)  # let the dead job's actors be reaped
    done = {i: (range_dir(work, i) / STATS_FILE).read_bytes() for i in range(RANGES)
            if (range_dir(work, i) / STATS_FILE).is_file()}
    assert done, "the kill point fires after a range is written"
    code, _, err = _build_command(corpus, out, tmp_path, ray={"address": two_nodes}, kind="dense")
    assert code == 0, err[-3000:]
    line = next(line for line in err.splitlines() if "ranges (" in line)
    encoded = int(line.split("encoding ")[1].split(" of ")[0])
    assert encoded <= RANGES - len(done), line
    assert not work.exists()
    assert_same_results(reference(kind="dense"), out, corpus)


def test_resume_keeps_done_ranges_untouched(corpus, tmp_path):
    """What the kill test relies on, checked without a cluster: a done range is recognised (stats for this plan,
    shard intact) and a damaged shard makes it missing again."""
    from heron.build.ray_executor import encode_range, make_encoder, plan_ranges, range_dir, range_stats

    ranges, total = plan_ranges(corpus / "corpus.jsonl", SHARD)
    assert total == DOCS and [r["stop"] - r["start"] for r in ranges] == [SHARD] * RANGES
    encoder = make_encoder("splade", {"doc_model": "splade-tiny", "batch_size": 32, "threads": 1, "device": "cpu"})
    work = tmp_path / "work"
    stats = encode_range(encoder, "splade", corpus / "corpus.jsonl", work, ranges[1], "p1")
    assert range_stats(work, ranges[1], "p1") == stats and stats["num_docs"] == SHARD
    assert range_stats(work, ranges[1], "p2") is None  # another plan
    assert range_stats(work, ranges[0], "p1") is None  # never encoded
    shard = next(range_dir(work, 1).glob("shard-*.npz"))
    shard.chmod(0o644)
    shard.write_bytes(shard.read_bytes()[:-7] + b"damaged")
    assert range_stats(work, ranges[1], "p1") is None


# -- (4) bad input and the optional import -------------------------------------------------------------------------
def test_bm25_with_ray_is_a_one_line_error(corpus, tmp_path):
    result = cli("build-index", "-d", corpus, "--encoder", "bm25", "-o", tmp_path / "x", "--ray")
    assert_one_line_error(result, "bm25", "without --ray", after_progress=True)
    assert not (tmp_path / "x").exists()


def test_unreachable_address_is_a_quick_one_line_error(corpus, tmp_path):
    port = _free_port()  # nothing listens there
    result = _heron("build-index", "-d", corpus, "--encoder", "splade", "-o", tmp_path / "x", "--ray-address",
                    f"127.0.0.1:{port}")
    assert_one_line_error(result, f"127.0.0.1:{port}", "ray start --head", after_progress=True)
    assert not (tmp_path / "x").exists()


def test_bad_line_in_a_range_is_a_one_line_error(corpus, two_nodes, tmp_path):
    """A malformed document line is found by the actor that reads its range: the build fails with the one-line
    error a single-process build gives (file and line), raised through Ray's wrappers."""
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("queries.jsonl", "qrels"):
        (bad / name).symlink_to(corpus / name)
    lines = (corpus / "corpus.jsonl").read_text().splitlines(keepends=True)
    lines[33] = '{"_id": "broken", "text": }\n'
    (bad / "corpus.jsonl").write_text("".join(lines))
    result = _heron("build-index", "-d", bad, "--encoder", "splade", "-o", tmp_path / "x", "--ray-address", two_nodes)
    assert_one_line_error(result, "corpus.jsonl:34", after_progress=True)
    assert not (tmp_path / "x").exists()


def test_ray_flag_conflicts(corpus, tmp_path):
    result = cli("build-index", "-d", corpus, "--encoder", "splade", "-o", tmp_path / "x", "--no-ray",
                 "--ray-workers", "2")
    assert_one_line_error(result, "--no-ray")


def test_build_without_ray_never_imports_ray(corpus, tmp_path):
    """A normal build (and importing heron's build package and CLI) leaves ``ray`` out of ``sys.modules``."""
    code = ("import sys, heron.cli, heron.build.ray_executor; from heron.build import build_index, make_config; "
            f"build_index(make_config({{'dataset': {str(corpus)!r}, 'output': {str(tmp_path / 'bm25')!r}, "
            "'encoder': {'type': 'bm25'}}), progress=False); print('ray' in sys.modules)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"
