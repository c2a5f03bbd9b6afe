"""heron: learned sparse and embedding retrieval — encode, index, search, evaluate.

Data flows one way::

    corpus ──► encoders ──► indexes ──► searcher ──► run ──► eval

Search a built index or bundle (:mod:`heron.api`)::

    >>> import heron
    >>> heron.Index.open("indexes/scifact-bundle").search("coffee and cancer", k=3)   # doctest: +SKIP

Evaluate (BM25 on BEIR SciFact)::

    >>> from heron.eval import load_dataset, evaluate
    >>> from heron.retrieval import get_retriever
    >>> ds = load_dataset("scifact")                       # doctest: +SKIP
    >>> run = get_retriever("bm25").retrieve(ds, ds.queries("test"), k=1000)  # doctest: +SKIP
    >>> evaluate(run, ds.qrels("test")).mean["ndcg_cut_10"]                  # doctest: +SKIP
"""

__version__ = "0.1.0"


def __getattr__(name):
    # ``heron.Index`` without importing numpy/torch on ``import heron``
    if name in ("Index", "Hit"):
        from heron import api

        return getattr(api, name)
    raise AttributeError(f"module 'heron' has no attribute {name!r}")
