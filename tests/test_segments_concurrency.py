"""Readers searching in threads while another thread adds, deletes, upserts, commits and merges: no reader ever
errs, and every answer is exactly the answer of a fresh build over the live documents of one commit."""

from __future__ import annotations

import threading
import traceback

from test_segments import Corpus, assert_same, build_member, queries

from heron.indexing.registry import open_index
from heron.indexing.segments import IndexWriter, SegmentedIndex, convert_to_segmented


def test_searches_during_adds_and_merges_see_one_commit_each(tmp_path):
    corpus = Corpus(21)
    model = {f"d{i}": 0 for i in range(30)}
    path = build_member("inverted", list(model.items()), tmp_path / "ix", corpus)
    convert_to_segmented(path)
    batches = []
    for b in range(8):  # built beforehand: the writer thread only adds, deletes, commits and merges
        docs = [(f"d{30 + 6 * b + i}", b + 1) for i in range(6)] + [(f"d{3 * b}", b + 1)]  # one upsert each
        batches.append((docs, build_member("inverted", docs, tmp_path / f"n{b}", corpus)))
    qs = queries("inverted", 8)
    expected: dict[int, list[tuple[str, int]]] = {1: list(model.items())}  # generation → live docs, global order
    seen: list[tuple[int, tuple]] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def record_new_generations(writer: IndexWriter) -> None:
        for generation in range(max(expected) + 1, writer.generation + 1):
            ids = SegmentedIndex.open(path, generation=generation).doc_ids
            expected[generation] = [(d, model[d]) for d in ids]

    def write() -> None:
        try:
            with IndexWriter(path, merge_policy={"segments_per_tier": 3, "min_docs": 5}) as writer:
                for b, (docs, built) in enumerate(batches):
                    writer.add_segment(built, upsert=True)
                    model.update(docs)
                    gone = [f"d{i}" for i in range(b, 60, 9) if f"d{i}" in model]
                    writer.delete(gone)
                    for d in gone:
                        del model[d]
                    writer.commit()
                    record_new_generations(writer)
                    if b % 3 == 2:
                        writer.merge(1)
                        record_new_generations(writer)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
            traceback.print_exc()
        finally:
            done.set()

    def read(fresh: bool) -> None:
        try:
            snapshot = SegmentedIndex.open(path)
            while True:
                finished = done.is_set()
                snapshot = SegmentedIndex.open(path) if fresh else (snapshot.refresh() or snapshot)
                seen.append((snapshot.generation, snapshot.member("ix").search_batch(qs, 10, mode="exact")))
                if finished:
                    return
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            traceback.print_exc()

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read, args=(f,)) for f in (False, True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, repr(errors[0])
    assert len({g for g, _ in seen}) >= 3, "the readers saw too few commits to test anything"
    answers = {}
    for generation in sorted({g for g, _ in seen}):
        fresh = build_member("inverted", expected[generation], tmp_path / f"fresh{generation}", corpus)
        answers[generation] = open_index(fresh).search_batch(qs, 10, mode="exact")
    for generation, got in seen:
        assert_same(got, answers[generation], f"generation {generation}")
