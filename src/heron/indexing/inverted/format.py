"""The on-disk format of heron's inverted index: names, dtypes, quantisation and file checks.

An index is a directory::

    manifest.json            format name + format_version, counts, quantisation, encoder, build info,
                             and ``files``: {relative path: {dtype, shape, bytes, sha256}} for every file
    postings_offsets.npy     int64[V+1]   postings of term t are [offsets[t], offsets[t+1])
    postings_docs.npy        int32[nnz]   document indices, ascending within a term
    postings_impacts.npy     uint8|uint16[nnz]
    forward_offsets.npy      int64[N+1]   terms of document d are [offsets[d], offsets[d+1])
    forward_terms.npy        int32[nnz]   ascending within a document
    forward_impacts.npy      uint8|uint16[nnz]
    block_offsets.npy        int64[V+1]   block-max blocks of term t are [block_offsets[t], block_offsets[t+1])
    block_last_doc.npy       int32[B]     last document index in each block
    block_max.npy            uint8|uint16[B]  largest impact in each block
    doc_ids.txt              one external document id per line (utf-8; ids contain no newline)
    vocab.json               list of term strings: term id -> term
    encoder/                 optional: files that re-create the query encoder
    approx/<name>.npy        optional: approximate-search structures (see ``approx.py``)

Every array is a plain ``.npy`` opened with ``np.load(mmap_mode="r")``. Weights are stored as
integer *impacts*: ``impact = clip(round(weight * scale), 1, 2**bits - 1)`` for every non-zero
weight, so a score ``sum(q_w * impact) / scale`` approximates ``q . d``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from heron.errors import HeronError
from heron.storage import read_versioned_json, sha256_file

FORMAT_NAME = "heron-inverted-index"
FORMAT_VERSION = 1

MANIFEST_FILE = "manifest.json"
VOCAB_FILE = "vocab.json"
DOC_IDS_FILE = "doc_ids.txt"
ENCODER_DIR = "encoder"
DOCSTORE_DIR = "docstore"
APPROX_DIR = "approx"

IMPACT_DTYPES = {"uint8": np.dtype(np.uint8), "uint16": np.dtype(np.uint16)}

# array name -> dtype ("impact" = the index's impact dtype); every one is required.
ARRAYS: dict[str, str] = {
    "postings_offsets": "int64",
    "postings_docs": "int32",
    "postings_impacts": "impact",
    "forward_offsets": "int64",
    "forward_terms": "int32",
    "forward_impacts": "impact",
    "block_offsets": "int64",
    "block_last_doc": "int32",
    "block_max": "impact",
}


def array_file(name: str) -> str:
    return f"{name}.npy"


def expected_shapes(num_docs: int, vocab_size: int, nnz: int, num_blocks: int) -> dict[str, tuple[int]]:
    return {
        "postings_offsets": (vocab_size + 1,), "postings_docs": (nnz,), "postings_impacts": (nnz,),
        "forward_offsets": (num_docs + 1,), "forward_terms": (nnz,), "forward_impacts": (nnz,),
        "block_offsets": (vocab_size + 1,), "block_last_doc": (num_blocks,), "block_max": (num_blocks,),
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
def npy_header(path: str | Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, data offset)`` from a ``.npy`` header, without reading the data."""
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise ValueError(f"unsupported .npy version {version}")
        if fortran and len(shape) > 1:
            raise ValueError("Fortran-ordered arrays are not used by heron")
        return tuple(shape), np.dtype(dtype), handle.tell()


def describe_file(root: Path, rel: str) -> dict:
    """The manifest entry of one file: dtype and shape (arrays only), bytes and sha256."""
    path = root / rel
    entry: dict = {"bytes": path.stat().st_size}
    if rel.endswith(".npy"):
        shape, dtype, _ = npy_header(path)
        entry["dtype"] = dtype.name
        entry["shape"] = list(shape)
    entry["sha256"] = sha256_file(path)
    return entry


def check_file(root: Path, rel: str, entry: dict) -> None:
    """Cheap check of one listed file: it exists with the recorded size, shape and dtype."""
    path = root / rel
    if not path.is_file():
        raise HeronError(f"{path}: file listed in {MANIFEST_FILE} is missing; rebuild the index")
    size = path.stat().st_size
    if size != entry.get("bytes"):
        raise HeronError(f"{path}: {size} bytes, the manifest records {entry.get('bytes')} "
                         f"(truncated or replaced file); rebuild the index")
    if "shape" in entry:
        try:
            shape, dtype, offset = npy_header(path)
        except (OSError, ValueError, SyntaxError) as exc:
            raise HeronError(f"{path}: not a readable .npy array ({exc}); rebuild the index") from None
        if list(shape) != list(entry["shape"]) or dtype.name != entry.get("dtype"):
            raise HeronError(f"{path}: array is {dtype.name}{list(shape)}, the manifest records "
                             f"{entry.get('dtype')}{entry['shape']}; rebuild the index")
        if offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != size:
            raise HeronError(f"{path}: array data does not match its header (corrupt file); rebuild the index")


def check_sha256(root: Path, rel: str, entry: dict) -> None:
    path = root / rel
    if sha256_file(path) != entry.get("sha256"):
        raise HeronError(f"{path}: checksum mismatch (the file was modified or is corrupt); rebuild the index")


def read_manifest(root: str | Path) -> dict:
    """Parse and validate ``manifest.json`` (format name and version); every error is one line."""
    return read_versioned_json(Path(root) / MANIFEST_FILE, FORMAT_NAME, FORMAT_VERSION, "heron inverted index",
                               "rebuild the index", version_key="format_version")


