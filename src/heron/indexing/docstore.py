"""A tiny document store beside an index: title and text per document, for showing results.

Layout: ``docs.jsonl`` (one ``{"id", "title", "text"}`` object per line, in index order) and
``offsets.npy`` (int64 byte offset of each line, plus the file length). Opened lazily; reading one
document is one seek. Both files are listed and checked with the index that holds the store; a damaged
row or a file that changed size since it was opened is an :class:`~heron.errors.IntegrityError`.

Example::

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> write_docstore(folder, [("d1", "A title", "Some text")])
    1
    >>> DocStore(folder).get(0)["title"]
    'A title'
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from heron.errors import IntegrityError
from heron.storage import SizeGuard

DOCS_FILE = "docs.jsonl"
OFFSETS_FILE = "offsets.npy"


def write_docstore(folder: str | os.PathLike, docs: Iterable[tuple[str, str, str]], max_text: int = 2000) -> int:
    """Write ``(doc_id, title, text)`` rows (text cut to ``max_text`` characters); returns the count."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    offsets = [0]
    with open(folder / DOCS_FILE, "wb") as handle:
        for doc_id, title, text in docs:
            line = json.dumps({"id": doc_id, "title": title or "", "text": (text or "")[:max_text]},
                              ensure_ascii=False).encode("utf-8") + b"\n"
            handle.write(line)
            offsets.append(offsets[-1] + len(line))
    np.save(folder / OFFSETS_FILE, np.asarray(offsets, dtype=np.int64))
    return len(offsets) - 1


class DocStore:
    """Random access to the rows written by :func:`write_docstore`."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self._guard = SizeGuard()  # offsets.npy is memory-mapped: a change of size is an error, not SIGBUS
        try:
            self._guard.watch(self.folder / OFFSETS_FILE)
            self._guard.watch(self.folder / DOCS_FILE)
            self.offsets = np.load(self.folder / OFFSETS_FILE, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise IntegrityError(self.folder / OFFSETS_FILE, f"unreadable docstore ({exc}); rebuild the index") \
                from None
        size = (self.folder / DOCS_FILE).stat().st_size
        if self.offsets.ndim != 1 or not len(self.offsets) or int(self.offsets[-1]) != size:
            raise IntegrityError(self.folder / OFFSETS_FILE, f"offsets do not end at the size of {DOCS_FILE} "
                                                             f"({size} bytes); rebuild the index")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def get(self, position: int) -> dict:
        if not 0 <= position < len(self):
            raise IndexError(position)
        self._guard.check()
        start, end = int(self.offsets[position]), int(self.offsets[position + 1])
        with open(self.folder / DOCS_FILE, "rb") as handle:
            handle.seek(start)
            raw = handle.read(end - start)
        try:
            row = json.loads(raw)
        except ValueError:  # UnicodeDecodeError too
            row = None
        if not isinstance(row, dict) or not raw.endswith(b"\n"):
            raise IntegrityError(self.folder / DOCS_FILE, f"corrupt row {position + 1}; rebuild the index")
        return row
