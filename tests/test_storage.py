"""heron.storage: atomic publish, and every index build killed (SIGKILL) at its publish step.

Each build runs twice into the same output: once to completion, then again in a child process that
SIGKILLs itself right before the swap (``HERON_TEST_KILL_AT=publish``) or right after it (``published``).
Before the swap the previous output must be intact (same files, same bytes) and open; after it the new
one must be complete; and a third, normal build must succeed and leave no staging leftovers.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from heron import storage
from heron.errors import HeronError


def snapshot(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run_child(code: str, kill_at: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop(storage.KILL_ENV, None)
    if kill_at:
        env[storage.KILL_ENV] = kill_at
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=300)


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")
                  and not p.name.endswith(".lock"))


# -- the storage module itself --------------------------------------------------------------------------------
def test_staged_publish_replaces_only_on_success(tmp_path):
    target = tmp_path / "out"
    with storage.staged(target) as tmp:
        (tmp / "a.txt").write_text("one")
    assert (target / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError), storage.staged(target) as tmp:
        (tmp / "a.txt").write_text("two")
        raise RuntimeError("the build failed")
    assert (target / "a.txt").read_text() == "one" and leftovers(target) == []
    with storage.staged(target) as tmp:
        (tmp / "b.txt").write_text("three")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"] and leftovers(target) == []


def test_publish_without_exchange_recovers_a_cut_publish(tmp_path, monkeypatch):
    from heron.storage import directories

    monkeypatch.setattr(directories, "_exchange", lambda a, b: False)  # e.g. a filesystem without renameat2
    target = tmp_path / "out"
    for text in ("old", "new"):
        with storage.staged(target) as tmp:
            (tmp / "f").write_text(text)
    assert (target / "f").read_text() == "new" and leftovers(target) == []
    os.rename(target, tmp_path / ".out.old")  # a publish cut between its two renames
    storage.recover(target)
    assert (target / "f").read_text() == "new" and leftovers(target) == []


def test_atomic_files_and_versioned_reader(tmp_path):
    path = tmp_path / "m.json"
    storage.write_json_atomic(path, {"format": "heron-x", "version": 1, "é": [1, 2]})
    assert storage.read_versioned_json(path, "heron-x", 1, "heron X file")["é"] == [1, 2]
    with pytest.raises(HeronError, match="heron X file format version 1 is not supported"):
        storage.read_versioned_json(path, "heron-x", 2, "heron X file")
    with pytest.raises(HeronError, match=r"not a heron Y file \(format 'heron-x'\)"):
        storage.read_versioned_json(path, "heron-y", 1, "heron Y file")
    path.write_bytes(b"\xff{")
    with pytest.raises(HeronError, match="m.json: unreadable"):
        storage.read_versioned_json(path, "heron-x", 1, "heron X file")
    with pytest.raises(HeronError, match="missing"):
        storage.read_versioned_json(tmp_path / "none.json", "heron-x", 1, "heron X file")
    storage.save_array_atomic(tmp_path / "a.npy", np.arange(5))
    assert np.load(tmp_path / "a.npy").tolist() == [0, 1, 2, 3, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "m.json"]  # no temporary files left


# -- every index build, killed at its publish step --------------------------------------------------------------
BUILDS = {
    "inverted": """
        import numpy as np, scipy.sparse as sp
        from heron.indexing.inverted import build_inverted_index
        rng = np.random.default_rng(SEED)
        rows = sp.random(50, 40, density=0.2, format="csr", random_state=SEED, dtype=np.float32)
        build_inverted_index([([f"d{i}" for i in range(50)], rows)], OUT, vocab=[f"t{j}" for j in range(40)],
                             encoder={"type": "test"}, progress=False)
    """,
    "faiss": """
        import numpy as np
        from heron.indexing.faiss_index import build_faiss_index
        vectors = np.random.default_rng(SEED).normal(size=(50, 8)).astype(np.float32)
        build_faiss_index([([f"d{i}" for i in range(50)], vectors)], OUT, dim=8, index_type="flat", progress=False)
    """,
    "multivector": """
        import numpy as np
        from heron.indexing.multivector_store import build_multivector_index
        rng = np.random.default_rng(SEED)
        clouds = [rng.normal(size=(int(rng.integers(1, 6)), 8)).astype(np.float32) for _ in range(30)]
        build_multivector_index([([f"d{i}" for i in range(30)], clouds)], OUT, dim=8, muvera={}, progress=False)
    """,
}


@pytest.mark.parametrize("kind", sorted(BUILDS))
def test_index_build_killed_at_publish_keeps_the_previous_index(kind, tmp_path):
    from heron.indexing.registry import open_index

    out = tmp_path / "index"
    code = lambda seed: f"OUT = {str(out)!r}\nSEED = {seed}\n" + textwrap.dedent(BUILDS[kind])  # noqa: E731
    assert run_child(code(1), None).returncode == 0
    before = snapshot(out)
    killed = run_child(code(2), "publish")
    assert killed.returncode == -9, killed.stderr
    assert snapshot(out) == before  # the previous index, byte for byte
    open_index(out, verify=True)
    killed = run_child(code(2), "published")
    assert killed.returncode == -9, killed.stderr
    after = snapshot(out)
    assert after != before
    open_index(out, verify=True)  # the new index is complete
    done = run_child(code(3), None)
    assert done.returncode == 0, done.stderr
    open_index(out, verify=True)
    assert leftovers(out) == []


def test_bundle_build_killed_at_publish_keeps_the_previous_bundle(tmp_path, tiny_beir):
    import heron

    out = tmp_path / "bundle"
    config = tmp_path / "bundle.yaml"

    def build(b: float, kill_at: str | None):
        config.write_text(json.dumps({"dataset": str(tiny_beir), "output": str(out),
                                      "indexes": {"bm25": {"encoder": {"type": "bm25", "b": b}}}}))
        return run_child(f"""
            from heron.build import build_bundle, load_bundle_config
            build_bundle(load_bundle_config({str(config)!r}), progress=False, log=lambda m: None)
        """, kill_at)

    assert build(0.4, None).returncode == 0
    before = snapshot(out)
    hits = heron.Index.open(out).search("cancer", k=3)
    assert build(0.8, "publish").returncode == -9
    assert snapshot(out) == before
    assert heron.Index.open(out).search("cancer", k=3) == hits
    assert build(0.8, None).returncode == 0
    assert snapshot(out) != before
    assert json.loads((out / "bm25" / "manifest.json").read_text())["encoder"]["b"] == 0.8
    assert leftovers(out) == []


@pytest.mark.lucene
def test_lucene_build_killed_at_publish_leaves_no_index(tmp_path):
    pytest.importorskip("pyserini")
    out = tmp_path / "lucene"
    code = f"""
        from heron.indexing.lucene import build_bm25_index
        build_bm25_index([("d1", "coffee and cancer"), ("d2", "vitamin d and bones")], {str(out)!r}, threads=1)
    """
    killed = run_child(code, "publish")
    assert killed.returncode == -9, killed.stderr
    assert not out.exists()  # never a half-written Lucene index at the output path
    done = run_child(code, None)
    assert done.returncode == 0, done.stderr
    assert (out / "segments_1").exists() or any(p.name.startswith("segments_") for p in out.iterdir())
    assert leftovers(out) == []


def test_build_lock_refuses_or_waits(tmp_path):
    """A second build of a target is refused at once; a cache filler (``wait=True``) waits its turn."""
    import threading

    from heron.errors import HeronError
    from heron.storage import build_lock

    target = tmp_path / "idx"
    held, release, order = threading.Event(), threading.Event(), []

    def first():
        with build_lock(target):
            held.set()
            release.wait(10)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    held.wait(10)
    with pytest.raises(HeronError, match="another build of this index is running"):
        with build_lock(target):
            pass
    threading.Timer(0.2, release.set).start()
    with build_lock(target, wait=True):
        order.append("second")
    thread.join()
    assert order == ["first done", "second"]
