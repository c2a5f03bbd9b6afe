"""Native BM25 retrieval: heron's analyzer and Lucene's formula, scored exhaustively with scipy.

Runs follow Anserini's output convention (its ``ScoreTiesAdjusterReranker``, which every Pyserini run and
published BEIR number goes through): scores rounded to 4 decimals and, where rounding makes scores equal,
each later document lowered by 1e-6 so that trec_eval — which orders equal scores by document id
*descending* — keeps the score order. With the analyzer and float32 arithmetic equal to
Lucene's, the native run is then Lucene's run: NFCorpus 0.3218 nDCG@10 for both (without the convention,
exact float ties fall the other way in trec_eval and native BM25 reads 0.3206).
"""

from __future__ import annotations

from rich.progress import Progress

from heron.retrieval.base import Retriever, Run
from heron.retrieval.encoders.bm25 import BM25Encoder
from heron.retrieval.options import BM25Options, checked
from heron.retrieval.scoring import sparse_search


class BM25Retriever(Retriever):
    """``heron eval --retriever bm25``: BM25 (k1=0.9, b=0.4 by default) as sparse vectors.

    Example::

        >>> from heron.eval import load_dataset
        >>> ds = load_dataset("scifact")                                    # doctest: +SKIP
        >>> run = BM25Retriever().retrieve(ds, ds.queries("test"), k=100)   # doctest: +SKIP
    """

    name = "bm25"

    def __init__(self, k1: float = 0.9, b: float = 0.4, lucene_norms: bool = True):
        checked(BM25Options, "bm25", k1=k1, b=b)
        self.k1, self.b, self.lucene_norms = k1, b, lucene_norms
        self._fitted: tuple[str, BM25Encoder, list[str]] | None = None

    def describe(self) -> dict:
        return {"name": self.name, "k1": self.k1, "b": self.b, "lucene_norms": self.lucene_norms}

    def _fit(self, dataset) -> tuple[BM25Encoder, list[str]]:
        key = f"{dataset.name}-{dataset.fingerprint()}"
        if self._fitted is None or self._fitted[0] != key:
            doc_ids: list[str] = []

            def texts():
                with Progress(transient=True) as progress:
                    task = progress.add_task(f"bm25: analysing {dataset.name}", total=None)
                    for doc in dataset.iter_corpus():
                        doc_ids.append(doc.id)
                        progress.advance(task)
                        yield doc.contents

            encoder = BM25Encoder(self.k1, self.b, lucene_norms=self.lucene_norms).fit(texts())
            self._fitted = (key, encoder, doc_ids)
        return self._fitted[1], self._fitted[2]

    def retrieve(self, dataset, queries: dict[str, str], k: int = 1000) -> Run:
        encoder, doc_ids = self._fit(dataset)
        qids = list(queries)
        q = encoder.encode_queries(queries[qid] for qid in qids)
        run = sparse_search(q, encoder.document_vectors(), k, doc_ids, qids, sum_in_double=True)
        return {qid: anserini_ties(docs) for qid, docs in run.items()}


def anserini_ties(docs: dict[str, float], decimals: int = 4, step: float = 1e-6) -> dict[str, float]:
    """One query's hits under Anserini's tie convention, best first: in score order (equal scores by document
    id), each score rounded to ``decimals`` and, where it equals the one before it, lowered by ``step`` per
    document of that run of equal scores.

    >>> anserini_ties({"b": 1.00001, "a": 1.0, "c": 2.0})
    {'c': 2.0, 'b': 1.0, 'a': 0.999999}
    """
    out: dict[str, float] = {}
    previous, ties = None, 0
    for doc, raw in sorted(docs.items(), key=lambda item: (-item[1], item[0])):
        score = round(float(raw), decimals)
        ties = ties + 1 if score == previous else 0
        previous = score
        out[doc] = round(score - ties * step, 7)
    return out
