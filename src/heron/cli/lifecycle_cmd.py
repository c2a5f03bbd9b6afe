"""``heron index add | delete | merge | info``: change an index after it is built, and look inside it.

Each change is one commit: ``add`` encodes the new documents with the index's own encoders into a new
segment (every member of a bundle), ``delete`` marks documents deleted, ``merge`` merges segments. A
classic (write-once) index is converted in place to a segmented one by its first change. A running
``heron serve`` picks the new commit up without a restart.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from heron.errors import HeronError

console = Console()
err_console = Console(stderr=True)


def _open(path: Path):
    from heron.api import Index

    if not path.is_dir():
        raise HeronError(f"{path}: index directory does not exist")
    return Index.open(path)


def _say(message: str) -> None:
    err_console.print(f"heron: {message}", highlight=False, soft_wrap=True)


def add_command(
    index: Annotated[Path, typer.Argument(help="Index or bundle directory.")],
    corpus: Annotated[Path, typer.Option("--corpus", help="BEIR-style corpus.jsonl (.gz) of the new documents: "
                                         "{\"_id\", \"title\", \"text\"} per line.")],
    upsert: Annotated[bool, typer.Option("--upsert", help="Replace documents whose id is already in the index "
                                         "(otherwise such an id is an error).")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Add documents: encode only them, with the index's own encoders, into a new segment; one commit.

    Every member of a bundle gets the same documents. Inverted members keep the
    index's quantisation scale; BM25 keeps its statistics (N, avgdl, idf) frozen
    and drops terms outside its vocabulary (docs/lifecycle/interfaces.md).

    Examples:
      heron index add indexes/scifact-bm25 --corpus new-docs.jsonl
      heron index add indexes/scifact-bundle --corpus edited.jsonl --upsert
    """
    from heron.models import quiet_model_loading

    quiet_model_loading()
    opened = _open(index)
    docs = opened.check_add(corpus, upsert=upsert)  # a malformed file or a taken id fails before any work
    started = time.monotonic()
    _say(f"adding {len(docs):,} documents to {index}" + (" (upsert)" if upsert else ""))
    try:
        opened.add(docs, upsert=upsert, progress=not quiet)
        generation = opened.commit()
    finally:
        opened.rollback()
    console.print(f"{index}: added {len(docs):,} documents; generation {generation} "
                  f"({opened.snapshot.num_docs:,} live documents, {time.monotonic() - started:.1f} s)",
                  highlight=False, soft_wrap=True)


def _read_ids(values: list[str], ids_file: Path | None) -> list[str]:
    ids = list(values or [])
    if ids_file is not None:
        if not ids_file.is_file():
            raise HeronError(f"{ids_file}: no such file")
        from heron.eval.datasets import text_lines

        for lineno, line in text_lines(ids_file):
            value = line.strip()
            if value:
                if any(c.isspace() for c in value):
                    raise HeronError(f"{ids_file}:{lineno}: one document id per line ({value[:80]!r} holds white "
                                     f"space)")
                ids.append(value)
    if not ids:
        raise HeronError("give document ids to delete (arguments, or --ids FILE with one id per line)")
    return ids


def delete_command(
    index: Annotated[Path, typer.Argument(help="Index or bundle directory.")],
    ids: Annotated[list[str] | None, typer.Argument(help="Document ids to delete.", show_default=False)] = None,
    ids_file: Annotated[Path | None, typer.Option("--ids", help="File with one document id per line.")] = None,
) -> None:
    """Delete documents by id (every member of a bundle); one commit. Unknown ids are counted, not an error.

    Examples:
      heron index delete indexes/scifact-bm25 4983 5836
      heron index delete indexes/scifact-bundle --ids gone.txt
    """
    wanted = _read_ids(ids or [], ids_file)
    opened = _open(index)
    try:
        deleted = opened.delete(wanted)
        generation = opened.commit()
    finally:
        opened.rollback()
    missing = len(set(wanted)) - deleted
    note = f" ({missing:,} not in the index)" if missing > 0 else ""
    console.print(f"{index}: deleted {deleted:,} documents{note}; generation {generation}", highlight=False,
                  soft_wrap=True)


def merge_command(
    index: Annotated[Path, typer.Argument(help="Index or bundle directory.")],
    max_segments: Annotated[int, typer.Option("--max-segments", min=1, help="Merge down to at most this many "
                                              "segments.")] = 1,
) -> None:
    """Merge segments (dropping deleted documents) down to --max-segments; one commit.

    Searches keep being answered from the previous commit while it runs.

    Example: heron index merge indexes/scifact-bm25 --max-segments 1
    """
    opened = _open(index)
    if opened.snapshot is None:
        raise HeronError(f"{index}: a classic (write-once) index has one segment already; nothing to merge")
    started = time.monotonic()
    before = len(opened.snapshot.segments)
    _say(f"merging {before} segments of {index} down to at most {max_segments}")
    generation = opened.merge(max_segments)
    console.print(f"{index}: {before} → {len(opened.snapshot.segments)} segments; generation {generation} "
                  f"({time.monotonic() - started:.1f} s)", highlight=False, soft_wrap=True)


def info_command(
    index: Annotated[Path, typer.Argument(help="Index or bundle directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the description as JSON.")] = False,
) -> None:
    """Show an index's commit: generation, segments, live and deleted documents, bytes per posting.

    Example: heron index info indexes/scifact-bm25 --json
    """
    info = describe_index(index)
    if as_json:
        print(json.dumps(info, ensure_ascii=False, default=str))
        return
    console.print(f"{index}: generation {info['generation']}, {info['live_docs']:,} live documents, "
                  f"{info['deleted_docs']:,} deleted, members {', '.join(info['members'])}", highlight=False,
                  soft_wrap=True)
    table = Table(title=f"segments of {index.name}")
    for column in ("segment", "docs", "live", "deleted", "bytes", "bytes/posting"):
        table.add_column(column, justify="left" if column == "segment" else "right")
    for seg in info["segments"]:
        bpp = seg.get("bytes_per_posting")
        table.add_row(str(seg.get("name")), f"{seg.get('num_docs', 0):,}", f"{seg.get('live', 0):,}",
                      f"{seg.get('deleted', 0):,}", f"{seg.get('bytes', 0):,}",
                      "" if bpp is None else f"{bpp:.2f}")
    console.print(table)


def describe_index(path: Path) -> dict:
    """What ``heron index info`` shows: a segmented index's commit description, or a classic index as the one
    segment it is (generation 0)."""
    if not path.is_dir():
        raise HeronError(f"{path}: index directory does not exist")
    from heron.indexing.segments import SegmentedIndex, is_segmented

    if is_segmented(path):
        snap = SegmentedIndex.open(path)
        described = snap.describe()
        segments = [dict(seg) for seg in described.get("segments", snap.segments)]
        for seg in segments:
            num_docs, deleted = int(seg.get("num_docs", 0)), int(seg.get("deleted", 0) or 0)
            seg.setdefault("live", num_docs - deleted)
            seg.update(_segment_postings(path / "segments" / str(seg["name"])))
        out = {"path": str(path), "segmented": True, "generation": snap.generation, "layout": snap.layout,
               "members": list(snap.members), "live_docs": snap.num_docs,
               "deleted_docs": sum(int(seg.get("deleted", 0) or 0) for seg in segments), "segments": segments}
        for key, value in described.items():
            if key not in out and key != "segments":
                out[key] = value
        return out
    return _describe_classic(path)


def _segment_postings(folder: Path) -> dict:
    """Postings of a segment's inverted members and their bytes per posting (all their files over all postings,
    deleted documents' included); nothing when the segment has no inverted member."""
    from heron.indexing.bundle import read_bundle
    from heron.indexing.registry import open_index

    bundle = read_bundle(folder)
    dirs = [folder] if bundle is None else [folder / e.get("path", n) for n, e in bundle["indexes"].items()]
    postings = size = 0
    for member in dirs:
        opened = open_index(member)
        if opened.kind == "inverted":
            postings += int(opened.manifest.get("nnz") or 0)
            size += sum(f.stat().st_size for f in member.rglob("*") if f.is_file())
    return {"postings": postings, "bytes_per_posting": round(size / postings, 3)} if postings else {}


def _describe_classic(path: Path) -> dict:
    from heron.indexing.bundle import read_bundle
    from heron.indexing.registry import open_index

    bundle = read_bundle(path)
    dirs = {"index": path} if bundle is None else {n: path / e.get("path", n) for n, e in bundle["indexes"].items()}
    members, num_docs = {}, None
    for name, folder in dirs.items():
        opened = open_index(folder)
        members[name] = opened.kind
        num_docs = opened.num_docs if num_docs is None else num_docs
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    segment = {"name": "(classic)", "num_docs": num_docs, "live": num_docs, "deleted": 0, "bytes": size}
    if bundle is None:
        segment.update(_segment_postings(path))
    else:
        parts = [_segment_postings(folder) for folder in dirs.values()]
        postings = sum(p.get("postings", 0) for p in parts)
        if postings:
            inverted = sum(p["postings"] * p["bytes_per_posting"] for p in parts if p)
            segment.update(postings=postings, bytes_per_posting=round(inverted / postings, 3))
    return {"path": str(path), "segmented": False, "generation": 0, "layout": "index" if bundle is None else "bundle",
            "members": list(members), "live_docs": num_docs, "deleted_docs": 0, "segments": [segment]}


def register(app: typer.Typer) -> None:
    """Add the commands to ``heron index``."""
    app.command("add")(add_command)
    app.command("delete")(delete_command)
    app.command("merge")(merge_command)
    app.command("info")(info_command)
