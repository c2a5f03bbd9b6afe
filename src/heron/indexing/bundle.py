"""A bundle: several indexes of one corpus in one directory, under member names.

``manifest.json`` of format ``heron-index-bundle`` lists the members (``indexes``: name → ``path``,
``search`` options, ``kind``, summary), the default retriever, the fusion method, the resolved build
config and the models' revisions; it is sealed (its ``checksum``, :mod:`heron.storage.integrity`). Each
member is an index directory of any type (:mod:`heron.indexing.base`). Bundles are built by the build
layer (``heron build-index --config``) and opened by :class:`heron.Index`.
"""

from __future__ import annotations

import re
from pathlib import Path

from heron.errors import HeronError, IntegrityError
from heron.storage import read_json, read_versioned_json

BUNDLE_FORMAT = "heron-index-bundle"
BUNDLE_VERSION = 1
MANIFEST_FILE = "manifest.json"
#: a member name: letters, digits, '_', '-', '.'; no '+' (it joins fused members), not ending in .json
MEMBER_NAME = re.compile(r"^(?!.*\.json$)[A-Za-z0-9][A-Za-z0-9_.-]*$")


def is_bundle(root: str | Path) -> bool:
    """True for a directory whose manifest says it is a bundle (any version; it may be replaced)."""
    where = Path(root) / MANIFEST_FILE
    if not where.is_file():
        return False
    try:
        manifest = read_json(where, "bundle manifest")
    except HeronError:
        return False
    return isinstance(manifest, dict) and manifest.get("format") == BUNDLE_FORMAT


def read_bundle(root: str | Path) -> dict | None:
    """The bundle manifest of ``root``, or None when ``root`` is not a bundle (e.g. a single index)."""
    root = Path(root)
    if not is_bundle(root):
        return None
    where = root / MANIFEST_FILE
    manifest = read_versioned_json(where, BUNDLE_FORMAT, BUNDLE_VERSION, "heron index bundle", "rebuild it",
                                   version_key="format_version")
    indexes = manifest.get("indexes")
    if not isinstance(indexes, dict) or not indexes:
        raise HeronError(f"{where}: lists no indexes")
    for name, entry in indexes.items():
        if not MEMBER_NAME.match(str(name)) or not isinstance(entry, dict):
            raise HeronError(f"{where}: malformed member {name!r}")
        if not (root / entry.get("path", name) / MANIFEST_FILE).is_file():
            raise IntegrityError(root / entry.get("path", name) / MANIFEST_FILE,
                                 f"missing: member {name!r} of the bundle has no index manifest; rebuild the bundle")
    return manifest
