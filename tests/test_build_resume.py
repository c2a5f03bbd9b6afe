"""Kill -9 at named points inside every kind of build (BM25, SPLADE, dense, bundle): the previous output stays
intact and searchable, the first rerun succeeds and equals a clean build, and nothing is left behind.

Each case copies a previous build of the kind to a fresh output, runs the new build in a child process with
``HERON_TEST_KILL_AT=POINT[:N]`` (:mod:`heron.storage.killpoints`: SIGKILL at the N-th arrival at POINT), then
checks: the child died by SIGKILL; the output holds the previous build byte for byte and gives the previous
results (after ``published``: the new build, complete); a rerun here, without the hook, succeeds at once;
its files equal those of a clean build (manifests aside: they hold build times) and its hits (doc ids and
scores for every test query) are the clean build's; beside the output there is nothing but the output. The
child uses small merge windows, so the in-process rerun also checks that they give the same postings.
docs/reliability/resume.md has the table of points.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from killing import beside, build_spec, hits, new_cache, snapshot

from heron.storage import KILL_ENV

REPO_SRC = Path(__file__).resolve().parents[1] / "src"

_CHILD = """
import json, sys
from heron.indexing.inverted import builder
builder.MERGE_WINDOW_POSTINGS = 300  # several merge windows on the tiny corpus
spec = json.loads(sys.argv[1])
if "indexes" in spec:
    from heron.build import BundleConfig, build_bundle
    build_bundle(BundleConfig.model_validate(spec), progress=False, log=lambda line: None)
else:
    from heron.build import build_index, make_config
    build_index(make_config(spec), progress=False)
"""

SPLADE = {"type": "splade", "model": "splade-tiny", "doc_max_length": 64, "batch_size": 8, "threads": 1}
DENSE = {"type": "dense", "model": "minilm", "max_length": 64, "batch_size": 8, "threads": 1}
KINDS = {  # kind → (the new build, a previous one at the same output: other settings, other files and results)
    "bm25": ({"encoder": {"type": "bm25"}, "approx": {}},
             {"encoder": {"type": "bm25", "k1": 1.5}}),
    "splade": ({"encoder": SPLADE},
               {"encoder": SPLADE, "quantization": "uint16"}),
    "dense": ({"encoder": DENSE, "faiss": {"type": "ivf-flat", "nlist": 4, "nprobe": 4}},
              {"encoder": DENSE, "faiss": {"type": "sq8"}}),
    "bundle": ({"indexes": {"bm25": {"encoder": {"type": "bm25"}}, "bm25b": {"encoder": {"type": "bm25", "b": 0.8}}}},
               {"indexes": {"bm25": {"encoder": {"type": "bm25", "k1": 1.5}},
                            "bm25b": {"encoder": {"type": "bm25", "k1": 1.5, "b": 0.8}}}}),
}
SHARD_DOCS = 16  # the tiny corpus (60 documents) in 4 shards: several checkpoints per pass

models = pytest.mark.models
# (kind, kill point). The tiny corpus has 4 shards; a bundle's members count together. Pass-1/pass-2/merge
# checkpoints of the inverted builder alone are also killed in test_inverted_index.py, publish steps of every
# index type and trainer in test_storage.py and test_publish_kill.py. A child that imports torch costs ~5-10 s,
# so SPLADE and dense have two points each.
KILLS = [
    ("bm25", "build.docstore"),
    ("bm25", "inverted.spool:3"),
    ("bm25", "inverted.pass1.data:2"),  # df of shard 2 written, its checkpoint not: the bug of issue 14
    ("bm25", "inverted.allocate"),
    ("bm25", "inverted.pass2.data:3"),
    ("bm25", "inverted.merge:2"),
    ("bm25", "inverted.blocks"),
    ("bm25", "inverted.approx"),
    ("bm25", "inverted.finalized"),
    ("bm25", "publish"),
    ("bm25", "published"),
    pytest.param("splade", "shards.written:2", marks=models),  # an encoded shard on disk, not yet listed
    pytest.param("splade", "inverted.pass1.data:3", marks=models),
    pytest.param("dense", "shards.written:2", marks=models),  # the embedding cache's second shard
    pytest.param("dense", "faiss.train", marks=models),
    ("bundle", "bundle.member:1"),  # the first member recorded
    ("bundle", "bundle.member.built:2"),  # the second built, not recorded
    ("bundle", "inverted.pass1:6"),  # inside the second member's build
    ("bundle", "publish:3"),  # the bundle's own publish (each member's is one before it)
]
# points at which the inverted builder has a checkpoint to resume from (the rest start it afresh)
RESUMED = {"inverted.pass1", "inverted.pass1.data", "inverted.allocate", "inverted.pass2", "inverted.pass2.data",
           "inverted.merge", "inverted.merge.data", "inverted.blocks", "inverted.approx"}


def _spec(kind: str, which: int, dataset: Path, output: Path) -> dict:
    return build_spec(KINDS, kind, which, dataset, output, SHARD_DOCS)


def _build_here(spec: dict) -> Path:
    if "indexes" in spec:
        from heron.build import BundleConfig, build_bundle

        return build_bundle(BundleConfig.model_validate(spec), progress=False, log=lambda line: None)
    from heron.build import build_index, make_config

    return build_index(make_config(spec), progress=False)


def _build_killed(spec: dict, point: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, KILL_ENV: point, "HERON_CACHE": str(cache), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO_SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", _CHILD, json.dumps(spec)], env=env, capture_output=True, text=True,
                          timeout=300, check=False)


class Kind:
    """A clean build of one kind, a previous build at another path, and their hits."""

    def __init__(self, kind: str, root: Path, dataset: Path, queries: list[str]):
        self.kind, self.dataset, self.queries = kind, dataset, queries
        self.cache = new_cache(root / "cache")
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("HERON_CACHE", str(self.cache))
            self.clean = _build_here(_spec(kind, 0, dataset, root / "clean" / "out"))
            self.previous = _build_here(_spec(kind, 1, dataset, root / "previous" / "out"))
        self.clean_files, self.clean_hits = snapshot(self.clean, manifests=False), hits(self.clean, queries)
        self.previous_hits = hits(self.previous, queries)
        assert self.previous_hits != self.clean_hits  # so the checks below tell the two apart


@pytest.fixture(scope="module")
def kinds(tiny_beir, tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    queries = [json.loads(line)["text"] for line in (tiny_beir / "queries.jsonl").read_text().splitlines()]
    made: dict[str, Kind] = {}

    def get(kind: str) -> Kind:
        if kind not in made:
            made[kind] = Kind(kind, tmp_path_factory.mktemp(f"resume-{kind}"), tiny_beir, queries)
        return made[kind]

    yield get
    torch.set_num_threads(threads)  # the encoders were asked for one thread


@pytest.mark.parametrize(("kind", "point"), KILLS)
def test_kill_then_first_rerun(kind, point, kinds, tmp_path, monkeypatch):
    ref = kinds(kind)
    out = tmp_path / "work" / "out"
    out.parent.mkdir()
    shutil.copytree(ref.previous, out)
    before = snapshot(out)
    cache = new_cache(tmp_path / "cache", None if point.startswith("shards.") else ref.cache / "embeddings")
    monkeypatch.setenv("HERON_CACHE", str(cache))
    spec = _spec(kind, 0, ref.dataset, out)

    killed = _build_killed(spec, point, cache)
    assert killed.returncode == -9, f"not killed at {point}: rc {killed.returncode}\n{killed.stderr[-3000:]}"
    if point.startswith("published"):  # killed after the swap: the new build is in place, complete
        assert snapshot(out, manifests=False) == ref.clean_files and hits(out, ref.queries) == ref.clean_hits
    else:
        assert snapshot(out) == before  # the previous output, byte for byte
        assert hits(out, ref.queries) == ref.previous_hits  # and it still opens and answers as before
    assert beside(out)  # the killed build left something behind

    _build_here(spec)  # the first rerun, without the hook
    if kind in ("bm25", "splade"):
        resumed = json.loads((out / "manifest.json").read_text())["build"]["resumed"]
        assert resumed == (point.split(":")[0] in RESUMED)
    assert snapshot(out, manifests=False) == ref.clean_files
    assert hits(out, ref.queries) == ref.clean_hits
    assert beside(out) == []  # no staging, scratch, build or lock entry left
    if kind == "dense":  # the embedding cache is complete and holds nothing half-written
        (folder,) = (cache / "embeddings").iterdir()
        manifest = json.loads((folder / "shards.json").read_text())
        assert manifest["complete"] and sorted(p.name for p in folder.iterdir()) == sorted(
            ["shards.json"] + [s["file"] for s in manifest["shards"]])


# -- whose leftovers recover removes ------------------------------------------------------------------------------
def test_recover_removes_only_the_leftovers_of_dead_builds(tmp_path):
    """Ownership is the flock on the directory, not the pid in its name: a running build's staging directory
    is kept (whatever its pid), a dead one's removed, even when its pid now belongs to a live process."""
    from heron import storage

    target = tmp_path / "out"
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from heron import storage; "
         f"print(storage.staging_dir({str(target)!r}), flush=True); time.sleep(60)"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_SRC), os.environ.get("PYTHONPATH", "")])},
        stdout=subprocess.PIPE, text=True)
    try:
        running = Path(child.stdout.readline().strip())
        assert running.is_dir() and running.name == f".out.staged-{child.pid}"
        reused = tmp_path / ".out.staged-aux-1"  # left by a killed build whose pid is now init's
        reused.mkdir()
        (reused / "docs.jsonl").write_text("x")
        with storage.scratch(target, "aux") as mine:  # this process's own, while it works
            storage.recover(target)
            assert mine.is_dir() and running.is_dir() and not reused.exists()
        assert not mine.exists()
    finally:
        child.kill()
        child.wait()
    storage.recover(target)  # its owner is gone now
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_second_build_of_the_same_output_is_refused(tiny_beir, tmp_path):
    import fcntl

    from heron.errors import HeronError

    out = tmp_path / "out"
    spec = {"dataset": str(tiny_beir), "output": str(out), "encoder": {"type": "bm25"}}
    bundle = {"dataset": str(tiny_beir), "output": str(out), "indexes": {"bm25": {"encoder": {"type": "bm25"}}}}
    with open(tmp_path / ".out.lock", "w") as other:  # held as another process's build holds it
        fcntl.flock(other, fcntl.LOCK_EX)
        for config in (spec, bundle):
            with pytest.raises(HeronError, match="another build of this index is running"):
                _build_here(config)
    assert not out.exists()
    _build_here(spec)  # once it is released
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize(("kind", "point"), [("faiss", "faiss.add"), ("multivector", "multivector.spool"),
                                             ("multivector", "multivector.fde")])
def test_index_builders_killed_inside(kind, point, tmp_path):
    """The FAISS and multi-vector builders (no resume: they start afresh) killed mid-build, on the synthetic
    inputs of test_storage.py: previous index intact, first rerun equal to a clean build, nothing left."""
    import textwrap

    from test_storage import BUILDS, run_child

    def code(out: Path, seed: int) -> str:
        return f"OUT = {str(out)!r}\nSEED = {seed}\n" + textwrap.dedent(BUILDS[kind])

    clean, out = tmp_path / "clean" / "index", tmp_path / "work" / "index"
    assert run_child(code(clean, 2), None).returncode == 0
    assert run_child(code(out, 1), None).returncode == 0
    before = snapshot(out)
    assert snapshot(out, manifests=False) != snapshot(clean, manifests=False)  # the rerun's output is told apart
    killed = run_child(code(out, 2), point)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert snapshot(out) == before and beside(out)
    rerun = run_child(code(out, 2), None)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert snapshot(out, manifests=False) == snapshot(clean, manifests=False)
    assert beside(out) == []
