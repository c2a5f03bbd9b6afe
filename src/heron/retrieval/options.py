"""The options an index is searched with, by one name each from the kernels to the command line.

``heron eval --search KEY=VALUE``, ``heron query --search KEY=VALUE`` and a bundle member's ``search:``
section all take these keys (:class:`SearchOptions` checks the values; each index type then says which
keys apply to it, :attr:`heron.indexing.base.SearchIndex.search_options`):

============== ================================================================================
key            meaning
============== ================================================================================
mode           inverted index: ``exact`` (block-max pruned exact top-k, the default), ``taat``
               (exhaustive term-at-a-time: the same results, the baseline) or ``approx``
               (approximate, Seismic-style; needs an index built with ``approx``)
preset         approx: ``recall90``, ``recall95`` (the default) or ``recall99``, a ``(query_cut,
               heap_factor)`` pair reaching that mean recall@10 against exact search on SciFact,
               NFCorpus and the dictionary corpus (splade-tiny, default build)
query_cut      approx: how many of the query's heaviest terms are visited (≥ 0)
heap_factor    approx: a block is visited when its summary score × heap_factor reaches the k-th
               score; any positive number: < 1 skips more (faster), > 1 fewer (recall99 uses 2.0)
ef_search      FAISS HNSW: candidate list size at search
nprobe         FAISS IVF: lists searched
truncate_dims  FAISS: score by the first N dimensions, re-normalised (Matryoshka-style baseline)
candidates     multi-vector: MUVERA candidates reranked by exact MaxSim (default: brute force)
============== ================================================================================
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class SearchOptions(BaseModel):
    """Search options (module docstring); every field is optional, ``None`` meaning the index's default."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["exact", "taat", "approx"] | None = Field(
        None, description="inverted index: exact (block-max pruned, default), taat (exhaustive) or approx")
    preset: Literal["recall90", "recall95", "recall99"] | None = Field(
        None, description="approx: calibrated (query_cut, heap_factor) pair")
    query_cut: int | None = Field(None, ge=0, description="approx: query terms visited, heaviest first")
    heap_factor: float | None = Field(None, gt=0, allow_inf_nan=False,
                                      description="approx: block-skip factor, any positive number")
    ef_search: int | None = Field(None, ge=1, description="FAISS HNSW: candidate list size")
    nprobe: int | None = Field(None, ge=1, description="FAISS IVF: lists searched")
    truncate_dims: int | None = Field(None, ge=1, description="FAISS: dimensions scored")
    candidates: int | None = Field(None, ge=1, description="multi-vector: MUVERA candidates reranked")

    def given(self) -> dict:
        """The options that were set, by name."""
        return self.model_dump(exclude_none=True)


#: the option names, in the order of :class:`SearchOptions`
SEARCH_KEYS: tuple[str, ...] = tuple(SearchOptions.model_fields)
#: the approx-only options, which a new ``mode`` replaces together with the mode
APPROX_KEYS = ("preset", "query_cut", "heap_factor")


# -- the numeric parameters of retrievers: one definition for the command line, the API and the server -------
#: the largest weight (fusion, Rocchio) or constant (RRF k) taken: far beyond any useful value, and small
#: enough that float32 scores neither overflow to inf nor vanish
MAX_WEIGHT = 1e6
#: a weight: finite, ≥ 0, at most :data:`MAX_WEIGHT`
Weight = Annotated[float, Field(ge=0, le=MAX_WEIGHT, allow_inf_nan=False)]
#: BM25's k1 (term-frequency saturation): finite and ≥ 0, as Lucene requires, and at most 1000 (tuned values
#: lie between 0.5 and 3; a huge k1 drives every weight to 0 in float32, an empty run)
BM25K1 = Annotated[float, Field(ge=0, le=1000, allow_inf_nan=False)]
#: BM25's b (length normalisation): in [0, 1], as Lucene requires
BM25B = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class BM25Options(BaseModel):
    """BM25's parameters (``heron eval --k1 --b``, an index config's ``encoder.k1`` / ``encoder.b``)."""

    model_config = ConfigDict(extra="forbid")

    k1: BM25K1 = 0.9
    b: BM25B = 0.4


class FusionOptions(BaseModel):
    """How a fused retriever (members joined by ``+``) combines its members' runs."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["rrf", "linear"] = Field("rrf", description="reciprocal-rank or min-max linear fusion")
    weights: list[Weight] | None = Field(None, description="one weight per member, in order (default: equal)")
    rrf_k: float = Field(60.0, ge=0, le=MAX_WEIGHT, allow_inf_nan=False, description="rrf: the constant k")
    depth: int = Field(1000, ge=1, description="documents each member retrieves before fusion")


class PRFOptions(BaseModel):
    """Pseudo-relevance feedback parameters (:class:`heron.retrieval.prf.PRFRetriever`)."""

    model_config = ConfigDict(extra="forbid")

    docs: int | None = Field(None, ge=1, le=1000, description="feedback documents (default 3, or the model's)")
    alpha: Weight = Field(1.0, description="rocchio: weight of the query")
    beta: Weight = Field(0.5, description="rocchio: weight of the feedback centroid")
    terms: int | None = Field(None, ge=0, description="sparse: weights kept per revised query (0 = all)")


def checked(model: type[BaseModel], source: str, **values):
    """``model`` validated from ``values`` (``None`` = unset); a one-line HeronError otherwise, e.g.
    ``bm25: field 'k1': Input should be a finite number (got nan)``."""
    from heron.errors import config_error

    try:
        return model.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        raise config_error(exc, source, show_input=True) from None


__all__ = ["APPROX_KEYS", "BM25B", "BM25K1", "MAX_WEIGHT", "SEARCH_KEYS", "BM25Options", "FusionOptions",
           "PRFOptions", "SearchOptions", "Weight", "checked"]
