"""``heron build-index --ray``: encode a corpus on a Ray cluster and commit the result as one segmented index.

All of heron's Ray code lives here, and ``ray`` is imported only inside the functions that need it: a build
without ``--ray`` never imports it (``ray[data]`` is the optional ``distributed`` extra).

How a build runs (``config.ray`` set, :func:`build_with_ray`):

1. **Plan.** The driver scans ``corpus.jsonl`` once for the byte offset of every ``shard_docs``-th document
   and cuts the corpus into *ranges* aligned with the single-process build's shards, so each range is encoded
   with exactly the batches a single-process build uses (identical vectors). The driver never holds the
   corpus: range descriptors (offset, first line, document count) are all it hands out.
2. **Encode.** Ray Data maps the ranges over a pool of encoder actors (``map_batches`` with an actor class:
   one model load per actor, ``concurrency = workers``). When the cluster reports GPUs the actors take one
   GPU each and encode in fp16, else they take ``cpus_per_worker`` CPUs and as many torch threads. Each
   actor reads its own ranges from the corpus file (seek to the offset), encodes them and writes each one as
   an encoded-shard folder (:class:`~heron.indexing.shards.SparseShardWriter` / ``DenseShardWriter``
   format, one shard) under ``<output>.ray/ranges/r-<n>/``, then a small ``stats.json`` (documents, largest
   weight, document frequencies) written atomically last: a range is done when its ``stats.json`` exists and
   its shard passes its sha256 check. The driver shows a progress bar over documents as ranges finish.
3. **Index.** The driver computes the global settings from the ranges' statistics: the quantisation scale
   from the largest weight of the whole corpus (what a single-process build computes), and, for inference-
   free SPLADE queries (``query_mode: idf``), the IDF query weights from the summed document frequencies.
   Ray tasks then build one segment per group of consecutive ranges (at most ``segments`` groups, default
   ``min(workers, 8)``) with those frozen settings, and the driver commits them into one segmented heron
   index (:mod:`heron.indexing.segments`), published atomically at ``output``; ``merge: true`` merges it to
   one segment. Exact search over it gives the single-process build's ids and scores.

**Resume.** ``<output>.ray/plan.json`` records what the ranges were encoded with (encoder, corpus
fingerprint, ``shard_docs``); a rerun with the same plan encodes only the ranges that are not done, and a
changed plan starts over. The folder is removed once the index is published.

**Shared storage.** Actors read the corpus and write their ranges at the driver's paths, so the dataset and
the output must be on storage every node sees at the same path (a network file system; nodes started on
one machine share its disk). Every node needs heron installed and the model (``heron models fetch``, or a
model folder on the shared storage).

Encoders: ``splade`` (``query_mode`` model or idf) and ``dense``; ``bm25`` has no model to distribute and
``csr`` / ``multivector`` are not distributed yet (a one-line error: build them without ``--ray``). The
corpus must be a plain BEIR ``corpus.jsonl`` (not gzipped: ranges are read by byte offset).

Kill point (``HERON_TEST_KILL_AT``): ``ray.range`` (in the driver, each time a range's result arrives).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import numpy as np

from heron.errors import HeronError, InputFormatError
from heron.storage import kill_point, read_json, sha256_file, write_json_atomic

#: encoder types a Ray build distributes
RAY_ENCODERS = ("splade", "dense")
#: the plan file of a Ray build's work folder
PLAN_FILE = "plan.json"
STATS_FILE = "stats.json"
PLAN_VERSION = 1
#: seconds to wait for the whole actor pool to start (model loads included) before failing
ACTOR_START_TIMEOUT = 600
#: segments a build makes at most by default
MAX_SEGMENTS = 8


def _say(progress: bool, message: str) -> None:
    if progress:
        print(f"heron: {message}", file=sys.stderr, flush=True)


# -- checks ----------------------------------------------------------------------------------------------
def check_ray_config(config) -> None:
    """Refuse what a Ray build cannot do, before anything is started (one-line :class:`HeronError`)."""
    kind = config.encoder.type
    if kind == "bm25":
        raise HeronError("--ray: a bm25 index has no model to distribute (it encodes at index speed); "
                         "build it without --ray")
    if kind not in RAY_ENCODERS:
        raise HeronError(f"--ray: {kind} encoders are not distributed yet (only {', '.join(RAY_ENCODERS)}); "
                         f"build it without --ray")
    if kind == "dense" and config.faiss is not None and config.faiss.type not in ("flat", "hnsw", "sq8"):
        raise HeronError(f"--ray: a FAISS {config.faiss.type} index trains on its vectors, so one segment per "
                         f"group would train its own quantiser; use flat, hnsw or sq8, or build it without --ray")


def work_dir(output: Path) -> Path:
    """Where a Ray build keeps its plan, encoded ranges and segments until the index is published."""
    return output.with_name(output.name + ".ray")


# -- the corpus, by ranges ---------------------------------------------------------------------------------
def plan_ranges(corpus: Path, shard_docs: int) -> tuple[list[dict], int]:
    """Range descriptors ``{"index", "start", "stop", "offset", "line"}`` of ``corpus`` (one per
    ``shard_docs`` non-blank lines, as the single-process build cuts its shards) and the document count.
    One pass over the file's bytes; nothing is parsed or kept but the offsets."""
    ranges: list[dict] = []
    docs = offset = 0
    with open(corpus, "rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            if raw.strip() and raw.strip() != b"\xef\xbb\xbf":
                if docs % shard_docs == 0:
                    ranges.append({"index": len(ranges), "start": docs, "offset": offset, "line": lineno})
                docs += 1
            offset += len(raw)
    if docs == 0:
        raise InputFormatError(corpus, None, "no documents: the corpus is empty (an empty corpus is refused)")
    for r, following in zip(ranges, ranges[1:] + [None]):
        r["stop"] = following["start"] if following else docs
    return ranges, docs


def read_range(corpus: Path, rng: dict):
    """The :class:`~heron.eval.datasets.Document` objects of one range, read from its byte offset and checked
    as :meth:`Dataset.iter_corpus` checks them (one-line errors naming the line)."""
    from heron.eval.datasets import Document, _field, parse_json_object

    count = rng["stop"] - rng["start"]
    docs = []
    lineno = rng["line"] - 1
    with open(corpus, "rb") as handle:
        handle.seek(rng["offset"])
        while len(docs) < count:
            raw = handle.readline()
            if not raw:
                raise HeronError(f"{corpus}: ends inside range {rng['index']} (the file changed since the build "
                                 f"planned it); rerun the build")
            lineno += 1
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputFormatError(corpus, lineno, f"not valid UTF-8 (byte {exc.start})") from None
            if lineno == 1:
                line = line.lstrip("\ufeff")
            if not line.strip():
                continue
            obj = parse_json_object(line, corpus, lineno)
            docs.append(Document(id=_field(obj, "_id", corpus, lineno),
                                 title=_field(obj, "title", corpus, lineno, required=False),
                                 text=_field(obj, "text", corpus, lineno, required=False)))
    return docs


def range_dir(work: Path, index: int) -> Path:
    return work / "ranges" / f"r-{index:06d}"


def range_stats(work: Path, rng: dict, plan_id: str) -> dict | None:
    """The statistics of a range that is done (its ``stats.json`` present, for this plan, and its shard
    file intact), else None."""
    from heron.indexing.shards import MANIFEST

    folder = range_dir(work, rng["index"])
    try:
        stats = read_json(folder / STATS_FILE)
        manifest = read_json(folder / MANIFEST)
    except (HeronError, OSError):
        return None
    if stats.get("plan") != plan_id or stats.get("range") != [rng["start"], rng["stop"]] \
            or not manifest.get("complete") or manifest.get("num_docs") != rng["stop"] - rng["start"]:
        return None
    for shard in manifest.get("shards", []):
        file = folder / shard["file"]
        if not file.is_file() or sha256_file(file) != shard["sha256"]:
            return None
    return stats


# -- the encoder actor (runs on the cluster) ----------------------------------------------------------------
def make_encoder(kind: str, kwargs: dict):
    """The document encoder a range is encoded with (the same arguments on every node)."""
    if kind == "dense":
        from heron.retrieval.encoders.dense import DenseEncoder

        return DenseEncoder(**kwargs)
    from heron.retrieval.encoders import splade

    return splade.SpladeEncoder(**kwargs)


def encode_range(encoder, kind: str, corpus: Path, work: Path, rng: dict, plan_id: str) -> dict:
    """Encode one range into its shard folder and write its ``stats.json`` (last, atomically); returns it."""
    from heron.indexing.shards import DenseShardWriter, SparseShardWriter

    docs = read_range(corpus, rng)
    folder = range_dir(work, rng["index"])
    shutil.rmtree(folder, ignore_errors=True)  # a half-written range of a killed run
    meta = {"plan": plan_id, "range": [rng["start"], rng["stop"]]}
    texts = [d.contents for d in docs]
    ids = [d.id for d in docs]
    started, wall_started = time.monotonic(), time.time()
    if kind == "dense":
        vectors = encoder.encode_documents(texts)
        with DenseShardWriter(folder, encoder.dim, meta=meta) as writer:
            writer.add(ids, vectors)
        stats = {"max_weight": None, "df": None}
    else:
        matrix = encoder.encode_documents(texts)
        with SparseShardWriter(folder, encoder.vocab_size, meta=meta) as writer:
            writer.add(ids, matrix)
        matrix.sum_duplicates()
        terms, counts = np.unique(matrix.indices, return_counts=True)
        stats = {"max_weight": float(matrix.data.max()) if matrix.nnz else 0.0,
                 "df": [terms.tolist(), counts.tolist()], "nnz": int(matrix.nnz)}
    stats.update(plan=plan_id, range=[rng["start"], rng["stop"]], num_docs=len(docs),
                 seconds=round(time.monotonic() - started, 3), started=wall_started, finished=time.time(),
                 host=socket.gethostname(), node=_node_id(), pid=os.getpid())
    write_json_atomic(folder / STATS_FILE, stats)
    return stats


def _node_id() -> str | None:
    """The Ray node this process runs on (None outside Ray)."""
    if "ray" not in sys.modules:
        return None
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


class RangeEncoder:
    """The Ray Data actor: loads the model once, then encodes the ranges it is handed (one per batch)."""

    def __init__(self, kind: str, kwargs: dict, corpus: str, work: str, plan_id: str):
        from heron.models import quiet_model_loading

        quiet_model_loading()
        self.kind, self.corpus, self.work, self.plan_id = kind, Path(corpus), Path(work), plan_id
        self.encoder = make_encoder(kind, kwargs)

    def __call__(self, batch: dict) -> dict:
        """Encode the ranges of ``batch``; a :class:`HeronError` (bad input: file and line) comes back as data,
        its one line in ``error``, so the driver raises it as it is (Ray's wrappers keep only its text)."""
        out = {"index": [], "num_docs": [], "error": []}
        for i in range(len(batch["index"])):
            rng = {key: int(batch[key][i]) for key in ("index", "start", "stop", "offset", "line")}
            try:
                docs, error = encode_range(self.encoder, self.kind, self.corpus, self.work, rng,
                                           self.plan_id)["num_docs"], ""
            except HeronError as exc:
                docs, error = 0, str(exc)
            out["index"].append(rng["index"])
            out["num_docs"].append(docs)
            out["error"].append(error)
        return {"index": np.asarray(out["index"], dtype=np.int64), "num_docs": np.asarray(out["num_docs"],
                dtype=np.int64), "error": np.asarray(out["error"], dtype=object)}


# -- segments (Ray tasks) -----------------------------------------------------------------------------------
def build_group_segment(spec: dict) -> str:
    """Build one segment (a complete index directory) over a group of encoded ranges, with the build's frozen
    settings: its docstore from the corpus lines, its vectors from the ranges' shards."""
    from heron.indexing.docstore import write_docstore
    from heron.indexing.shards import iter_dense_shards, iter_shards
    from heron.storage import scratch

    out, work, corpus = Path(spec["out"]), Path(spec["work"]), Path(spec["corpus"])
    shutil.rmtree(out, ignore_errors=True)
    with scratch(out, "docstore") as aux:
        rows = ((d.id, d.title, d.text) for rng in spec["ranges"] for d in read_range(corpus, rng))
        write_docstore(aux / "docstore", rows)
        folders = [range_dir(work, rng["index"]) for rng in spec["ranges"]]
        if spec["kind"] == "dense":
            from heron.indexing.faiss_index import build_faiss_index

            chunks = (chunk for folder in folders for chunk in iter_dense_shards(folder))
            build_faiss_index(chunks, out, dim=spec["dim"], index_type=spec["index_type"], params=spec["params"],
                              encoder=spec["info"], encoder_dir=spec["encoder_dir"], docstore_dir=aux / "docstore",
                              store_vectors=spec["store_vectors"], progress=False)
        else:
            from heron.indexing.inverted import build_inverted_index

            chunks = (chunk for folder in folders for chunk in iter_shards(folder))
            build_inverted_index(chunks, out, vocab=spec["vocab"], encoder=spec["info"],
                                 quantization=spec["quantization"], scale=spec["scale"],
                                 block_size=spec["block_size"], approx=spec["approx"],
                                 encoder_dir=spec["encoder_dir"], docstore_dir=aux / "docstore", resume=False,
                                 progress=False)
    return str(out)


def group_ranges(ranges: list[dict], groups: int) -> list[list[dict]]:
    """``ranges`` cut into at most ``groups`` runs of consecutive ranges, as even as possible."""
    groups = max(1, min(groups, len(ranges)))
    bounds = np.linspace(0, len(ranges), groups + 1).round().astype(int)
    return [ranges[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


# -- the cluster ---------------------------------------------------------------------------------------------
def _probe(address: str, timeout: float) -> None:
    """Fail fast, in one line, when a ``host:port`` cluster address does not answer (ray.init would retry for
    a long time)."""
    if address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise HeronError(f"--ray-address {address!r}: expected HOST:PORT of the head node (e.g. 10.0.0.5:6379), "
                         f"'auto' or ray://HOST:PORT")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise HeronError(f"--ray-address {address}: no Ray head node answers there ({exc.strerror or exc}); "
                         f"start one with ray start --head, or leave out the address for a local cluster") \
            from None


class Cluster:
    """A connection to Ray for one build: ``ray.init()`` (a local cluster) or the cluster at ``address``;
    shut down at the end when this build connected (a session the caller opened is left open)."""

    def __init__(self, ray_cfg, progress: bool):
        import logging

        import ray

        self.ray = ray
        self.opened = not ray.is_initialized()
        self._environ = dict(os.environ)  # ray.init sets RAY_AUTH_MODE & co. for the process; put back at close
        if self.opened:
            if ray_cfg.address:
                _probe(ray_cfg.address, ray_cfg.connect_timeout)
            started = time.monotonic()
            kwargs = {"logging_level": logging.ERROR, "log_to_driver": False, "configure_logging": True}
            try:
                if ray_cfg.address:
                    ray.init(address=ray_cfg.address, **kwargs)
                else:
                    ray.init(include_dashboard=False, num_cpus=ray_cfg.local_cpus, **kwargs)
            except (ConnectionError, RuntimeError, TimeoutError) as exc:
                self.close()
                where = ray_cfg.address or "a local cluster"
                raise HeronError(f"--ray: cannot connect to {where}: {str(exc).splitlines()[0]}") from None
            self.startup_seconds = time.monotonic() - started
        else:
            self.startup_seconds = 0.0
        resources = ray.cluster_resources()
        self.cpus, self.gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
        self.nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        _say(progress, f"Ray cluster: {self.nodes} node(s), {self.cpus:g} CPUs, {self.gpus:g} GPUs "
                       f"(connected in {self.startup_seconds:.1f} s)")

    def close(self) -> None:
        if self.opened:
            if self.ray.is_initialized():
                self.ray.shutdown()
            for key in set(os.environ) - set(self._environ):
                del os.environ[key]
            os.environ.update(self._environ)


# -- the driver -----------------------------------------------------------------------------------------------
def _encoder_kwargs(config) -> dict:
    enc = config.encoder
    if config.encoder.type == "dense":
        return {"model": enc.model or "minilm", "max_length": enc.max_length, "batch_size": enc.batch_size}
    return {"doc_model": enc.model or "splade-tiny", "doc_max_length": enc.doc_max_length,
            "doc_top_k": enc.doc_top_k, "batch_size": enc.batch_size}


def _prepare(work: Path, plan: dict, progress: bool) -> str:
    """Keep ``work`` when its plan is ``plan`` (a resume), else start it afresh; returns the plan's id."""
    plan_id = sha256_text(json.dumps(plan, sort_keys=True))[:16]
    path = work / PLAN_FILE
    if path.is_file():
        try:
            same = read_json(path).get("id") == plan_id
        except HeronError:
            same = False
        if not same:
            _say(progress, f"{work}: encoded with other settings; starting over")
            shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"format": "heron-ray-build", "version": PLAN_VERSION, "id": plan_id, "plan": plan})
    return plan_id


def sha256_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def build_with_ray(config, dataset, source: dict, output: Path, progress: bool = True) -> Path:
    """Build ``config`` (``config.ray`` set) on a Ray cluster into the segmented index ``output`` (module
    docstring); the caller holds ``output``'s build lock. Returns ``output``."""
    from tqdm.auto import tqdm

    check_ray_config(config)
    ray_cfg, enc, kind = config.ray, config.encoder, config.encoder.type
    corpus = dataset.corpus_path.absolute()
    if dataset.format != "beir" or corpus.suffix != ".jsonl":
        raise HeronError(f"{corpus}: --ray reads ranges of a plain BEIR corpus.jsonl by byte offset "
                         f"(decompress it first, or build it without --ray)")
    work = work_dir(output)
    ranges, num_docs = plan_ranges(corpus, config.shard_docs)
    source["num_docs"] = num_docs
    kwargs = _encoder_kwargs(config)
    cluster = Cluster(ray_cfg, progress)
    try:
        use_gpus = cluster.gpus >= 1 and ray_cfg.gpus is not False
        if ray_cfg.gpus and not use_gpus:
            raise HeronError("--ray: gpus: true, but the cluster reports no GPU")
        workers = ray_cfg.workers or (int(cluster.gpus) if use_gpus else max(1, int(cluster.cpus //
                                                                                   ray_cfg.cpus_per_worker)))
        workers = max(1, min(workers, len(ranges)))
        actor_kwargs = dict(kwargs, device="cuda" if use_gpus else "cpu",
                            threads=enc.threads or max(1, int(ray_cfg.cpus_per_worker)))
        plan = {"encoder": {"type": kind, **kwargs, "fp16": use_gpus}, "corpus": str(corpus),
                "fingerprint": dataset.fingerprint(), "num_docs": num_docs, "shard_docs": config.shard_docs}
        plan_id = _prepare(work, plan, progress)
        done = {r["index"]: s for r in ranges if (s := range_stats(work, r, plan_id)) is not None}
        todo = [r for r in ranges if r["index"] not in done]
        _say(progress, f"encoding {len(todo)} of {len(ranges)} ranges ({sum(r['stop'] - r['start'] for r in todo):,}"
                       f" of {num_docs:,} documents) on {workers} {'GPU' if use_gpus else 'CPU'} actor(s)")
        if todo:
            _encode(cluster.ray, todo, workers, use_gpus, ray_cfg, kind, actor_kwargs, corpus, work, plan_id,
                    tqdm(total=num_docs, initial=num_docs - sum(r["stop"] - r["start"] for r in todo), unit="doc",
                         desc=f"{kind} encoding on Ray", disable=not progress, dynamic_ncols=True, mininterval=1.0))
        stats = {}
        for r in ranges:
            s = range_stats(work, r, plan_id)
            if s is None:
                raise HeronError(f"{range_dir(work, r['index'])}: range {r['index']} was not encoded; rerun the "
                                 f"build (it resumes)")
            stats[r["index"]] = s
        nodes = {s.get("node") for s in stats.values()}
        _say(progress, f"{len(ranges)} ranges encoded on {len(nodes)} node(s)")
        segments = _build_segments(cluster.ray, config, ranges, stats, num_docs, source, corpus, work, use_gpus,
                                   workers, progress)
    finally:
        cluster.close()
    _commit(segments, work, output, bool(ray_cfg.merge), progress)
    shutil.rmtree(work, ignore_errors=True)
    return output


def _encode(ray, todo, workers, use_gpus, ray_cfg, kind, actor_kwargs, corpus, work, plan_id, bar) -> None:
    """Map the ranges still to encode over the actor pool (Ray Data), advancing ``bar`` as each one lands."""
    import logging

    import ray.data

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # the bar below says what is happening
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.wait_for_min_actors_s = ACTOR_START_TIMEOUT  # hand out ranges once every actor has its model loaded
    items = [{k: r[k] for k in ("index", "start", "stop", "offset", "line")} for r in todo]
    resources = {"num_gpus": 1} if use_gpus else {"num_cpus": ray_cfg.cpus_per_worker}
    ds = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        RangeEncoder, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers), fn_constructor_kwargs={
            "kind": kind, "kwargs": actor_kwargs, "corpus": str(corpus), "work": str(work), "plan_id": plan_id},
        **resources)
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for n, error in zip(batch["num_docs"], batch["error"]):
                if error:
                    raise HeronError(str(error))
                bar.update(int(n))
                kill_point("ray.range")
    except ray.exceptions.RayError as exc:
        raise _cluster_error(exc, "encoding failed on the cluster") from None
    finally:
        bar.close()


def _cluster_error(exc: BaseException, what: str) -> HeronError:
    """The one-line error for an exception raised on the cluster: the :class:`HeronError` an actor or task raised
    (bad input names its file and line), found through Ray's wrappers, else the wrapper's last line."""
    seen, todo = set(), [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, HeronError):
            return HeronError(str(e).strip().splitlines()[0])
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]
    import re

    text = str(exc)
    found = re.findall(r"^heron\.errors\.\w+: (.+)$", text, flags=re.M)  # a HeronError's line in a traceback
    if found:
        return HeronError(found[-1].strip())
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return HeronError(f"--ray: {what}: {lines[-1] if lines else type(exc).__name__}")


def _build_segments(ray, config, ranges, stats, num_docs, source, corpus, work, use_gpus, workers,
                    progress) -> list[Path]:
    """The global settings from the ranges' statistics, the query encoder, then one segment per group of
    ranges built as Ray tasks; returns the segment folders in corpus order."""
    from heron.build.config import FaissConfig
    from heron.indexing.inverted import format as fmt

    enc, kind = config.encoder, config.encoder.type
    _say(progress, "saving the query encoder into the index")
    if kind == "dense":
        from heron.retrieval.encoders.dense import DenseEncoder

        encoder = DenseEncoder(enc.model or "minilm", max_length=enc.max_length, batch_size=enc.batch_size,
                               threads=enc.threads, device="cpu")
        info = {**encoder.describe(), "fp16": use_gpus, "name": Path(enc.model or "minilm").name, "dataset": source}
        faiss = config.faiss or FaissConfig()
        common = {"kind": kind, "dim": encoder.dim, "index_type": faiss.type, "params": faiss.params(),
                  "store_vectors": faiss.store_vectors}
    else:
        from heron.retrieval.encoders import splade

        encoder = splade.SpladeEncoder(
            enc.model or "splade-tiny", query_model=enc.query_model, doc_max_length=enc.doc_max_length,
            query_max_length=enc.query_max_length, doc_top_k=enc.doc_top_k, query_top_k=enc.query_top_k,
            batch_size=enc.batch_size, threads=enc.threads, device="cpu")
        if enc.query_mode == "idf":
            df = np.zeros(encoder.vocab_size, dtype=np.int64)
            for s in stats.values():
                terms, counts = s["df"]
                np.add.at(df, np.asarray(terms, dtype=np.int64), np.asarray(counts, dtype=np.int64))
            _say(progress, "fitting the IDF query weights")
            encoder.fit_idf_queries(df, num_docs)
        quantization = config.quantization or "uint8"
        max_weight = max(s["max_weight"] for s in stats.values())
        scale = config.scale if config.scale is not None else fmt.default_scale(max_weight, np.dtype(quantization))
        name = Path(enc.model or "splade-tiny").name + ("-idf" if enc.query_mode == "idf" else "")
        info = {**encoder.describe(), "fp16": use_gpus, "name": name, "dataset": source}
        common = {"kind": kind, "vocab": list(encoder.vocabulary), "quantization": quantization,
                  "scale": float(scale), "block_size": config.block_size, "approx": config.approx}
    encoder_dir = work / "encoder"
    shutil.rmtree(encoder_dir, ignore_errors=True)
    encoder.save(encoder_dir)
    groups = group_ranges(ranges, config.ray.segments or min(workers, MAX_SEGMENTS))
    seg_root = work / "segments"
    seg_root.mkdir(exist_ok=True)
    specs = [{**common, "out": str(seg_root / f"g-{i:04d}"), "work": str(work), "corpus": str(corpus),
              "ranges": group, "info": info, "encoder_dir": str(encoder_dir)} for i, group in enumerate(groups)]
    _say(progress, f"building {len(specs)} segment(s) on the cluster")
    task = ray.remote(num_cpus=1)(build_group_segment)
    try:
        paths = ray.get([task.remote(spec) for spec in specs])
    except ray.exceptions.RayError as exc:
        raise _cluster_error(exc, "a segment build failed on the cluster") from None
    return [Path(p) for p in paths]


def _commit(segments: list[Path], work: Path, output: Path, merge: bool, progress: bool) -> None:
    """Commit the segment folders into one segmented index, assembled in ``work`` and published at ``output``."""
    from heron.indexing.segments import IndexWriter, convert_to_segmented
    from heron.storage import publish

    assembly = work / "index"
    shutil.rmtree(assembly, ignore_errors=True)
    os.rename(segments[0], assembly)
    convert_to_segmented(assembly)
    with IndexWriter(assembly) as writer:
        for segment in segments[1:]:
            writer.add_segment(segment)
        writer.commit()
        if merge and len(segments) > 1:
            _say(progress, f"merging {len(segments)} segments into one")
            writer.merge(1)
    for lock in work.glob(".index.lock"):
        lock.unlink()
    _say(progress, f"publishing {output}")
    publish(assembly, output)
