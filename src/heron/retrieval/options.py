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
preset         approx: ``recall90``, ``recall95`` (the default) or ``recall99``, a calibrated
               ``(query_cut, heap_factor)`` pair
query_cut      approx: how many of the query's heaviest terms are visited (≥ 0)
heap_factor    approx: a block is visited when its summary score × heap_factor reaches the k-th
               score; any positive number: < 1 skips more (faster), > 1 fewer (recall99 uses 1.1)
ef_search      FAISS HNSW: candidate list size at search
nprobe         FAISS IVF: lists searched
truncate_dims  FAISS: score by the first N dimensions, re-normalised (Matryoshka-style baseline)
candidates     multi-vector: MUVERA candidates reranked by exact MaxSim (default: brute force)
============== ================================================================================
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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

__all__ = ["APPROX_KEYS", "SEARCH_KEYS", "SearchOptions"]
