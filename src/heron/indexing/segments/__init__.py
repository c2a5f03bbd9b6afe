"""Segmented indexes: immutable segments plus commit points, so an index can take adds, deletes, updates and
merges while readers keep searching one snapshot.

A *segmented index* is a directory (:mod:`~heron.indexing.segments.layout`)::

    INDEX/
      commit-<N>.json        sealed commit point, generation N (heron.storage.commits): the segments, each
                             {name, num_docs, deleted, live, live_file, manifest_checksum}, the layout
                             ("index" or "bundle"), the members and their kinds, the merge policy
      segments/<seg>/        an immutable, complete heron index directory or bundle directory
      live/<seg>-g<N>.npy    live-document bitmap of a segment as of commit N (absent: all live)

* :func:`convert_to_segmented` turns a classic index or bundle into a one-segment segmented index in place;
* :class:`SegmentedIndex` opens one commit (:mod:`~heron.indexing.segments.reader`); ``member(name)`` is a
  :class:`~heron.indexing.base.SearchIndex` over every segment's live documents, searched per segment and
  merged into the global top-k (exactly a from-scratch build's results for the exact modes);
* :func:`segmented_problems` checks every byte of a commit's files (``heron index check``);
* :class:`IndexWriter` adds segments, deletes, upserts, commits and merges
  (:mod:`~heron.indexing.segments.writer`, :mod:`~heron.indexing.segments.merging`).

Example::

    >>> import numpy as np, scipy.sparse as sp, tempfile, pathlib
    >>> from heron.indexing.inverted.builder import build_inverted_index
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> def build(ids, rows, out):
    ...     return build_inverted_index([(ids, sp.csr_matrix(np.array(rows, np.float32)))], out, vocab=["a", "b"],
    ...                                 encoder={}, scale=10.0, progress=False)
    >>> _ = build(["d1", "d2"], [[1, 0], [0, 2]], root / "ix")
    >>> convert_to_segmented(root / "ix")
    >>> with IndexWriter(root / "ix") as writer:
    ...     _ = writer.add_segment(build(["d3"], [[3, 1]], root / "new"))
    ...     writer.delete(["d2"])
    1
    >>> index = SegmentedIndex.open(root / "ix")
    >>> index.generation, index.num_docs, index.member("ix").search({"a": 1.0, "b": 1.0}, k=5)[0]
    (2, 2, ['d3', 'd1'])
"""

from heron.indexing.segments.layout import convert_to_segmented, is_segmented
from heron.indexing.segments.reader import SegmentedIndex, SegmentedMember, segmented_problems
from heron.indexing.segments.writer import IndexWriter

__all__ = ["IndexWriter", "SegmentedIndex", "SegmentedMember", "convert_to_segmented", "is_segmented",
           "segmented_problems"]
