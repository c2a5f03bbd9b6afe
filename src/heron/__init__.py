"""heron: learned sparse, dense and multi-vector retrieval — encode, index, search, evaluate.

Data flows one way::

    corpus ──► encode ──► index ──► search ──► run ──► evaluate

Search a built index or bundle (:mod:`heron.api`)::

    >>> import heron
    >>> heron.Index.open("indexes/scifact-bundle").search("coffee and cancer", k=3)   # doctest: +SKIP

Evaluate BM25 on BEIR SciFact (found through ``$HERON_DATA``, as ``heron eval`` finds it). Metric names
are the keys of :data:`heron.eval.METRICS`: ``ndcg@10``, ``recall@100``, ``recall@1000``, ``mrr@10``,
``map``::

    >>> from heron.eval import evaluate, load_dataset
    >>> from heron.retrieval import get_retriever
    >>> ds = load_dataset("scifact")
    >>> run = get_retriever("bm25").retrieve(ds, ds.queries("test"), k=1000)
    >>> round(evaluate(run, ds.qrels("test")).mean["ndcg@10"], 4)
    0.6789
"""

__version__ = "0.1.0"


def __getattr__(name):
    # ``heron.Index`` without importing numpy/torch on ``import heron``
    if name in ("Index", "Hit"):
        from heron import api

        return getattr(api, name)
    raise AttributeError(f"module 'heron' has no attribute {name!r}")
