"""Streaming, resumable, atomically published build of heron's inverted index (see ``format.py``).

``build_inverted_index`` reads encoded documents twice:

* **pass 1** counts, per term, how many documents hold it (df), the largest weight (which fixes the
  quantisation scale unless one is given), the number of documents and of non-zeros, and writes
  ``doc_ids.txt``; the postings files are then pre-sized from df (``open_memmap``).
* **pass 2** quantises every shard, appends it to the forward index, and writes the shard's
  postings sorted by term (a stable radix sort, so documents stay ascending within a term) as a
  *run* file, noting where each merge window starts in it;
* **merge** fills the postings a window of terms at a time (≤ ``MERGE_WINDOW_POSTINGS``): it reads
  that window's slice of every run, orders it by term (runs come in document order) and writes it
  sequentially at the window's offset.

Then the postings are compressed into checksummed blocks with their block-max metadata (a window at a
time, :mod:`.codec`) and, if asked, the approximate structures (``approx.build_approx``), which also
keep the forward index (uint16 term ids for vocabularies up to 65,536 terms, and a checksum per 64
documents: :mod:`.forward`); the uncompressed postings (and, without approx, the forward index) are build
scratch and are not published. Memory is O(vocabulary + one shard + one window),
independent of the corpus size, and every big write is sequential. (Scattering each shard straight
into memory-mapped postings at per-term cursors was measured 1.3× slower at 1M documents and 1.7×
at 3M, worsening with size: each shard dirties about one page per term per file, so page faults
dominate.) The runs need temporary disk space about 1.8× the size of the postings.

**Atomic publish.** Everything is built in ``.<name>.building`` beside the output directory (same
filesystem), then published by :func:`heron.storage.publish` (every file fsynced, then swapped into
place). A previous index at the output path stays intact and readable until the new one is complete.

**Resume.** The build directory keeps ``progress.json``: the stage, the next shard or merge window,
counters, and a fingerprint of the inputs (the shard checksums of ``shards.json``) and of the
parameters. Pass-1 state (df, ``doc_ids.txt``) is fsynced at every shard boundary; pass 2 is
checkpointed at every shard boundary (its run files) and the merge at every window, so an
interrupted build (exception, Ctrl-C, SIGKILL) continues from the last finished shard or window
when called again with the same inputs and ``resume=True``; with other inputs it starts over.
Every step writes its data first and its checkpoint after, and a resumed build trusts only what the
checkpoint covers: ``doc_ids.txt`` is cut back to the recorded length, df is read from the file the
checkpoint names (``_df-<shards>.npy``, one per checkpoint, so a kill between writing df and the
checkpoint leaves the previous one intact), and pass-2 runs, merge windows and block maxima past the
checkpoint are rewritten whole. Writes after pass 1 are fsynced only before publishing: they survive a
killed process in the page cache, and after a reboot (a new kernel boot id) the build resumes from the
start of pass 2. Input errors (HeronError) discard the partial build. Builds of one output are
serialised by :func:`heron.storage.build_lock` (``.<name>.lock``).

Input from an iterable of ``(doc_ids, csr_matrix)`` chunks is first spooled to a shard directory
inside the build directory (one shard per chunk), so both passes can read it; a resumed build from
an iterable consumes the iterable again but skips the work already done. A build that will not be
resumed (``resume=False``: adds and merges of segments) keeps up to :data:`MEMORY_INPUT_BYTES` of input in
memory instead (the same checks as it is read), and spools as usual past that.

Kill points (``HERON_TEST_KILL_AT``, :mod:`heron.storage.killpoints`): ``inverted.spool`` (a spooled
input chunk written), ``inverted.pass1.data`` / ``inverted.pass1`` (a pass-1 shard's doc ids and df
written / checkpointed), ``inverted.allocate`` (pass-2 outputs allocated, not yet checkpointed),
``inverted.pass2.data`` / ``inverted.pass2``, ``inverted.merge.data`` / ``inverted.merge`` (per merge
window), ``inverted.blocks`` (compressed blocks written, not checkpointed), ``inverted.approx``,
``inverted.finalized`` (the finished index in the build directory, not yet published).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import json
import os
import re
import resource
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import scipy.sparse as sp

import heron
from heron import storage
from heron.errors import HeronError
from heron.indexing import shards as shard_files
from heron.indexing.inverted import codec, forward
from heron.indexing.inverted import format as fmt

PROGRESS_FILE = "progress.json"
SPOOL_DIR = "spool"
_WINDOWS_FILE = "_windows.npy"
_RUNS_DIR = "_runs"
_WORDS_FILE = "_words.bin"  # the compressed blocks, appended window by window before they become a .npy
_SCRATCH = (PROGRESS_FILE, _WINDOWS_FILE, _RUNS_DIR, SPOOL_DIR, _WORDS_FILE)
# uncompressed postings (and their int64 offsets, published as varint counts): built, then read by the block
# encoder and the approximate structures, not published
_UNCOMPRESSED = ("postings_offsets", "postings_docs", "postings_impacts")
WINDOW_BYTES = 64 << 20  # largest read window of the postings when computing block maxima
MERGE_WINDOW_POSTINGS = 4 << 20  # postings merged in memory at a time (≈ 22 bytes each)
#: a build that will not be resumed (``resume=False``: what ``heron index add`` and merges run) keeps input chunks
#: of up to this many bytes of CSR arrays in memory instead of spooling them to disk (written, hashed, read back
#: and verified twice); past it, everything is spooled as usual, so memory stays bounded
MEMORY_INPUT_BYTES = 256 << 20
_MAX_DOCS = int(np.iinfo(np.int32).max)
_APPROX_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def build_inverted_index(
    shards: str | os.PathLike | Iterable[tuple[list[str], sp.spmatrix]],
    output_dir: str | os.PathLike,
    *,
    vocab: list[str],
    encoder: dict,
    quantization: str = "uint8",
    scale: float | None = None,
    block_size: int = codec.BLOCK_SIZE,
    approx: dict | None = None,
    encoder_dir: str | os.PathLike | None = None,
    docstore_dir: str | os.PathLike | None = None,
    resume: bool = True,
    progress: bool = True,
) -> Path:
    """Build an inverted index at ``output_dir`` from a shard directory or ``(doc_ids, csr)`` chunks.

    ``vocab`` names the columns (term id → term); ``encoder`` is a JSON dict describing what made the
    vectors; ``quantization`` is ``"uint8"`` or ``"uint16"``; ``scale`` defaults to
    ``(2**bits - 1) / max_weight``; ``approx`` (parameters for ``approx.build_approx``) adds the
    approximate-search structures; ``encoder_dir`` is copied into the index as ``encoder/`` (the
    query encoder) and ``docstore_dir`` as ``docstore/`` (titles and text for display).
    Returns the index path.
    """
    started = time.monotonic()
    dtype = fmt.impact_dtype(quantization)
    vocab = _check_vocab(vocab)
    _check_json("encoder", encoder, dict)
    if approx is not None:
        _check_json("approx", approx, dict)
    if scale is not None and not (np.isfinite(scale) and scale > 0):
        raise HeronError(f"scale must be a positive number, not {scale!r}")
    if isinstance(block_size, bool) or not isinstance(block_size, int | np.integer) or block_size < 1:
        raise HeronError(f"block_size must be a positive integer, not {block_size!r}")
    if encoder_dir is not None and not Path(encoder_dir).is_dir():
        raise HeronError(f"{encoder_dir}: encoder directory does not exist")
    if docstore_dir is not None and not Path(docstore_dir).is_dir():
        raise HeronError(f"{docstore_dir}: docstore directory does not exist")

    output = Path(output_dir).absolute()
    output.parent.mkdir(parents=True, exist_ok=True)
    _check_output(output)
    build = build_dir(output)
    with storage.build_lock(output):
        return _build_locked(shards, output, build, vocab=vocab, encoder=encoder, dtype=dtype, scale=scale,
                             block_size=block_size, approx=approx, encoder_dir=encoder_dir,
                             docstore_dir=docstore_dir, resume=resume, progress=progress, started=started)


def _build_locked(shards, output: Path, build: Path, *, vocab, encoder, dtype, scale, block_size, approx, encoder_dir,
                  docstore_dir, resume, progress, started) -> Path:
    try:
        storage.recover(output)
        build.mkdir(exist_ok=True)
        report = _Reporter(progress)

        if isinstance(shards, str | os.PathLike):
            source = _ShardSource.from_directory(Path(shards))
        else:
            source = _ShardSource.spool(shards, build / SPOOL_DIR, len(vocab), report,
                                        memory_bytes=0 if resume else MEMORY_INPUT_BYTES)
        if source.vocab_size != len(vocab):
            raise HeronError(f"{source.directory}: vectors have {source.vocab_size} columns, "
                             f"the vocabulary has {len(vocab)} terms")

        params = {"format_version": fmt.FORMAT_VERSION, "input": source.fingerprint, "dtype": dtype.name,
                  "scale": None if scale is None else float(scale), "block_size": int(block_size),
                  "approx": approx}
        fingerprint = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
        state = _load_progress(build) if resume else None
        resumed = state is not None and state.get("fingerprint") == fingerprint
        if not resumed:
            _reset(build)
            state = {"fingerprint": fingerprint, "stage": "pass1", "shard": 0, "num_docs": 0, "nnz": 0,
                     "max_weight": 0.0, "doc_ids_bytes": 0}
            _save_progress(build, state)
        else:
            if state["stage"] != "pass1" and state.get("boot_id") != _boot_id():
                # after pass 1 nothing is fsynced until the end: after a reboot, redo from pass 2
                state.update(stage="pass1", shard=source.num_shards)
            if state["stage"] != "pass1" or state["shard"]:
                report.line(f"resuming the build in {build} at {state['stage']}, shard {state['shard']}")

        ctx = _Build(build, source, state, dtype, scale, int(block_size), report)
        if state["stage"] == "pass1":
            ctx.pass1()
        if state["stage"] == "pass2":
            ctx.pass2()
        if state["stage"] == "merge":
            ctx.merge()
        if state["stage"] == "blocks":
            ctx.blocks()
        if state["stage"] == "approx":
            ctx.approx(approx)
        ctx.finalize(vocab, encoder, approx, encoder_dir, started, resumed, docstore_dir)
        (build / PROGRESS_FILE).unlink()  # from here on the build directory is a finished index
        storage.kill_point("inverted.finalized")
        storage.publish(build, output)
        report.line(f"index written to {output} ({state['num_docs']:,} docs, {state['nnz']:,} postings, "
                    f"{time.monotonic() - started:.1f} s)")
        return output
    except HeronError:
        shutil.rmtree(build, ignore_errors=True)  # bad input: the partial build cannot be resumed
        raise


def build_dir(output: Path) -> Path:
    """Where the index at ``output`` is built and its resumable state kept: ``.<name>.building`` beside it."""
    return output.parent / f".{output.name}.building"


# -- argument checks ------------------------------------------------------------------------------------
def _check_vocab(vocab) -> list[str]:
    vocab = list(vocab)
    bad = next((i for i, term in enumerate(vocab) if not isinstance(term, str)), None)
    if bad is not None:
        raise HeronError(f"vocab[{bad}] is {type(vocab[bad]).__name__}, terms must be strings")
    return vocab


def _check_json(name: str, value, kind: type) -> None:
    if not isinstance(value, kind):
        raise HeronError(f"{name} must be a {kind.__name__}, not {type(value).__name__}")
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise HeronError(f"{name} must be JSON-serialisable ({exc})") from None


def _check_output(output: Path) -> None:
    if not output.exists():
        return
    if not output.is_dir():
        raise HeronError(f"{output}: exists and is not a directory")
    manifest = output / fmt.MANIFEST_FILE
    if manifest.is_file():
        try:
            if json.loads(manifest.read_text(encoding="utf-8")).get("format") == fmt.FORMAT_NAME:
                return
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            pass
    if any(output.iterdir()):
        raise HeronError(f"{output}: exists and is not a heron inverted index; refusing to replace it")


# -- input ------------------------------------------------------------------------------------------------
class _ShardSource:
    """A shard directory read shard by shard, each checked against its recorded checksum — or, for a build that
    will not be resumed, input chunks ``held`` in memory (checked the same way as they are read)."""

    def __init__(self, directory: Path, shards: list[dict], vocab_size: int, fingerprint: str,
                 held: list[tuple[list[str], sp.csr_matrix]] | None = None):
        self.directory, self.shards, self.vocab_size, self.fingerprint = directory, shards, vocab_size, fingerprint
        self.held = held

    def label(self, number: int) -> str:
        """Where shard ``number`` comes from, for error messages."""
        if self.held is not None:
            return f"input chunk {number}"
        return str(self.directory / self.shards[number]["file"])

    @classmethod
    def from_directory(cls, directory: Path) -> _ShardSource:
        manifest = shard_files.read_manifest(directory)
        if not manifest.get("complete"):
            raise HeronError(f"{directory / shard_files.MANIFEST}: the encoding is incomplete "
                             f"(interrupted); finish it before building an index")
        shards = manifest["shards"]
        key = [manifest["vocab_size"], [[s["num_docs"], s["nnz"], s["sha256"]] for s in shards]]
        fingerprint = hashlib.sha256(json.dumps(key).encode()).hexdigest()
        return cls(directory, shards, int(manifest["vocab_size"]), fingerprint)

    @classmethod
    def spool(cls, chunks, directory: Path, vocab_size: int, report: _Reporter,
              memory_bytes: int = 0) -> _ShardSource:
        """Write ``(doc_ids, matrix)`` chunks to a shard directory; fingerprint them by content. With
        ``memory_bytes``, chunks are held in memory while their arrays take at most that many bytes (and all
        written out, as usual, as soon as they take more)."""
        if directory.exists():
            shutil.rmtree(directory)
        writer = None if memory_bytes > 0 else \
            shard_files.SparseShardWriter(directory, vocab_size=vocab_size, meta={"spooled": True})
        held: list[tuple[list[str], sp.csr_matrix]] = []
        held_bytes = 0
        digests = []
        try:
            iterator = iter(chunks)
        except TypeError:
            raise HeronError(f"shards must be a shard directory or an iterable of (doc_ids, matrix), "
                             f"not {type(chunks).__name__}") from None
        for number, chunk in enumerate(iterator):
            try:
                ids, matrix = chunk
            except (TypeError, ValueError):
                raise HeronError(f"input chunk {number}: expected a (doc_ids, matrix) pair") from None
            ids = [str(doc_id) for doc_id in ids]
            matrix = sp.csr_matrix(matrix)
            if matrix.shape != (len(ids), vocab_size):
                raise HeronError(f"input chunk {number}: matrix is {matrix.shape[0]}×{matrix.shape[1]}, "
                                 f"expected {len(ids)} rows (doc ids) × {vocab_size} columns (vocabulary)")
            if not matrix.has_canonical_format:
                matrix = matrix.copy()
                matrix.sum_duplicates()
            digest = hashlib.sha256("\n".join(ids).encode("utf-8", "surrogatepass"))
            for array, kind in ((matrix.indptr, np.int64), (matrix.indices, np.int32), (matrix.data, np.float32)):
                digest.update(np.ascontiguousarray(array, dtype=kind).tobytes())
            digests.append([len(ids), int(matrix.nnz), digest.hexdigest()])
            if writer is None:
                held.append((ids, matrix.copy()))  # the caller may reuse its arrays for the next chunk
                held_bytes += matrix.indptr.nbytes + matrix.indices.nbytes + matrix.data.nbytes
                if held_bytes <= memory_bytes:
                    continue
                writer = shard_files.SparseShardWriter(directory, vocab_size=vocab_size, meta={"spooled": True})
                for held_ids, held_matrix in held:  # too big to hold: spool everything after all
                    writer.add(held_ids, held_matrix)
                held = []
            else:
                writer.add(ids, matrix)
            report.tick(f"spooling input: chunk {number + 1}")
            storage.kill_point("inverted.spool")
        key = [vocab_size, digests]
        if writer is None:
            shards = [{"num_docs": n, "nnz": nnz, "file": None} for n, nnz, _ in digests]
            return cls(directory, shards, vocab_size, hashlib.sha256(json.dumps(key).encode()).hexdigest(), held)
        writer.close()
        source = cls(directory, writer.manifest["shards"], vocab_size,
                     hashlib.sha256(json.dumps(key).encode()).hexdigest())
        return source

    @property
    def num_shards(self) -> int:
        return len(self.shards)

    def rows(self, start: int) -> Iterator[tuple[int, list[str], np.ndarray, np.ndarray, np.ndarray]]:
        if self.held is not None:
            for number in range(start, len(self.held)):
                ids, matrix = self.held[number]
                yield number, ids, *_canonical_rows(self.label(number), ids, matrix.indptr, matrix.indices,
                                                    matrix.data, len(ids), self.vocab_size)
            return
        for number in range(start, len(self.shards)):
            shard = self.shards[number]
            path = self.directory / shard["file"]
            if not path.is_file():
                raise HeronError(f"{path}: shard listed in {shard_files.MANIFEST} is missing")
            if shard_files.sha256_file(path) != shard["sha256"]:
                raise HeronError(f"{path}: checksum mismatch (the shard is corrupt or changed; re-encode)")
            ids, indptr, indices, data = _load_rows(path, self.vocab_size)
            if len(ids) != shard["num_docs"]:
                raise HeronError(f"{path}: {len(ids)} documents, {shard_files.MANIFEST} records {shard['num_docs']}")
            yield number, ids, indptr, indices, data


def _load_rows(path: Path, vocab_size: int) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """One shard as canonical CSR arrays (sorted, unique, strictly positive weights)."""
    ids, (indptr, indices, data), n = shard_files.load_shard(path)
    return (ids, *_canonical_rows(str(path), ids, indptr, indices, data, n, vocab_size))


def _canonical_rows(path: str, ids: list[str], indptr, indices, data, n: int, vocab_size: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(indptr, indices, data)`` checked and made canonical (sorted, unique, strictly positive weights)."""
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int32)
    data = np.asarray(data, dtype=np.float32)
    if (len(indptr) != n + 1 or indptr[0] != 0 or indptr[-1] != len(indices) or len(indices) != len(data)
            or np.any(np.diff(indptr) < 0)):
        raise HeronError(f"{path}: inconsistent CSR arrays (corrupt shard)")
    if len(indices) and (indices.min() < 0 or indices.max() >= vocab_size):
        raise HeronError(f"{path}: term id out of range [0, {vocab_size})")
    if len(indices) > 1:
        increasing = np.diff(indices) > 0
        starts = indptr[1:-1]
        starts = starts[(starts > 0) & (starts < len(indices))]
        increasing[starts - 1] = True
        if not increasing.all():
            matrix = sp.csr_matrix((data, indices, indptr), shape=(n, vocab_size))
            matrix.sum_duplicates()
            indptr, indices, data = (matrix.indptr.astype(np.int64), matrix.indices.astype(np.int32),
                                     matrix.data.astype(np.float32))
    bad = ~np.isfinite(data) | (data < 0)
    if bad.any():
        where = int(np.flatnonzero(bad)[0])
        row = int(np.searchsorted(indptr, where, side="right") - 1)
        raise HeronError(f"{path}: document {ids[row]!r} has weight {data[where]} for term {indices[where]}; "
                         f"weights must be finite and non-negative")
    zero = data == 0
    if zero.any():
        keep = ~zero
        kept_before = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
        indptr, indices, data = kept_before[indptr], indices[keep], data[keep]
    return indptr, indices, data


# -- the build ------------------------------------------------------------------------------------------
class _Build:
    def __init__(self, build: Path, source: _ShardSource, state: dict, dtype: np.dtype,
                 scale: float | None, block_size: int, report: _Reporter):
        self.dir, self.source, self.state, self.dtype = build, source, state, dtype
        self.scale, self.block_size, self.report = scale, block_size, report
        self.vocab_size = source.vocab_size

    def path(self, name: str) -> Path:
        return self.dir / fmt.array_file(name)

    def checkpoint(self, **changes) -> None:
        self.state.update(changes)
        _save_progress(self.dir, self.state)

    # pass 1: df, max weight, counts, doc ids
    def pass1(self) -> None:
        state, size = self.state, self.vocab_size
        start = state["shard"]
        df = np.load(_df_file(self.dir, start)) if start else np.zeros(size, dtype=np.int64)
        _remove_df_files(self.dir, keep=start)  # a df written after the last checkpoint is not trusted
        ids_path = self.dir / fmt.DOC_IDS_FILE
        with open(ids_path, "ab") as handle:
            handle.truncate(state["doc_ids_bytes"])
            handle.seek(state["doc_ids_bytes"])
            for number, ids, _, indices, data in self.source.rows(start):
                path = self.source.label(number)
                for doc_id in ids:
                    if "\n" in doc_id or "\r" in doc_id:
                        raise HeronError(f"{path}: document id {doc_id!r} contains a line break; "
                                         f"doc ids must be single-line strings")
                if state["num_docs"] + len(ids) > _MAX_DOCS:
                    raise HeronError(f"more than {_MAX_DOCS:,} documents: split the collection")
                try:
                    blob = "".join(doc_id + "\n" for doc_id in ids).encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise HeronError(f"{path}: a document id is not valid unicode ({exc.reason})") from None
                handle.write(blob)
                handle.flush()
                os.fsync(handle.fileno())
                df += np.bincount(indices, minlength=size)
                storage.save_array_atomic(_df_file(self.dir, number + 1), df)  # data first, then the checkpoint
                storage.kill_point("inverted.pass1.data")
                self.checkpoint(
                    shard=number + 1, num_docs=state["num_docs"] + len(ids), nnz=state["nnz"] + len(data),
                    max_weight=max(state["max_weight"], float(data.max()) if len(data) else 0.0),
                    doc_ids_bytes=handle.tell())
                _remove_df_files(self.dir, keep=number + 1)
                self.report.tick(f"pass 1/2: shard {number + 1}/{self.source.num_shards}, "
                                 f"{state['num_docs']:,} docs")
                storage.kill_point("inverted.pass1")

        # allocate pass 2's outputs
        scale = self.scale if self.scale is not None else fmt.default_scale(state["max_weight"], self.dtype)
        offsets = np.zeros(size + 1, dtype=np.int64)
        np.cumsum(df, out=offsets[1:])
        storage.save_array_atomic(self.path("postings_offsets"), offsets)
        nnz, num_docs = state["nnz"], state["num_docs"]
        for name, kind, length in (("postings_docs", np.int32, nnz), ("postings_impacts", self.dtype, nnz),
                                   ("forward_offsets", np.int64, num_docs + 1),
                                   ("forward_terms", forward.term_dtype(size), nnz),
                                   ("forward_impacts", self.dtype, nnz)):
            np.lib.format.open_memmap(self.path(name), mode="w+", dtype=kind, shape=(length,))
        windows = _merge_windows(offsets, MERGE_WINDOW_POSTINGS)
        storage.save_array_atomic(self.dir / _WINDOWS_FILE, windows)
        storage.kill_point("inverted.allocate")
        self.checkpoint(stage="pass2", shard=0, scale=float(scale), docs_done=0, nnz_done=0, clipped=0,
                        window=0, boot_id=_boot_id())

    # pass 2: quantise; append to the forward index; write each shard's postings as a sorted run
    def pass2(self) -> None:
        state, dtype = self.state, self.dtype
        windows = np.load(self.dir / _WINDOWS_FILE)
        runs = self.dir / _RUNS_DIR
        runs.mkdir(exist_ok=True)
        headers = {name: fmt.npy_header(self.path(name))[2]
                   for name in ("forward_offsets", "forward_terms", "forward_impacts")}
        for number, ids, indptr, indices, data in self.source.rows(state["shard"]):
            n, m = len(ids), len(indices)
            docs_done, nnz_done = state["docs_done"], state["nnz_done"]
            if docs_done + n > state["num_docs"] or nnz_done + m > state["nnz"]:
                raise HeronError(f"{self.source.directory}: the input changed during the build; build again")
            impacts, clipped = fmt.quantize(data, state["scale"], dtype)
            _write_at(self.path("forward_offsets"), headers["forward_offsets"], docs_done + 1,
                      (nnz_done + indptr[1:]).astype(np.int64))
            _write_at(self.path("forward_terms"), headers["forward_terms"], nnz_done,
                      indices.astype(forward.term_dtype(self.vocab_size), copy=False))
            _write_at(self.path("forward_impacts"), headers["forward_impacts"], nnz_done, impacts)
            order = _stable_term_order(indices)
            terms = indices[order]
            docs = np.repeat(np.arange(docs_done, docs_done + n, dtype=np.int32), np.diff(indptr))[order]
            run = runs / f"{number:05d}.run"
            with open(run.with_suffix(".tmp"), "wb") as handle:
                for array in (terms, docs, impacts[order]):
                    array.tofile(handle)
            os.replace(run.with_suffix(".tmp"), run)
            storage.save_array_atomic(run.with_suffix(".pos.npy"), np.searchsorted(terms, windows).astype(np.int64),
                                  durable=False)
            storage.kill_point("inverted.pass2.data")
            self.checkpoint(shard=number + 1, docs_done=docs_done + n, nnz_done=nnz_done + m,
                            clipped=state["clipped"] + clipped)
            self.report.tick(f"pass 2/2: shard {number + 1}/{self.source.num_shards}, "
                             f"{state['docs_done']:,}/{state['num_docs']:,} docs")
            storage.kill_point("inverted.pass2")
        if state["docs_done"] != state["num_docs"] or state["nnz_done"] != state["nnz"]:
            raise HeronError(f"{self.source.directory}: the input changed during the build; build again")
        self.checkpoint(stage="merge", window=0)

    # merge: the postings of a window of terms from every run, in term then document order
    def merge(self) -> None:
        state, dtype = self.state, self.dtype
        offsets = np.load(self.path("postings_offsets"))
        windows = np.load(self.dir / _WINDOWS_FILE)
        runs = [self.dir / _RUNS_DIR / f"{number:05d}.run" for number in range(self.source.num_shards)]
        positions = np.stack([np.load(run.with_suffix(".pos.npy")) for run in runs] or
                             [np.zeros((0, len(windows)), dtype=np.int64)])
        at = {name: fmt.npy_header(self.path(name))[2] for name in ("postings_docs", "postings_impacts")}
        isize = dtype.itemsize
        for w in range(state["window"], len(windows) - 1):
            t0, t1 = int(windows[w]), int(windows[w + 1])
            lo, hi = int(offsets[t0]), int(offsets[t1])
            if hi > lo and t1 - t0 == 1:
                # one long posting list: runs are in document order, so stream them
                cursor = lo
                for run, pos in zip(runs, positions):
                    a, b, total = int(pos[w]), int(pos[w + 1]), int(pos[-1])
                    if b > a:
                        docs, impacts = np.empty(b - a, np.int32), np.empty(b - a, dtype)
                        _read_into(run, 4 * total + 4 * a, docs)
                        _read_into(run, 8 * total + isize * a, impacts)
                        _write_at(self.path("postings_docs"), at["postings_docs"], cursor, docs)
                        _write_at(self.path("postings_impacts"), at["postings_impacts"], cursor, impacts)
                        cursor += b - a
                if cursor != hi:
                    raise HeronError(f"{self.dir}: postings of term {t0} do not add up; build again")
            elif hi > lo:
                terms, docs = np.empty(hi - lo, np.int32), np.empty(hi - lo, np.int32)
                impacts = np.empty(hi - lo, dtype)
                cursor = 0
                for run, pos in zip(runs, positions):
                    a, b, total = int(pos[w]), int(pos[w + 1]), int(pos[-1])
                    if b > a:
                        end = cursor + b - a
                        if end > hi - lo:
                            raise HeronError(f"{self.dir}: postings of terms {t0}..{t1} do not add up; build again")
                        _read_into(run, 4 * a, terms[cursor:end])
                        _read_into(run, 4 * total + 4 * a, docs[cursor:end])
                        _read_into(run, 8 * total + isize * a, impacts[cursor:end])
                        cursor = end
                terms -= t0
                if cursor != hi - lo or not np.array_equal(np.bincount(terms, minlength=t1 - t0),
                                                           np.diff(offsets[t0:t1 + 1])):
                    raise HeronError(f"{self.dir}: postings of terms {t0}..{t1} do not add up; build again")
                order = _stable_term_order(terms)
                _write_at(self.path("postings_docs"), at["postings_docs"], lo, docs[order])
                _write_at(self.path("postings_impacts"), at["postings_impacts"], lo, impacts[order])
                del terms, docs, impacts, order
            storage.kill_point("inverted.merge.data")
            self.checkpoint(window=w + 1)
            self.report.tick(f"merging postings: {hi:,}/{state['nnz']:,}")
            storage.kill_point("inverted.merge")
        self.checkpoint(stage="blocks")
        shutil.rmtree(self.dir / _RUNS_DIR, ignore_errors=True)

    # compressed blocks and their block-max metadata, a window of term ranges at a time
    def blocks(self) -> None:
        """Compress the postings into blocks (:mod:`.codec`) with their block maxima, last documents,
        widths and checksums. The block layout follows from df, so the metadata arrays are pre-sized;
        where each block's words lie follows from its widths, so it is not stored;
        the words are appended to a scratch file and copied into ``postings_words.npy`` at the end
        (the stage reruns whole after an interruption)."""
        offsets = np.load(self.path("postings_offsets"))
        block_offsets = np.zeros_like(offsets)
        np.cumsum((np.diff(offsets) + self.block_size - 1) // self.block_size, out=block_offsets[1:])
        total, size = int(block_offsets[-1]), self.vocab_size
        kinds = {"block_last_doc": np.int32, "block_max": self.dtype, "block_bits": np.uint16,
                 "block_checksum": np.uint32}
        for name, kind in kinds.items():
            np.lib.format.open_memmap(self.path(name), mode="w+", dtype=kind, shape=(total,))
        docs_path, impacts_path = self.path("postings_docs"), self.path("postings_impacts")
        at = {name: fmt.npy_header(self.path(name))[2] for name in ("postings_docs", "postings_impacts", *kinds)}
        window = max(1, WINDOW_BYTES // 4)
        term, word_base = 0, 0
        with open(self.dir / _WORDS_FILE, "wb") as words_out:
            while term < size:
                end = int(np.searchsorted(offsets, offsets[term] + window, side="right")) - 1
                end = min(max(end, term + 1), size)
                base, count = int(offsets[term]), int(offsets[end] - offsets[term])
                docs = np.fromfile(docs_path, dtype=np.int32, count=count, offset=at["postings_docs"] + 4 * base)
                impacts = np.fromfile(impacts_path, dtype=self.dtype, count=count,
                                      offset=at["postings_impacts"] + self.dtype.itemsize * base)
                if len(docs) != count or len(impacts) != count:
                    raise HeronError(f"{docs_path}: short read while compressing the postings; build again")
                first = int(block_offsets[term])
                enc = codec.encode_postings(offsets[term:end + 1] - base, docs, impacts, self.block_size,
                                            first_block=first)
                if not np.array_equal(enc["block_offsets"], block_offsets[term:end + 1] - first):
                    raise RuntimeError("encode_postings returned an unexpected block layout")
                for name in kinds:
                    _write_at(self.path(name), at[name], first, enc[name])
                enc["postings_words"].tofile(words_out)
                word_base += len(enc["postings_words"])
                term = end
                self.report.tick(f"compressing postings: {term:,}/{size:,} terms")
        _npy_from_raw(self.dir / _WORDS_FILE, self.path("postings_words"), np.dtype(np.uint32), word_base)
        counts = codec.encode_counts(np.diff(offsets))
        storage.save_array_atomic(self.path("postings_counts"), counts, durable=False)
        storage.kill_point("inverted.blocks")
        self.checkpoint(stage="approx", num_blocks=total, num_words=word_base, count_bytes=len(counts))

    def approx(self, params: dict | None) -> None:
        target = self.dir / fmt.APPROX_DIR
        if target.exists():
            shutil.rmtree(target)
        if params is not None:  # {} = the default parameters
            try:
                module = importlib.import_module("heron.indexing.inverted.approx")
            except ModuleNotFoundError as exc:
                if exc.name != "heron.indexing.inverted.approx":
                    raise
                raise HeronError("approximate structures need heron.indexing.inverted.approx, "
                                 "which this heron lacks; build without approx") from None
            self.report.line("building the approximate-search structures")
            opened = {name: np.load(self.path(name), mmap_mode="r")
                      for name in ("postings_offsets", "postings_docs", "postings_impacts",
                                   "forward_offsets", "forward_terms", "forward_impacts")}
            arrays = module.build_approx(
                opened["postings_offsets"], opened["postings_docs"], opened["postings_impacts"],
                opened["forward_offsets"], opened["forward_terms"], opened["forward_impacts"],
                self.state["num_docs"], **params)
            if not isinstance(arrays, dict):
                raise TypeError(f"build_approx returned {type(arrays).__name__}, expected a dict of arrays")
            target.mkdir()
            for name, array in arrays.items():
                array = np.asarray(array)
                if not isinstance(name, str) or not _APPROX_NAME.match(name) or array.dtype.hasobject:
                    raise TypeError(f"build_approx returned an unstorable entry {name!r} ({array.dtype})")
                storage.save_array_atomic(target / fmt.array_file(name), array, durable=False)
            storage.save_array_atomic(self.path("forward_checksum"), forward.checksums(
                opened["forward_offsets"], opened["forward_terms"], opened["forward_impacts"]), durable=False)
            del opened
            storage.kill_point("inverted.approx")
        self.checkpoint(stage="finalize")

    def finalize(self, vocab: list[str], encoder: dict, approx: dict | None, encoder_dir, started: float,
                 resumed: bool, docstore_dir=None) -> None:
        state, root = self.state, self.dir
        dropped = [fmt.array_file(name) for name in _UNCOMPRESSED]
        if approx is None:  # the forward index is kept only for the approximate structures, which read it
            dropped += [fmt.array_file(name) for name in fmt.FORWARD_ARRAYS]
        for name in (*_SCRATCH[1:], *dropped, fmt.ENCODER_DIR, fmt.DOCSTORE_DIR, fmt.MANIFEST_FILE):
            target = root / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        _remove_df_files(root)
        for stale in [p for p in root.rglob("*") if ".tmp" in p.name and p.is_file()]:
            stale.unlink()  # half-written temporaries of an interrupted run
        (root / fmt.VOCAB_FILE).write_bytes(gzip.compress(json.dumps(vocab, ensure_ascii=False).encode("utf-8"),
                                                          compresslevel=9, mtime=0))
        if encoder_dir is not None:
            shutil.copytree(encoder_dir, root / fmt.ENCODER_DIR, symlinks=False)
        if docstore_dir is not None:
            shutil.copytree(docstore_dir, root / fmt.DOCSTORE_DIR, symlinks=False)
        self.report.line("checksumming and syncing the index files")
        rels = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                      if p.is_file() and p.relative_to(root).as_posix() != PROGRESS_FILE)
        files = {rel: fmt.describe_file(root, rel) for rel in rels}
        approx_arrays = sorted(rel[len(fmt.APPROX_DIR) + 1:-4] for rel in rels
                               if rel.startswith(fmt.APPROX_DIR + "/") and rel.endswith(".npy"))
        manifest = {
            "format": fmt.FORMAT_NAME,
            "format_version": fmt.FORMAT_VERSION,
            "num_docs": state["num_docs"],
            "nnz": state["nnz"],
            "vocab_size": self.vocab_size,
            "vocab_file": fmt.VOCAB_FILE,
            "doc_ids_file": fmt.DOC_IDS_FILE,
            "quantization": {"dtype": self.dtype.name, "scale": state["scale"],
                             "max_weight": state["max_weight"], "clipped": state["clipped"]},
            "block_max": {"block_size": self.block_size, "num_blocks": state["num_blocks"]},
            "postings": {"codec": codec.CODEC_NAME, "block_size": self.block_size, "num_words": state["num_words"],
                         "count_bytes": state["count_bytes"],
                         "bytes": sum(files[fmt.array_file(name)]["bytes"] for name in fmt.ARRAYS)},
            "forward_index": approx is not None,
            "encoder": encoder,
            "encoder_dir": fmt.ENCODER_DIR if encoder_dir is not None else None,
            "docstore_dir": fmt.DOCSTORE_DIR if docstore_dir is not None else None,
            "approx": {"params": approx, "arrays": approx_arrays} if approx is not None else None,
            "build": {
                "time": datetime.now(UTC).isoformat(timespec="seconds"),
                "seconds": round(time.monotonic() - started, 3),
                "peak_rss_bytes": peak_rss_bytes(),
                "heron_version": heron.__version__,
                "numpy_version": np.__version__,
                "python_version": sys.version.split()[0],
                "resumed": resumed,
                "input": {"shards": self.source.num_shards, "fingerprint": self.source.fingerprint},
            },
            "files": files,
        }
        storage.write_manifest(root / fmt.MANIFEST_FILE, manifest, durable=False)  # sealed; publish fsyncs the tree


def _npy_from_raw(raw: Path, target: Path, dtype: np.dtype, count: int) -> None:
    """Write ``target`` as a ``.npy`` of the ``count`` values of ``dtype`` in the raw file ``raw`` (in chunks)."""
    if raw.stat().st_size != count * dtype.itemsize:
        raise HeronError(f"{raw}: holds {raw.stat().st_size} bytes, expected {count * dtype.itemsize}; build again")
    with open(target, "wb") as out, open(raw, "rb") as src:
        np.lib.format.write_array_header_1_0(out, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                   "fortran_order": False, "shape": (count,)})
        shutil.copyfileobj(src, out, 16 << 20)


def block_max_reference(offsets: np.ndarray, docs: np.ndarray, impacts: np.ndarray, block_size: int):
    """Block-max metadata in plain NumPy: ``(block_offsets int64[V+1], block_last_doc, block_max)``.

    Term ``t`` has ``ceil(df_t / block_size)`` blocks of consecutive postings; a block records its
    last document index and its largest impact.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    nblocks = (np.diff(offsets) + block_size - 1) // block_size
    block_offsets = np.zeros(len(offsets), dtype=np.int64)
    np.cumsum(nblocks, out=block_offsets[1:])
    total = int(block_offsets[-1])
    if total == 0:
        return block_offsets, np.zeros(0, np.int32), np.zeros(0, np.asarray(impacts).dtype)
    term = np.repeat(np.arange(len(nblocks)), nblocks)
    starts = offsets[term] + (np.arange(total) - block_offsets[term]) * block_size
    ends = np.minimum(starts + block_size, offsets[term + 1])
    return (block_offsets, np.asarray(docs[ends - 1], dtype=np.int32),
            np.maximum.reduceat(np.asarray(impacts), starts))


# -- array writes --------------------------------------------------------------------------------------
def _write_at(path: Path, data_offset: int, start: int, values: np.ndarray) -> None:
    """Write ``values`` at element ``start`` of a ``.npy`` file (plain file write, no mapping)."""
    if not len(values):
        return
    with open(path, "r+b") as handle:
        handle.seek(data_offset + start * values.dtype.itemsize)
        handle.write(np.ascontiguousarray(values).tobytes())


def _stable_term_order(indices: np.ndarray) -> np.ndarray:
    """Stable argsort of term ids by LSD radix passes over 16-bit digits (NumPy's radix sort)."""
    order = np.argsort((indices & 0xFFFF).astype(np.uint16), kind="stable")
    high = (indices >> 16).astype(np.uint16)
    if high.any():
        order = order[np.argsort(high[order], kind="stable")]
    return order


def _merge_windows(offsets: np.ndarray, limit: int) -> np.ndarray:
    """Term boundaries of merge windows holding ≤ ``limit`` postings (or a single longer list)."""
    bounds, term, size = [0], 0, len(offsets) - 1
    while term < size:
        end = int(np.searchsorted(offsets, offsets[term] + limit, side="right")) - 1
        term = min(max(end, term + 1), size)
        bounds.append(term)
    return np.asarray(bounds, dtype=np.int64)


def _read_into(path: Path, offset: int, out: np.ndarray) -> None:
    with open(path, "rb") as handle:
        handle.seek(offset)
        got = handle.readinto(memoryview(out).cast("B"))
    if got != out.nbytes:
        raise HeronError(f"{path}: short read (the build directory was modified); build again")


# -- progress, publish, locking ---------------------------------------------------------------------------
def _load_progress(build: Path) -> dict | None:
    try:
        state = json.loads((build / PROGRESS_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return state if isinstance(state, dict) else None


def _save_progress(build: Path, state: dict) -> None:
    storage.write_json_atomic(build / PROGRESS_FILE, state)


def _df_file(build: Path, shards: int) -> Path:
    """Pass 1's document frequencies over the first ``shards`` shards (the checkpoint names which one holds)."""
    return build / f"_df-{shards}.npy"


def _remove_df_files(build: Path, keep: int | None = None) -> None:
    for path in build.glob("_df-*.npy"):
        if path != (_df_file(build, keep) if keep is not None else None):
            path.unlink()


def _reset(build: Path) -> None:
    """Empty the build directory (keeping a freshly spooled input)."""
    for child in build.iterdir():
        if child.name == SPOOL_DIR:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (``getrusage``; Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class _Reporter:
    """Progress lines on stderr, at most one every two seconds (plus explicit lines)."""

    def __init__(self, enabled: bool):
        self.enabled, self.last = enabled, 0.0

    def tick(self, message: str) -> None:
        now = time.monotonic()
        if self.enabled and now - self.last >= 2.0:
            self.last = now
            print(f"heron: {message}", file=sys.stderr, flush=True)

    def line(self, message: str) -> None:
        if self.enabled:
            print(f"heron: {message}", file=sys.stderr, flush=True)
