"""heron's inverted index: one on-disk structure for every sparse representation (SPLADE, BM25, CSR).

It only sees ``{term_id: weight}`` rows. Build it from encoded shards (or ``(doc_ids, csr)`` chunks)
with :func:`build_inverted_index`; open it with :meth:`InvertedIndex.open`. The format is described in
:mod:`heron.indexing.inverted.format`.

Example::

    >>> import tempfile, os
    >>> import scipy.sparse as sp
    >>> rows = sp.csr_matrix([[1.5, 0.0, 0.7], [0.0, 2.0, 0.7]], dtype="float32")   # 2 documents × 3 terms
    >>> path = build_inverted_index([(["d1", "d2"], rows)], os.path.join(tempfile.mkdtemp(), "idx"),
    ...                             vocab=["cat", "dog", "sat"], encoder={"type": "toy"}, progress=False)
    >>> index = InvertedIndex.open(path)
    >>> index.num_docs, index.doc_ids
    (2, ['d1', 'd2'])
    >>> index.search({"dog": 1.0, "sat": 1.0}, k=2)[0]
    ['d2', 'd1']
"""

from heron.indexing.inverted.builder import build_inverted_index
from heron.indexing.inverted.format import FORMAT_NAME, FORMAT_VERSION
from heron.indexing.inverted.index import InvertedIndex, open_index

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "InvertedIndex", "build_inverted_index", "open_index"]
