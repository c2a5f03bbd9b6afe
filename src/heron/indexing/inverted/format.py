"""The on-disk format of heron's inverted index: names, dtypes, quantisation and file checks.

An index is a directory::

    manifest.json            format name + format_version, counts, quantisation, encoder, build info,
                             and ``files``: {relative path: {dtype, shape, bytes, xxh3_128}} for every file
    postings_counts.npy      uint8[C]     each term's posting count df, a LEB128 varint per term (``codec.py``);
                                          the int64 offsets (postings of term t are [offsets[t], offsets[t+1]))
                                          are derived at open; a term has ceil(df / block_size) blocks
    block_last_doc.npy       int32[B]     last document index in each block
    block_max.npy            uint8|uint16[B]  largest impact in each block
    block_bits.npy           uint16[B]    bit widths of the block's document gaps | impacts << 8
    block_checksum.npy       uint32[B]    hash of the block's words (seeded with b, its widths and length)
    postings_words.npy       uint32[W]    the bit-packed blocks (``codec.py``: delta-coded documents, then impacts);
                                          where each term's blocks and each block's words lie is derived
                                          from the counts and widths at open (``block_offsets``, ``block_words``)
    forward_offsets.npy      int64[N+1]   only with approx/: terms of document d are [offsets[d], offsets[d+1])
    forward_terms.npy        uint16[nnz]  ascending within a document; int32 when the vocabulary has > 65,536 terms
    forward_impacts.npy      uint8|uint16[nnz]
    forward_checksum.npy     uint32[ceil(N/64)]  hash of each 64 documents' rows (``forward.py``)
    doc_ids.txt              one external document id per line (utf-8; ids contain no newline)
    vocab.json.gz            list of term strings (JSON, gzip-compressed): term id -> term
    encoder/                 optional: files that re-create the query encoder
    approx/<name>.npy        optional: approximate-search structures (see ``approx.py``)

The block is both the unit of compression and of block-max pruning (``manifest["block_max"]
["block_size"]``, 128 by default). The forward index is written only with the approximate structures,
which read it; without it, document rows are decoded from the postings (``InvertedIndex.vectors``).
Version 1 (uncompressed ``postings_docs`` / ``postings_impacts`` and an always-present forward index)
and version 2 (int64 ``postings_offsets``, gaps and impacts padded separately, metadata page checksums,
int32 forward term ids without ``forward_checksum.npy``) are refused with a message to rebuild.

Every array is a plain ``.npy`` opened with ``np.load(mmap_mode="r")``. Weights are stored as
integer *impacts*: ``impact = clip(round(weight * scale), 1, 2**bits - 1)`` for every non-zero
weight, so a score ``sum(q_w * impact) / scale`` approximates ``q . d``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from heron.errors import HeronError
from heron.indexing.base import describe_index_file
from heron.indexing.base import npy_header as npy_header  # the builder reads array headers through this module
from heron.indexing.inverted.forward import num_chunks as forward_num_chunks
from heron.indexing.inverted.forward import term_dtype as forward_term_dtype
from heron.storage import read_versioned_json

FORMAT_NAME = "heron-inverted-index"
FORMAT_VERSION = 3

MANIFEST_FILE = "manifest.json"
VOCAB_FILE = "vocab.json.gz"  # gzip: a 30k-term vocabulary is 0.3 MB as JSON, 0.1 MB compressed
DOC_IDS_FILE = "doc_ids.txt"
ENCODER_DIR = "encoder"
DOCSTORE_DIR = "docstore"
APPROX_DIR = "approx"

IMPACT_DTYPES = {"uint8": np.dtype(np.uint8), "uint16": np.dtype(np.uint16)}

# array name -> dtype ("impact" = the index's impact dtype); every one is required.
ARRAYS: dict[str, str] = {
    "postings_counts": "uint8",
    "block_last_doc": "int32",
    "block_max": "impact",
    "block_bits": "uint16",
    "block_checksum": "uint32",
    "postings_words": "uint32",
}
# the forward index: present only in an index with approximate structures ("term" = forward.term_dtype(V))
FORWARD_ARRAYS: dict[str, str] = {
    "forward_offsets": "int64",
    "forward_terms": "term",
    "forward_impacts": "impact",
    "forward_checksum": "uint32",
}


def array_dtype(kind: str, impact: np.dtype, vocab_size: int) -> str:
    """The dtype name of an array of ``ARRAYS`` / ``FORWARD_ARRAYS`` kind ``kind``."""
    if kind == "impact":
        return np.dtype(impact).name
    if kind == "term":
        return forward_term_dtype(vocab_size).name
    return kind


def array_file(name: str) -> str:
    return f"{name}.npy"


def expected_shapes(num_docs: int, vocab_size: int, nnz: int, num_blocks: int,
                    num_words: int = 0, count_bytes: int = 0) -> dict[str, tuple[int]]:
    return {
        "postings_counts": (count_bytes,),
        "block_last_doc": (num_blocks,), "block_max": (num_blocks,), "block_bits": (num_blocks,),
        "block_checksum": (num_blocks,),
        "postings_words": (num_words,),
        "forward_offsets": (num_docs + 1,), "forward_terms": (nnz,), "forward_impacts": (nnz,),
        "forward_checksum": (forward_num_chunks(num_docs),),
    }


# -- quantisation -------------------------------------------------------------------------------------
def impact_dtype(name: str) -> np.dtype:
    try:
        return IMPACT_DTYPES[name]
    except KeyError:
        raise HeronError(f"quantization must be one of {sorted(IMPACT_DTYPES)}, not {name!r}") from None


def max_impact(dtype: np.dtype) -> int:
    return int(np.iinfo(dtype).max)


def default_scale(max_weight: float, dtype: np.dtype) -> float:
    """The scale that maps the largest weight onto the largest impact."""
    return max_impact(dtype) / max_weight if max_weight > 0 else 1.0


def quantize(weights: np.ndarray, scale: float, dtype: np.dtype) -> tuple[np.ndarray, int]:
    """Impacts of positive ``weights``, and how many were clipped at the top of the range."""
    raw = np.rint(np.asarray(weights, dtype=np.float64) * scale)
    top = max_impact(dtype)
    clipped = int(np.count_nonzero(raw > top))
    return np.clip(raw, 1, top).astype(dtype), clipped


# -- files ------------------------------------------------------------------------------------------
# An index file's manifest entry (bytes, xxh3_128, dtype, shape) and its checks are shared by every index type.
describe_file = describe_index_file


def read_manifest(root: str | Path) -> dict:
    """Parse and validate ``manifest.json`` (format name and version, seal); every error is one line."""
    return read_versioned_json(Path(root) / MANIFEST_FILE, FORMAT_NAME, FORMAT_VERSION, "heron inverted index",
                               "rebuild it with `heron build-index <config>`", version_key="format_version")


