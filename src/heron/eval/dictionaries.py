"""The dictionary corpus: a reverse-dictionary retrieval task built from two Debian dictionary packages.

``heron data dictionaries [OUT_DIR]`` (or :func:`build_dictionaries`) downloads ``dict-gcide`` (the
Collaborative International Dictionary of English, GPL) and ``dict-wn`` (WordNet 3.0) with
``apt-get download`` (nothing is installed), checks each ``.deb`` against the sha256 pinned in
:data:`PACKAGES`, reads the dictd files out of the packages (``ar`` + ``tar``, in memory) and writes a
BEIR-layout dataset:

* ``corpus.jsonl`` — one document per GCIDE entry (a distinct ``offset, length`` block of ``gcide.dict``;
  several index headwords may point at one block, e.g. ``Banc, Bancus, Bank``). ``_id`` is ``gcide-NNNNNN``
  (the block's rank by offset among all blocks), ``title`` the entry's index headwords (distinct ignoring
  case, in index order, joined by ``; ``), ``text`` the entry with GCIDE's WordNet-sourced parts removed
  (see :func:`clean_gcide_entry`). An entry with nothing left is not a document.
* ``queries.jsonl`` — the reverse-dictionary queries: for a seeded sample of headwords present in both
  dictionaries, the WordNet gloss of the headword's first listed sense (without its examples and
  ``[syn: …]`` lists); ``{"_id": "qNNNN", "text": gloss, "headword": …}``.
* ``qrels/dev.tsv``, ``qrels/test.tsv`` — the sample's two halves; the relevant documents of a query are
  every GCIDE document one of whose index headwords equals the query's headword ignoring case (grade 1).
* ``dictionaries.json`` — the recipe's parameters, the package checksums, the counts and the sha256 of every
  file above (sealed, like heron's other manifests).

GCIDE marks where each piece of text came from with a source tag closing it (``[1913 Webster]``,
``[WordNet 1.5]``, ``[PJC]``, ``[1913 Webster + WordNet 1.5]`` …): the text from the previous tag (or the
entry's start) to a tag naming WordNet is removed, so the WordNet glosses used as queries cannot be matched
verbatim. Sampled headwords are further restricted to those whose gloss does not occur verbatim (ignoring
case and white space) in one of their relevant documents. Everything is deterministic: the same packages and
seed give byte-identical files.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import re
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from heron.errors import HeronError
from heron.storage import scratch, sha256_file, staged, write_manifest
from heron.storage.files import atomic_file

#: the Debian packages the recipe reads: name → (version, sha256 of the .deb, dictd name)
PACKAGES = {
    "dict-gcide": ("0.48.5+nmu2", "7b0af5cfde3cbdef5e9d6e78f92ec335ced7c2790f37a40f49bebc6f7347ac0f", "gcide"),
    "dict-wn": ("1:3.0-37", "ed99e0bf162815dc1cc69de3727eedd7112ddf170badf83dbde26209e0724a8c", "wn"),
}
DEFAULT_SEED = 17
DEFAULT_QUERIES = 2000
#: the shortest gloss (in words) a sampled query may have
MIN_GLOSS_WORDS = 3
FORMAT = "heron-dictionaries"
VERSION = 1

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE = {ch: i for i, ch in enumerate(_B64)}


# -- dictd files ---------------------------------------------------------------------------------------------
def dictd_number(text: str) -> int:
    """A dictd index number: base64 digits (``A-Za-z0-9+/``), most significant first (``"B"`` is 1, ``"BA"``
    is 64). Any other character raises ValueError."""
    if not text:
        raise ValueError("empty number")
    value = 0
    for ch in text:
        digit = _B64_VALUE.get(ch)
        if digit is None:
            raise ValueError(f"{ch!r} is not a dictd base64 digit")
        value = value * 64 + digit
    return value


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One line of a dictd ``.index``: a headword and the byte range of its definition in the ``.dict``."""

    headword: str
    offset: int
    length: int


def read_dictd_index(text: str, data_size: int, where: str = "index") -> list[IndexEntry]:
    """The lines of a dictd index (``headword<TAB>offset<TAB>length``), each range checked to lie within the
    ``data_size`` bytes of the uncompressed ``.dict``; a malformed line raises a one-line HeronError naming
    ``where`` and the line."""
    entries = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line:
            continue
        parts = line.split("\t")
        if len(parts) < 3:
            raise HeronError(f"{where}:{lineno}: expected 'headword<TAB>offset<TAB>length', got {len(parts)} field(s)")
        try:
            offset, length = dictd_number(parts[1]), dictd_number(parts[2])
        except ValueError as exc:
            raise HeronError(f"{where}:{lineno}: bad offset or length ({exc})") from None
        if offset + length > data_size:
            raise HeronError(f"{where}:{lineno}: range {offset}+{length} runs past the end of the dictionary "
                             f"({data_size} bytes)")
        entries.append(IndexEntry(parts[0], offset, length))
    return entries


def is_metadata(headword: str) -> bool:
    """dictd's own entries (``00-database-info``, ``00-gcide-long`` …), not dictionary words."""
    return headword.startswith("00-") or headword.startswith("00database")


def decode_block(raw: bytes) -> tuple[str, bool]:
    """A definition's text: UTF-8, or Windows-1252 for the few GCIDE entries that hold a stray byte of it
    (``market\\x92s``); the flag says the fallback was used."""
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace"), True


@dataclass(frozen=True, slots=True)
class Dictionary:
    """A dictd dictionary read into memory: its index entries and the uncompressed ``.dict`` bytes."""

    name: str
    entries: list[IndexEntry]
    data: bytes

    def block(self, offset: int, length: int) -> bytes:
        return self.data[offset:offset + length]


def read_dictd(name: str, index_bytes: bytes, dict_dz_bytes: bytes) -> Dictionary:
    """Parse a dictd pair from bytes: the ``.index`` (UTF-8) and the ``.dict.dz`` (dictzip: gzip-readable)."""
    try:
        data = gzip.decompress(dict_dz_bytes)
    except (OSError, EOFError) as exc:
        raise HeronError(f"{name}.dict.dz: not a readable dictzip/gzip file ({exc})") from None
    try:
        text = index_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HeronError(f"{name}.index: not UTF-8 (byte {exc.start})") from None
    return Dictionary(name, read_dictd_index(text, len(data), f"{name}.index"), data)


# -- Debian packages -----------------------------------------------------------------------------------------
def ar_members(blob: bytes, where: str = "deb") -> dict[str, bytes]:
    """The members of a Unix ``ar`` archive (the container of a ``.deb``), by name."""
    if not blob.startswith(b"!<arch>\n"):
        raise HeronError(f"{where}: not an ar archive (a .deb starts with '!<arch>')")
    pos, members = 8, {}
    while pos + 60 <= len(blob):
        header = blob[pos:pos + 60]
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            raise HeronError(f"{where}: damaged ar member header at byte {pos}") from None
        start = pos + 60
        if start + size > len(blob):
            raise HeronError(f"{where}: ar member {name!r} runs past the end of the file")
        members[name] = blob[start:start + size]
        pos = start + size + (size & 1)
    return members


def deb_files(deb: Path, wanted: list[str]) -> dict[str, bytes]:
    """The files named ``wanted`` (base names) from a ``.deb``'s ``data.tar.*``, read in memory."""
    members = ar_members(deb.read_bytes(), str(deb))
    data_name = next((n for n in members if n.startswith("data.tar")), None)
    if data_name is None:
        raise HeronError(f"{deb}: no data.tar member")
    found: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(members[data_name]), mode="r:*") as tar:
        for member in tar:
            base = member.name.rsplit("/", 1)[-1]
            if base in wanted and member.isfile():
                found[base] = tar.extractfile(member).read()
    missing = [n for n in wanted if n not in found]
    if missing:
        raise HeronError(f"{deb}: package holds no {', '.join(missing)}")
    return found


def deb_filename(package: str) -> str:
    """The file name ``apt-get download`` gives the pinned version of ``package``."""
    version = PACKAGES[package][0].replace(":", "%3a")
    return f"{package}_{version}_all.deb"


def fetch_debs(folder: Path, log: Callable[[str], None] = print) -> None:
    """``apt-get download`` the pinned versions of :data:`PACKAGES` into ``folder`` (those not there yet)."""
    missing = [p for p in PACKAGES if not (folder / deb_filename(p)).is_file()]
    if not missing:
        return
    specs = [f"{p}={PACKAGES[p][0]}" for p in missing]
    log(f"apt-get download {' '.join(specs)}")
    try:
        done = subprocess.run(["apt-get", "download", *specs], cwd=folder, capture_output=True, text=True)
    except FileNotFoundError:
        raise HeronError("apt-get not found: download the packages elsewhere and pass their folder with "
                         "--debs") from None
    if done.returncode != 0:
        tail = " ".join(done.stderr.strip().splitlines()[-2:])
        raise HeronError(f"apt-get download {' '.join(specs)} failed ({tail}); pass a folder holding "
                         f"{', '.join(deb_filename(p) for p in missing)} with --debs")


def verified_deb(folder: Path, package: str) -> Path:
    """The pinned ``.deb`` of ``package`` in ``folder``, its sha256 checked against :data:`PACKAGES`."""
    path = folder / deb_filename(package)
    if not path.is_file():
        raise HeronError(f"{path}: not found (the recipe reads {package} {PACKAGES[package][0]})")
    digest = sha256_file(path)
    if digest != PACKAGES[package][1]:
        raise HeronError(f"{path}: sha256 {digest} is not the pinned {PACKAGES[package][1]}; the recipe reads "
                         f"exactly {package} {PACKAGES[package][0]}")
    return path


def read_package(deb: Path, name: str) -> Dictionary:
    files = deb_files(deb, [f"{name}.index", f"{name}.dict.dz"])
    return read_dictd(name, files[f"{name}.index"], files[f"{name}.dict.dz"])


# -- GCIDE entries ---------------------------------------------------------------------------------------------
#: one source name inside a GCIDE source tag
_SOURCE = (r"(?:1913\s+Webster|Webster\s+1913(?:\s+Suppl\.?)?|WordNet(?:\s+\d\.\d)?|PJC\.?|AS|RDH|RP|GG|RHUD|"
           r"MW\d*|MI\d*|Century\s+Dict\.?,?(?:\s+1906\.?)?)")
#: a source tag: one or more source names, joined by ``+`` or spaces (``[1913 Webster + WordNet 1.5]``)
SOURCE_TAG = re.compile(rf"\[\s*\+?\s*{_SOURCE}(?:\s*\+?\s*{_SOURCE})*\s*\]")
#: the syllabified headword ``\Ab*an"don\``
_SYLLABIFIED = re.compile(r"[ \t]*\\[^\\\n]{1,100}\\")
#: a pronunciation ``(b[a^][ng]k)``: a parenthesis right after the syllabified headword holding a letter code
_PRONUNCIATION = re.compile(r"[ \t]*\([^()\n]*\[[^\]\n]{1,4}\][^()\n]*\)")
#: GCIDE's ASCII letter codes: ``[a^]``, ``['e]``, ``[=o]``, ``["u]``, ``[.a]`` … → the bare letter
_LETTER_CODE = re.compile(r"\[(?:[\"'`=~^.,*-]([A-Za-z]{1,2})|([A-Za-z]{1,2})\^)\]")
_NAMED_CODES = {"ae": "ae", "AE": "AE", "oe": "oe", "OE": "OE", "imac": "i", "aum": "a", "asl": "a", "add": "a",
                "udd": "u", "eth": "th", "th": "th", "ng": "ng"}
_NAMED_CODE = re.compile(r"\[(" + "|".join(_NAMED_CODES) + r")\]")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class CleanEntry:
    """A GCIDE entry's text after :func:`clean_gcide_entry`, and how many WordNet-sourced parts it lost."""

    text: str
    kept_parts: int
    dropped_parts: int


def source_parts(text: str) -> Iterator[tuple[str, str | None]]:
    """``(text, tag)`` for each part of a GCIDE entry: the text from the previous source tag (or the start)
    up to a tag, and the tag; a last part after the final tag has ``tag=None`` (unless it is only the rest of
    the tag's line, which dictd's conversion fills with the next entry's headword)."""
    pos = 0
    for match in SOURCE_TAG.finditer(text):
        yield text[pos:match.start()], match.group(0)
        pos = match.end()
    rest = text[pos:]
    # dictd's conversion leaves the next entry's headword after an entry's last tag, on the tag's line
    # (``[1913 Webster] Didactic``): a remainder on that line alone is not part of the entry
    if rest.strip() and (pos == 0 or "\n" in rest.strip()):
        yield rest, None


def _strip_markup(text: str) -> str:
    """GCIDE's typographic markup made plain: syllabified headwords and pronunciations removed, letter codes
    turned into letters, ``{…}`` braces dropped, white space collapsed."""
    out, pos = [], 0
    for match in _SYLLABIFIED.finditer(text):
        out.append(text[pos:match.start()])
        pos = match.end()
        spoken = _PRONUNCIATION.match(text, pos)
        if spoken is not None:
            pos = spoken.end()
    out.append(text[pos:])
    text = "".join(out)
    text = _LETTER_CODE.sub(lambda m: m.group(1) or m.group(2), text)
    text = _NAMED_CODE.sub(lambda m: _NAMED_CODES[m.group(1)], text)
    text = text.replace("{", "").replace("}", "")
    return _SPACE.sub(" ", text).strip()


def clean_gcide_entry(text: str) -> CleanEntry:
    """A GCIDE entry as a document's text: the parts whose source tag names WordNet removed, every source tag
    removed, the markup made plain (:func:`_strip_markup`)."""
    kept, dropped = [], 0
    for part, tag in source_parts(text):
        if tag is not None and "wordnet" in tag.lower():
            dropped += 1
        else:
            kept.append(part)
    return CleanEntry(_strip_markup(" ".join(kept)), len(kept), dropped)


# -- WordNet glosses -------------------------------------------------------------------------------------------
#: the start of a sense in a dict-wn entry: ``    n 1: `` or ``    2: `` at the start of a line
_WN_SENSE = re.compile(r"(?m)^\s+(?:(?:n|v|adj|adv)\s+)?\d+:\s")
_WN_LISTS = re.compile(r"\[(?:syn|ant|also):.*?\]", re.S)


def wordnet_senses(text: str) -> list[str]:
    """The senses of a dict-wn entry (its first line is the headword), white space collapsed, in order."""
    starts = list(_WN_SENSE.finditer(text))
    senses = []
    for this, following in zip(starts, starts[1:] + [None]):
        body = text[this.end():following.start() if following else len(text)]
        senses.append(_SPACE.sub(" ", body).strip())
    return senses


def gloss_of(sense: str) -> str:
    """A WordNet sense's gloss: the definition before its quoted examples, without ``[syn: …]`` lists."""
    sense = _WN_LISTS.sub("", sense)
    definition = re.split(r';\s*"', sense, maxsplit=1)[0]
    return _SPACE.sub(" ", definition).strip().rstrip(";").strip()


def _normal(text: str) -> str:
    return _SPACE.sub(" ", text.lower()).strip()


# -- the dataset ------------------------------------------------------------------------------------------------
@dataclass
class DictionaryTask:
    """The parsed task before writing: documents, the sampled queries and their judgments, and counts."""

    documents: list[dict]
    queries: list[dict]
    qrels: dict[str, dict[str, list[str]]]  # split → query id → document ids
    counts: dict = field(default_factory=dict)


def _cut_next_headword(text: str, following: list[str]) -> str:
    """``text`` without the next entry's headword that dictd's conversion appended to its last line
    (``imp. of {Do}. Didactic``, the next entry being ``Didactic``)."""
    body = text.rstrip()
    for headword in following:
        if body.endswith(" " + headword) and "\n" not in headword:
            return body[:-len(headword)].rstrip() + "\n"
    return text


def gcide_documents(gcide: Dictionary) -> tuple[list[dict], dict[str, list[str]], dict]:
    """The GCIDE documents, the document ids of each lower-cased headword, and counts."""
    blocks: dict[tuple[int, int], list[str]] = {}
    for entry in gcide.entries:
        if not is_metadata(entry.headword):
            blocks.setdefault((entry.offset, entry.length), []).append(entry.headword)
    documents, by_headword = [], {}
    counts = {"gcide_index_lines": len(gcide.entries), "gcide_entries": len(blocks), "cp1252_entries": 0,
              "parts_kept": 0, "parts_dropped_wordnet": 0, "entries_touched_by_wordnet": 0,
              "entries_all_wordnet": 0}
    order = sorted(blocks)
    counts["trailing_headwords_cut"] = 0
    for rank, (offset, length) in enumerate(order):
        text, fallback = decode_block(gcide.block(offset, length))
        counts["cp1252_entries"] += fallback
        if rank + 1 < len(order):
            cut = _cut_next_headword(text, blocks[order[rank + 1]])
            counts["trailing_headwords_cut"] += cut != text
            text = cut
        clean = clean_gcide_entry(text)
        counts["parts_kept"] += clean.kept_parts
        counts["parts_dropped_wordnet"] += clean.dropped_parts
        counts["entries_touched_by_wordnet"] += clean.dropped_parts > 0
        if not clean.text:
            counts["entries_all_wordnet"] += 1
            continue
        titles, seen = [], set()
        for headword in blocks[(offset, length)]:
            if headword.lower() not in seen:
                seen.add(headword.lower())
                titles.append(headword)
        doc_id = f"gcide-{rank:06d}"
        documents.append({"_id": doc_id, "title": "; ".join(titles), "text": clean.text})
        for key in seen:
            by_headword.setdefault(key, []).append(doc_id)
    counts["documents"] = len(documents)
    return documents, by_headword, counts


def wordnet_glosses(wn: Dictionary) -> tuple[dict[str, tuple[str, str]], dict]:
    """The first-sense gloss of each lower-cased WordNet headword: ``{key: (headword, gloss)}``, and counts."""
    glosses: dict[str, tuple[str, str]] = {}
    counts = {"wn_index_lines": len(wn.entries), "wn_without_sense": 0}
    for entry in wn.entries:
        if is_metadata(entry.headword) or entry.headword.lower() in glosses:
            continue
        text, _ = decode_block(wn.block(entry.offset, entry.length))
        senses = wordnet_senses(text)
        if not senses:
            counts["wn_without_sense"] += 1
            continue
        glosses[entry.headword.lower()] = (entry.headword, gloss_of(senses[0]))
    counts["wn_headwords"] = len(glosses)
    return glosses, counts


def build_task(gcide: Dictionary, wn: Dictionary, seed: int = DEFAULT_SEED,
               n_queries: int = DEFAULT_QUERIES) -> DictionaryTask:
    """The reverse-dictionary task from the two parsed dictionaries (deterministic for a seed)."""
    documents, by_headword, counts = gcide_documents(gcide)
    glosses, wn_counts = wordnet_glosses(wn)
    counts.update(wn_counts)
    text_of = {d["_id"]: _normal(f"{d['title']} {d['text']}") for d in documents}
    shared = sorted(set(by_headword) & set(glosses))
    candidates, short, leaked = [], 0, 0
    for key in shared:
        gloss = glosses[key][1]
        if len(re.findall(r"\w+", gloss)) < MIN_GLOSS_WORDS:
            short += 1
        elif any(_normal(gloss) in text_of[d] for d in by_headword[key]):
            leaked += 1
        else:
            candidates.append(key)
    counts.update({"shared_headwords": len(shared), "shared_gloss_too_short": short,
                   "shared_gloss_verbatim_in_relevant": leaked, "candidate_headwords": len(candidates)})
    if len(candidates) < n_queries:
        raise HeronError(f"only {len(candidates)} headwords qualify as queries; asked for {n_queries}")
    sample = random.Random(seed).sample(candidates, n_queries)
    half = n_queries // 2
    queries, qrels = [], {"dev": {}, "test": {}}
    for i, key in enumerate(sample):
        qid = f"q{i:04d}"
        headword, gloss = glosses[key]
        queries.append({"_id": qid, "text": gloss, "headword": headword})
        qrels["dev" if i < half else "test"][qid] = list(by_headword[key])
    counts.update({"queries": len(queries), "dev_queries": len(qrels["dev"]), "test_queries": len(qrels["test"]),
                   "dev_judgments": sum(map(len, qrels["dev"].values())),
                   "test_judgments": sum(map(len, qrels["test"].values()))})
    return DictionaryTask(documents, queries, qrels, counts)


def _write_lines(path: Path, lines: Iterator[str]) -> str:
    """Write text lines atomically; return the file's sha256."""
    digest = hashlib.sha256()
    with atomic_file(path, binary=True) as handle:
        for line in lines:
            raw = line.encode("utf-8")
            digest.update(raw)
            handle.write(raw)
    return digest.hexdigest()


def _json_line(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True) + "\n"


def write_task(task: DictionaryTask, out_dir: Path, recipe: dict) -> dict:
    """Publish the task as a BEIR folder at ``out_dir`` (staged, then swapped in atomically); returns the
    manifest written as ``dictionaries.json``."""
    files: dict[str, str] = {}
    with staged(out_dir) as tmp:
        files["corpus.jsonl"] = _write_lines(tmp / "corpus.jsonl", map(_json_line, task.documents))
        files["queries.jsonl"] = _write_lines(tmp / "queries.jsonl", map(_json_line, task.queries))
        (tmp / "qrels").mkdir()
        for split in ("dev", "test"):
            rows = ["query-id\tcorpus-id\tscore\n"] + [f"{qid}\t{doc}\t1\n" for qid, docs in
                                                       task.qrels[split].items() for doc in docs]
            files[f"qrels/{split}.tsv"] = _write_lines(tmp / "qrels" / f"{split}.tsv", iter(rows))
        manifest = {"format": FORMAT, "version": VERSION, "recipe": recipe, "counts": task.counts,
                    "sha256": files}
        write_manifest(tmp / "dictionaries.json", manifest)
    return manifest


def build_dictionaries(out_dir: str | Path, seed: int = DEFAULT_SEED, n_queries: int = DEFAULT_QUERIES,
                       debs: str | Path | None = None, log: Callable[[str], None] = print) -> dict:
    """Download (unless ``debs`` holds them), verify and parse the two packages; write the dataset at
    ``out_dir``; return its manifest (counts and sha256 of every file)."""
    out_dir = Path(out_dir).expanduser().absolute()
    if n_queries < 2:
        raise HeronError(f"--queries must be at least 2 (a dev and a test half), got {n_queries}")

    def run(folder: Path) -> dict:
        paths = {p: verified_deb(folder, p) for p in PACKAGES}
        log("parsing " + ", ".join(str(p) for p in paths.values()))
        gcide = read_package(paths["dict-gcide"], PACKAGES["dict-gcide"][2])
        wn = read_package(paths["dict-wn"], PACKAGES["dict-wn"][2])
        task = build_task(gcide, wn, seed=seed, n_queries=n_queries)
        recipe = {"seed": seed, "queries": n_queries, "min_gloss_words": MIN_GLOSS_WORDS,
                  "packages": {p: {"version": v, "sha256": s} for p, (v, s, _) in PACKAGES.items()}}
        return write_task(task, out_dir, recipe)

    if debs is not None:
        return run(Path(debs).expanduser())
    with scratch(out_dir, "debs") as folder:
        folder.mkdir(parents=True, exist_ok=True)
        fetch_debs(folder, log)
        return run(folder)
