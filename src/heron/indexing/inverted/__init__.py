"""heron's inverted index: one on-disk structure for every sparse representation (SPLADE, BM25, CSR).

It only sees ``{term_id: weight}`` rows. Build it from encoded shards (or ``(doc_ids, csr)`` chunks)
with :func:`build_inverted_index`; open it with :meth:`InvertedIndex.open`. The format is described in
:mod:`heron.indexing.inverted.format`.

Example::

    >>> from heron.retrieval.encoders.bm25 import BM25Encoder
    >>> import tempfile, os
    >>> enc = BM25Encoder().fit(["the cat sat", "a dog barked at the cat"])
    >>> vocab = sorted(enc.vocab, key=enc.vocab.__getitem__)
    >>> path = build_inverted_index([(["d1", "d2"], enc.document_vectors())],
    ...                             os.path.join(tempfile.mkdtemp(), "idx"), vocab=vocab,
    ...                             encoder={"type": "bm25"}, progress=False)
    >>> index = InvertedIndex.open(path)
    >>> index.num_docs, index.doc_ids
    (2, ['d1', 'd2'])
"""

from heron.indexing.inverted.builder import build_inverted_index
from heron.indexing.inverted.format import FORMAT_NAME, FORMAT_VERSION
from heron.indexing.inverted.index import InvertedIndex, open_index

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "InvertedIndex", "build_inverted_index", "open_index"]
