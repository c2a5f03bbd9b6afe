"""Retrieval datasets: BEIR folders and MS MARCO TSV files, streamed, with clear errors.

A dataset is named by a path or by a BEIR name. Names resolve through ``$HERON_DATA`` (one or more
directories), then heron's cache (``$HERON_CACHE/datasets``), then the official BEIR download when
online. Offline with nothing found, :func:`load_dataset` raises a one-line :class:`HeronError` that says
where heron looked and how to provide the data.

BEIR layout::

    corpus.jsonl[.gz]    {"_id", "title", "text", ...} per line
    queries.jsonl[.gz]   {"_id", "text", ...} per line
    qrels/<split>.tsv    query-id <TAB> corpus-id <TAB> score   (header line optional)

MS MARCO layout::

    collection.tsv[.gz]            pid <TAB> passage
    queries.<split>.tsv[.gz]       qid <TAB> query        (e.g. queries.dev.small.tsv)
    qrels.<split>.tsv[.gz]         qid 0 pid relevance    (TREC qrels; e.g. qrels.dev.small.tsv)

Example::

    >>> ds = load_dataset("scifact")                      # doctest: +SKIP
    >>> next(iter(ds.iter_corpus())).contents[:40]         # doctest: +SKIP
    >>> len(ds.queries("test")), len(ds.qrels("test"))     # doctest: +SKIP
    (300, 300)
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import re
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from heron import settings
from heron.errors import HeronError, InputFormatError
from heron.storage import publish

BEIR_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{name}.zip"

#: BEIR datasets downloadable by name (the public BEIR archive).
BEIR_DATASETS = frozenset({
    "msmarco", "trec-covid", "nfcorpus", "nq", "hotpotqa", "fiqa", "arguana", "webis-touche2020",
    "cqadupstack", "quora", "dbpedia-entity", "scidocs", "fever", "climate-fever", "scifact",
})

# BEIR drops a hit whose id equals the query id on ArguAna and Quora, whose queries are also documents;
# heron does not go by the name: :meth:`Dataset.self_hits` finds the case in the data.

#: a BEIR corpus line's leading ``{"_id": ...`` (read without parsing the rest of the line)
_LEADING_ID = re.compile(r'\s*\{\s*"_id"\s*:\s*(?:("(?:[^"\\]|\\.)*")|(-?\d+)\b)')


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def _same_text(query: str, doc: Document) -> bool:
    """Whether a query is (mostly) the text of ``doc``: their shared words are at least half of each side's.

    True for ArguAna (the query is the argument) and Quora (the query is the question); false for an id that is
    a corpus id by coincidence (FiQA, say, numbers both queries and documents from 0).
    """
    q, d = _words(query), _words(doc.contents)
    if not q or not d:
        return False
    shared = len(q & d)
    return shared >= 0.5 * len(q) and shared >= 0.5 * len(d)


@dataclass(frozen=True, slots=True)
class SelfHits:
    """Whether evaluation drops a retrieved document whose id equals the query id, and why."""

    removed: bool
    reason: str
    #: evaluated queries whose id is a corpus id holding the query's own text, and evaluated queries
    found: int | None = None
    total: int | None = None

    def to_dict(self) -> dict:
        return {"removed": self.removed, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Document:
    """One corpus entry. ``contents`` joins title and text with a space, as BEIR and Pyserini do."""

    id: str
    title: str
    text: str

    @property
    def contents(self) -> str:
        if self.title:
            return f"{self.title} {self.text}".strip()
        return self.text.strip()


def _open_binary(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of every line of a UTF-8 text file (``.gz`` too), lines split on ``\\n`` only.

    Undecodable bytes are a one-line :class:`InputFormatError` naming their line (never a
    ``UnicodeDecodeError``); so is a damaged ``.gz`` file. A leading byte-order mark is dropped. The file is
    read at full speed; only when it fails to decode is it scanned again, line by line, for the bad line.
    """
    lineno = 0
    try:
        with io.TextIOWrapper(_open_binary(path), encoding="utf-8-sig", newline="\n") as handle:
            for lineno, line in enumerate(handle, start=1):
                yield lineno, line
    except UnicodeDecodeError:
        _raise_undecodable(path)
        raise  # pragma: no cover - the scan finds the line the decoder stopped at
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise InputFormatError(path, lineno + 1, f"damaged gzip data ({exc})") from None


def _raise_undecodable(path: Path) -> None:
    """The one-line error for the first line of ``path`` that is not UTF-8 (its line, byte and offset)."""
    with _open_binary(path) as handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputFormatError(path, lineno, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at byte "
                                                     f"{exc.start + 1} of the line)") from None


def count_lines(path: Path) -> int:
    """Non-blank lines of a text file (``.gz`` too), counted without decoding."""
    try:
        with _open_binary(path) as handle:
            return sum(1 for line in handle if line.strip())
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise InputFormatError(path, None, f"damaged gzip data ({exc})") from None


def text_rows(path: Path, tabs: bool = True) -> Iterator[tuple[int, list[str]]]:
    """``(line number, fields)`` for each non-blank line of a text file (``.gz`` too): fields split on tabs,
    or on any white space with ``tabs=False``."""
    for lineno, line in text_lines(path):
        line = line.rstrip("\n\r")
        if line.strip():
            yield lineno, line.split("\t") if tabs else line.split()


def _first_existing(root: Path, names: list[str]) -> Path | None:
    for name in names:
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


class _NonFinite(ValueError):
    """A JSON number that is not finite (``NaN``, ``Infinity``, or too large for a float)."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFinite(text)
    return value


def _reject_constant(text: str):
    raise _NonFinite(text)


#: the JSON-lines parser: like ``json.loads``, but a non-finite number raises :class:`_NonFinite`
_STRICT_JSON = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def _non_finite_field(line: str) -> str:
    """The dotted path of the first non-finite number in a JSON line (for the error message)."""
    bad = object()
    obj = json.loads(line, parse_constant=lambda _: bad,
                     parse_float=lambda t: bad if not math.isfinite(float(t)) else 0.0)

    def find(value, path):
        if value is bad:
            return path
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, item in items:
            found = find(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
        return None

    return find(obj, "") or "?"


def parse_json_object(line: str, path: Path, lineno: int) -> dict:
    """One JSON-lines line as an object; invalid JSON, a non-object or a non-finite number (``NaN``,
    ``Infinity``, ``1e999``: JSON has none) raise a one-line InputFormatError."""
    try:
        obj = _STRICT_JSON.decode(line)
    except _NonFinite as exc:
        raise InputFormatError(path, lineno, f"field '{_non_finite_field(line)}': non-finite number {exc} "
                                             f"(JSON numbers are finite)") from None
    except json.JSONDecodeError as exc:
        raise InputFormatError(path, lineno, f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise InputFormatError(path, lineno, "invalid JSON (nested too deeply)") from None
    if not isinstance(obj, dict):
        raise InputFormatError(path, lineno, "expected a JSON object")
    return obj


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line; malformed lines raise InputFormatError."""
    for lineno, line in text_lines(path):
        if line.strip():
            yield lineno, parse_json_object(line, path, lineno)


_WHITE_SPACE = re.compile(r"\s")


def check_id(value: str, path: Path, lineno: int, field: str) -> str:
    """An id as read (a query, document or run id): empty ids and ids holding white space are refused, since
    a TREC run or qrels line could not hold them (and qrels ids are read stripped)."""
    if value and _WHITE_SPACE.search(value) is None:
        return value
    if not value.strip():
        raise InputFormatError(path, lineno, f"field '{field}' is empty")
    raise InputFormatError(path, lineno, f"field '{field}' holds white space ({value!r}); ids may not, since "
                                         f"run and qrels files separate fields by it")


def _field(obj: dict, key: str, path: Path, lineno: int, required: bool = True) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise InputFormatError(path, lineno, f"missing field '{key}'")
        return ""
    if key == "_id":
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise InputFormatError(path, lineno, f"field '_id' must be a string or an integer, got "
                                                 f"{type(value).__name__}")
        return check_id(value, path, lineno, key)
    if not isinstance(value, str):
        raise InputFormatError(path, lineno, f"field '{key}' must be a string, got {type(value).__name__}")
    return value


class _UniqueIds:
    """Refuses a second occurrence of an id in one file, naming both lines (one set of ids in memory)."""

    def __init__(self, path: Path, field: str, find_first):
        self.path, self.field, self.find_first, self.seen = path, field, find_first, set()

    def add(self, value: str, lineno: int) -> None:
        if value in self.seen:
            first = self.find_first(value)
            raise InputFormatError(self.path, lineno, f"field '{self.field}': duplicate id {value!r} (first on "
                                                      f"line {first}); ids must be unique")
        self.seen.add(value)


class _Qrels:
    """Judgments as read, line by line: a (query, document) pair judged twice must agree (the same grade
    twice is harmless and kept once; two grades are refused, naming both lines)."""

    def __init__(self, path: Path, doc_field: int, tabs: bool):
        self.path, self.doc_field, self.tabs, self.qrels = path, doc_field, tabs, {}

    def add(self, qid: str, docid: str, grade: int, lineno: int) -> None:
        docs = self.qrels.get(qid)
        if docs is None:
            docs = self.qrels[qid] = {}
        elif docs.get(docid, grade) != grade:
            d = self.doc_field
            first = next(n for n, parts in text_rows(self.path, tabs=self.tabs)
                         if len(parts) > d and parts[0].strip() == qid and parts[d].strip() == docid)
            raise InputFormatError(self.path, lineno, f"field 'score': query {qid!r} and document {docid!r} "
                                                      f"judged {grade} here and {docs[docid]} on line {first}")
        docs[docid] = grade


def read_beir_qrels(path: Path) -> dict[str, dict[str, int]]:
    """Read a BEIR qrels TSV (``query-id corpus-id score``, header optional)."""
    qrels = _Qrels(path, doc_field=1, tabs=True)
    for lineno, parts in text_rows(path):
        if lineno == 1 and parts[0].strip().lower() in {"query-id", "query_id", "qid"}:
            continue
        if len(parts) != 3:
            raise InputFormatError(
                path, lineno, f"expected 3 tab-separated fields (query-id, corpus-id, score), got {len(parts)}"
            )
        qid, docid, score = parts[0].strip(), parts[1].strip(), parts[2].strip()
        if not (qid and docid) or _WHITE_SPACE.search(qid) or _WHITE_SPACE.search(docid):
            check_id(qid, path, lineno, "query-id")
            check_id(docid, path, lineno, "corpus-id")
        qrels.add(qid, docid, _parse_grade(score, path, lineno), lineno)
    return qrels.qrels


def read_trec_qrels(path: Path) -> dict[str, dict[str, int]]:
    """Read TREC qrels (``qid iter docid relevance``, whitespace-separated)."""
    qrels = _Qrels(path, doc_field=2, tabs=False)
    for lineno, parts in text_rows(path, tabs=False):
        if len(parts) != 4:
            raise InputFormatError(
                path, lineno, f"expected 4 fields (query-id, iteration, doc-id, relevance), got {len(parts)}"
            )
        qrels.add(parts[0], parts[2], _parse_grade(parts[3], path, lineno), lineno)
    return qrels.qrels


#: the largest judgment grade (trec_eval reads grades as C ints: a larger one would wrap around)
MAX_GRADE = 2**31 - 1


#: a judgment grade as written: an integer, or a float with nothing after the point but zeros (``2.0``)
_GRADE = re.compile(r"[+-]?\d+(?:\.0*)?")


def _parse_grade(value: str, path: Path, lineno: int) -> int:
    """A judgment grade: an integer (``2``, or ``2.0``) within ±:data:`MAX_GRADE`; ``nan``, ``inf``, ``1.5``
    and the like raise a one-line InputFormatError."""
    if value.isascii() and value.isdigit():  # the common case, at full speed
        grade = int(value)
    elif _GRADE.fullmatch(value.strip()):
        grade = int(value.strip().partition(".")[0])
    else:
        raise InputFormatError(path, lineno, f"field 'score' must be an integer, got {value!r}")
    if abs(grade) > MAX_GRADE:
        raise InputFormatError(path, lineno, f"field 'score' must be between -{MAX_GRADE} and {MAX_GRADE}, "
                                             f"got {value!r}")
    return grade


def _read_tsv_pairs(path: Path, what: str) -> Iterator[tuple[int, str, str]]:
    """``(line, id, text)`` of an ``id<TAB>text`` file; ids are checked (:func:`check_id`) and unique."""
    unique = _UniqueIds(path, f"{what}-id", lambda value: next(
        n for n, parts in text_rows(path) if parts[0].strip() == value))
    for lineno, parts in text_rows(path):
        if len(parts) < 2:
            raise InputFormatError(path, lineno, f"expected '{what}-id<TAB>text', found no tab")
        ident = check_id(parts[0].strip(), path, lineno, f"{what}-id")
        unique.add(ident, lineno)
        yield lineno, ident, "\t".join(parts[1:])


@dataclass
class Dataset:
    """A retrieval test collection on disk (BEIR or MS MARCO layout).

    ``remove_self_hits`` asks evaluation to drop a retrieved document whose id equals the query id (BEIR's
    ``ignore_identical_ids``): ``None`` (the default) decides from the data (:meth:`self_hits`), ``True`` or
    ``False`` forces it.
    """

    root: Path
    name: str
    format: str  # "beir" | "msmarco"
    remove_self_hits: bool | None = None
    _queries: dict[str, str] | None = field(default=None, repr=False)
    _self_hits: dict[str, SelfHits] = field(default_factory=dict, repr=False)

    # -- corpus ---------------------------------------------------------------------------------
    @property
    def corpus_path(self) -> Path:
        names = ["corpus.jsonl"] if self.format == "beir" else ["collection.tsv"]
        path = _first_existing(self.root, names)
        if path is None:
            raise HeronError(f"{self.root}: no {names[0]} (or {names[0]}.gz) in dataset folder")
        return path

    def iter_corpus(self) -> Iterator[Document]:
        """Stream the corpus in file order; memory stays constant whatever the corpus size, but for the set
        of ids seen, which refuses a duplicate id (naming both lines). An empty corpus is refused at the end."""
        path, count = self.corpus_path, 0
        if self.format == "beir":
            unique = _UniqueIds(path, "_id", lambda value: next(
                n for n, obj in iter_jsonl(path) if _field(obj, "_id", path, n) == value))
            for lineno, obj in iter_jsonl(path):
                doc = Document(
                    id=_field(obj, "_id", path, lineno),
                    title=_field(obj, "title", path, lineno, required=False),
                    text=_field(obj, "text", path, lineno, required=False),
                )
                unique.add(doc.id, lineno)
                count += 1
                yield doc
        else:
            for _, pid, text in _read_tsv_pairs(path, "passage"):
                count += 1
                yield Document(id=pid, title="", text=text)
        if count == 0:
            raise InputFormatError(path, None, "no documents: the corpus is empty (an empty corpus is refused)")

    def corpus_size(self) -> int:
        """Number of documents (counts lines once per opened dataset; cheap relative to encoding)."""
        if getattr(self, "_corpus_size", None) is None:
            self._corpus_size = count_lines(self.corpus_path)
        return self._corpus_size

    def fingerprint(self) -> str:
        """A short id of the corpus file's identity (path, size, mtime) for naming cached indexes."""
        path = self.corpus_path.resolve()
        stat = path.stat()
        key = f"{path}|{stat.st_size}|{int(stat.st_mtime)}"
        return hashlib.sha256(key.encode()).hexdigest()[:12]

    def _corpus_docs_among(self, wanted: set[str]) -> Iterator[Document]:
        """The documents whose ids are in ``wanted``, found by reading only each line's id (plus the lines
        that match): one light pass over the corpus, which stops once every wanted id is found."""
        path, left = self.corpus_path, set(wanted)
        for lineno, line in text_lines(path):
            if not left:
                return
            if self.format == "beir":
                m = _LEADING_ID.match(line)
                if m is None:  # "_id" is not the first key: parse the line
                    if not line.strip():
                        continue
                    doc_id = None
                else:
                    doc_id = json.loads(m.group(1)) if m.group(1) else m.group(2)
                if doc_id is None or doc_id in left:
                    obj = parse_json_object(line, path, lineno)
                    doc = Document(id=_field(obj, "_id", path, lineno),
                                   title=_field(obj, "title", path, lineno, required=False),
                                   text=_field(obj, "text", path, lineno, required=False))
                    if doc.id in left:
                        left.discard(doc.id)
                        yield doc
            else:
                doc_id, _, text = line.rstrip("\n\r").partition("\t")
                if doc_id.strip() in left:
                    left.discard(doc_id.strip())
                    yield Document(id=doc_id.strip(), title="", text=text)

    def self_hits(self, split: str = "test") -> SelfHits:
        """Whether to drop a retrieved document whose id equals the query id when evaluating ``split``.

        Forced by ``remove_self_hits`` when that is set; else decided from the data: on when at least half of
        the split's queries have an id that is a corpus id whose document holds the query's own text (ArguAna,
        Quora, or a copy of them under any name), as BEIR does for those datasets.
        """
        if self.remove_self_hits is not None:
            flag = "--remove-self-hits" if self.remove_self_hits else "--keep-self-hits"
            return SelfHits(self.remove_self_hits, f"forced by {flag}")
        if split not in self._self_hits:
            queries = self.queries(split)
            found = sum(_same_text(queries[d.id], d) for d in self._corpus_docs_among(set(queries)))
            removed = bool(queries) and found >= 0.5 * len(queries)
            detail = f"{found} of {len(queries)} {split} query ids are corpus ids holding the query's text"
            reason = f"detected: {detail}" if removed else f"not detected: {detail}"
            self._self_hits[split] = SelfHits(removed, reason, found, len(queries))
        return self._self_hits[split]

    # -- queries and judgments --------------------------------------------------------------------
    def all_queries(self) -> dict[str, str]:
        """Every query in the dataset, of all splits."""
        if self._queries is None:
            self._queries = self._load_queries()
        return self._queries

    def _load_queries(self) -> dict[str, str]:
        queries: dict[str, str] = {}
        if self.format == "beir":
            path = _first_existing(self.root, ["queries.jsonl"])
            if path is None:
                raise HeronError(f"{self.root}: no queries.jsonl in dataset folder")
            unique = _UniqueIds(path, "_id", lambda value: next(
                n for n, obj in iter_jsonl(path) if _field(obj, "_id", path, n) == value))
            for lineno, obj in iter_jsonl(path):
                qid = _field(obj, "_id", path, lineno)
                unique.add(qid, lineno)
                queries[qid] = _field(obj, "text", path, lineno)
        else:
            paths = sorted(self.root.glob("queries*.tsv")) + sorted(self.root.glob("queries*.tsv.gz"))
            if not paths:
                raise HeronError(f"{self.root}: no queries*.tsv in dataset folder")
            where: dict[str, tuple[Path, int]] = {}
            for path in paths:  # a query in several files (dev and dev.small) must have one text
                for lineno, qid, text in _read_tsv_pairs(path, "query"):
                    if qid in queries and queries[qid] != text:
                        first_path, first_line = where[qid]
                        raise InputFormatError(path, lineno, f"field 'query-id': query {qid!r} has another text "
                                                             f"in {first_path}:{first_line}")
                    queries[qid] = text
                    where.setdefault(qid, (path, lineno))
        return queries

    def splits(self) -> list[str]:
        """Splits that have relevance judgments."""
        if self.format == "beir":
            found = [p.name for p in (self.root / "qrels").glob("*.tsv*")]
        else:
            found = [p.name[len("qrels."):] for p in self.root.glob("qrels.*.tsv*")]
        return sorted({n.removesuffix(".gz").removesuffix(".tsv") for n in found})

    def qrels_path(self, split: str) -> Path:
        if self.format == "beir":
            path = _first_existing(self.root / "qrels", [f"{split}.tsv"])
        else:
            path = _first_existing(self.root, [f"qrels.{split}.tsv"])
        if path is None:
            available = ", ".join(self.splits()) or "none"
            raise HeronError(f"{self.name}: no qrels for split '{split}' (available: {available})")
        return path

    def qrels(self, split: str = "test") -> dict[str, dict[str, int]]:
        """Relevance judgments ``{qid: {docid: grade}}`` of one split."""
        path = self.qrels_path(split)
        return read_beir_qrels(path) if self.format == "beir" else read_trec_qrels(path)

    def queries(self, split: str | None = "test") -> dict[str, str]:
        """The queries of ``split`` (those with judgments in it); ``None`` gives all queries."""
        everything = self.all_queries()
        if split is None:
            return dict(everything)
        if self.format == "msmarco":
            split_file = _first_existing(self.root, [f"queries.{split}.tsv"])
            if split_file is not None:
                return {qid: text for _, qid, text in _read_tsv_pairs(split_file, "query")}
        judged = self.qrels(split)
        missing = [qid for qid in judged if qid not in everything]
        if missing:
            raise HeronError(
                f"{self.qrels_path(split)}: query-id {missing[0]!r} has judgments but no text in the queries file"
                f" ({len(missing)} such queries)"
            )
        return {qid: everything[qid] for qid in judged}


def _detect_format(root: Path) -> str | None:
    if _first_existing(root, ["corpus.jsonl"]) is not None:
        return "beir"
    if _first_existing(root, ["collection.tsv"]) is not None:
        return "msmarco"
    return None


def open_dataset(root: Path, name: str | None = None, remove_self_hits: bool | None = None) -> Dataset:
    """Open a dataset folder (BEIR or MS MARCO layout)."""
    root = Path(root)
    if not root.is_dir():
        raise HeronError(f"{root}: dataset folder does not exist")
    fmt = _detect_format(root)
    if fmt is None:
        raise HeronError(
            f"{root}: not a dataset folder (expected corpus.jsonl for BEIR or collection.tsv for MS MARCO)"
        )
    name = name or root.name
    return Dataset(root=root, name=name, format=fmt, remove_self_hits=remove_self_hits)


def load_dataset(name_or_path: str | os.PathLike, remove_self_hits: bool | None = None) -> Dataset:
    """Open a dataset by path or BEIR name (``$HERON_DATA`` → cache → BEIR download when online)."""
    text = str(name_or_path).strip()
    if not text:
        raise HeronError("dataset name is empty")
    as_path = Path(text).expanduser()
    if as_path.is_dir():
        return open_dataset(as_path, remove_self_hits=remove_self_hits)
    if os.sep in text or text.startswith("."):
        raise HeronError(f"{text}: dataset folder does not exist")

    name = text.lower()
    looked: list[str] = []
    for base in settings.data_dirs():
        candidate = base / name
        looked.append(str(candidate))
        if candidate.is_dir() and _detect_format(candidate):
            return open_dataset(candidate, name=name, remove_self_hits=remove_self_hits)
    cached = settings.cache_dir() / "datasets" / name
    looked.append(str(cached))
    if cached.is_dir() and _detect_format(cached):
        return open_dataset(cached, name=name, remove_self_hits=remove_self_hits)

    where = ", ".join(looked)
    if name not in BEIR_DATASETS:
        raise HeronError(
            f"unknown dataset '{text}': not a folder, not found in {where}, and not a BEIR dataset name"
        )
    if settings.offline():
        raise HeronError(
            f"dataset '{name}' not found (looked in {where}; HERON_OFFLINE is set so no download): "
            f"put the BEIR folder there or set HERON_DATA=/path/to/beir"
        )
    try:
        _download_beir(name, cached)
    except (OSError, urllib.error.URLError, zipfile.BadZipFile) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise HeronError(
            f"dataset '{name}' not found (looked in {where}) and the download from "
            f"{BEIR_URL.format(name=name)} failed ({reason}): put the BEIR folder there or set "
            f"HERON_DATA=/path/to/beir"
        ) from None
    return open_dataset(cached, name=name, remove_self_hits=remove_self_hits)


def _download_beir(name: str, dest: Path, timeout: float = 15.0) -> None:
    """Download and unpack the official BEIR archive into ``dest`` atomically."""
    from rich.progress import Progress

    url = BEIR_URL.format(name=name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{name}-") as tmp:
        archive = Path(tmp) / f"{name}.zip"
        with urllib.request.urlopen(url, timeout=timeout) as response, open(archive, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with Progress(transient=True) as progress:
                task = progress.add_task(f"downloading {name}", total=total)
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    progress.advance(task, len(chunk))
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(Path(tmp) / "unpacked")
        unpacked = Path(tmp) / "unpacked"
        inner = unpacked / name if (unpacked / name).is_dir() else unpacked
        if _detect_format(inner) is None:
            raise zipfile.BadZipFile(f"archive has no corpus.jsonl at {inner}")
        publish(inner, dest)
