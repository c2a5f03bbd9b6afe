"""Writers of a segmented index SIGKILLed (``HERON_TEST_KILL_AT``) at each step of add, delete, commit, merge and
conversion: the last commit opens and answers like a fresh build of its live documents, a rerun completes, and
nothing is left behind (heron.indexing.segments.writer lists the kill points)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_segments import Corpus, assert_same, build_member, check_against_scratch, queries

from heron import storage
from heron.indexing.registry import open_index
from heron.indexing.segments import IndexWriter, SegmentedIndex, convert_to_segmented, is_segmented
from heron.storage.commits import latest_generation, read_commit

TESTS = Path(__file__).resolve().parent
BASE = {f"d{i}": 0 for i in range(20) if i != 1} | {f"d{i}": 0 for i in range(20, 25)}  # generation 2
AFTER = {d: v for d, v in BASE.items() if d not in ("d5", "d21")} | {"d3": 1} | {f"d{i}": 1 for i in range(25, 30)}

# the child: add (upsert) a prepared segment, delete, commit (generation 3), merge to one segment (generation 4);
# run again after a kill, it does what the last commit still lacks
CHILD = """
import sys
from pathlib import Path
from heron.indexing.segments import IndexWriter
from heron.storage.commits import latest_generation
path, new = Path(sys.argv[1]), Path(sys.argv[2])
with IndexWriter(path, merge_policy={"enabled": False}) as writer:
    if latest_generation(path) == 2:
        writer.add_segment(new, upsert=True)
        writer.delete(["d5", "d21"])
        writer.commit()
    writer.merge(1)
"""


def run_child(code: str, args: list[str], kill_at: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop(storage.KILL_ENV, None)
    if kill_at:
        env[storage.KILL_ENV] = kill_at
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env, capture_output=True,
                          text=True, timeout=300)


def prepare(tmp: Path, corpus: Corpus) -> tuple[Path, Path]:
    """Generation 2 of a two-segment index with a deletion, and the segment the child adds."""
    path = build_member("inverted", [(f"d{i}", 0) for i in range(20)], tmp / "ix", corpus)
    convert_to_segmented(path)
    with IndexWriter(path, merge_policy={"enabled": False}) as writer:
        writer.add_segment(build_member("inverted", [(f"d{i}", 0) for i in range(20, 25)], tmp / "n0", corpus))
        writer.delete(["d1"])
    assert latest_generation(path) == 2
    new = build_member("inverted", [("d3", 1)] + [(f"d{i}", 1) for i in range(25, 30)], tmp / "new", corpus)
    return path, new


def assert_clean(path: Path) -> None:
    """Only what the last two commits reference is left, in the index and beside it."""
    referenced = set()
    latest = latest_generation(path)
    for generation in (latest - 1, latest):
        if (path / f"commit-{generation}.json").exists():
            for entry in read_commit(path, generation)["segments"]:
                referenced.add(f"segments/{entry['name']}")
                if entry["live"]:
                    referenced.add(entry["live"])
    present = {f"segments/{p.name}" for p in (path / "segments").iterdir()}
    present |= {f"live/{p.name}" for p in (path / "live").iterdir()}
    assert present == referenced
    assert all(p.name.startswith("commit-") or p.name in ("segments", "live") for p in path.iterdir())
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(".ix")) == []


@pytest.mark.parametrize("point", ["segments.add.moved", "segments.live", "commit.publish", "commit.linked",
                                   "segments.committed", "inverted.merge", "segments.merge.built",
                                   "segments.merge.moved", "commit.publish:2"])
def test_writer_killed_then_rerun(point, tmp_path):
    corpus = Corpus(11)
    path, new = prepare(tmp_path, corpus)
    killed = run_child(CHILD, [str(path), str(new)], point)
    assert killed.returncode == -9, f"not killed at {point}: rc {killed.returncode}\n{killed.stderr[-3000:]}"
    generation = latest_generation(path)
    assert generation == (2 if point in ("segments.add.moved", "segments.live", "commit.publish") else 3)
    check_against_scratch(path, BASE if generation == 2 else AFTER, corpus, tmp_path, members={"ix": "inverted"},
                          ks=(3, 40))
    if generation == 2 and not new.exists():  # moved into the index by the killed writer, then cleaned up: the
        new = build_member("inverted", [("d3", 1)] + [(f"d{i}", 1) for i in range(25, 30)], new, corpus)  # rebuild
    rerun = run_child(CHILD, [str(path), str(new)] if generation == 2 else [str(path), "-"], None)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    index = check_against_scratch(path, AFTER, corpus, tmp_path, members={"ix": "inverted"}, ks=(3, 40))
    assert len(index.segments) == 1 and index.generation == 4
    assert_clean(path)


@pytest.mark.parametrize("point", ["publish", "published"])
def test_conversion_killed_then_rerun(point, tmp_path):
    corpus = Corpus(12)
    path = build_member("inverted", [(f"d{i}", 0) for i in range(15)], tmp_path / "ix", corpus)
    want = open_index(path).search_batch(queries("inverted"), 10)
    code = f"from heron.indexing.segments import convert_to_segmented\nconvert_to_segmented({str(path)!r})\n"
    killed = run_child(code, [], point)
    assert killed.returncode == -9, killed.stderr[-3000:]
    if is_segmented(path):
        assert point == "published"
        got = SegmentedIndex.open(path).member("ix").search_batch(queries("inverted"), 10)
    else:
        assert point == "publish"
        got = open_index(path).search_batch(queries("inverted"), 10)
    assert_same(got, want)
    convert_to_segmented(path)
    assert SegmentedIndex.open(path).member("ix").search_batch(queries("inverted"), 10)[0] == want[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ix"]
