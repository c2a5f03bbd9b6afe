"""heron's storage layer: the one way every writer publishes files and every reader checks them.

Every index type, bundle, model fetch, encoded-shard cache and trainer writes through this package:

* :func:`staged` / :func:`publish` — build a directory beside its target, fsync every file and the
  directory, then swap it into place atomically (``renameat2(RENAME_EXCHANGE)`` where the kernel has it,
  otherwise two renames that :func:`recover` finishes or undoes). The previous version stays complete and
  readable until the new one is in place; a process killed at any point leaves one of the two whole.
* :func:`write_json_atomic`, :func:`write_text_atomic`, :func:`save_array_atomic` — one file, written to a
  temporary sibling, fsynced and renamed over the target.
* :func:`read_versioned_json` — the one reader of heron's versioned JSON files (manifests, model and
  checkpoint configs), with one error wording.
* :mod:`heron.storage.integrity` — what every manifest records of each file (size, xxh3) and the checks at
  open (:func:`check_tree`), in full (``level="full"``) and of memory-mapped files in use (:class:`SizeGuard`);
  manifests are sealed (:func:`write_manifest`) and published files made read-only.
* :func:`sha256_file` — the checksum older manifests and the pinned model wheels record.
* :func:`build_lock` — one build of a target at a time (:func:`build_once`: a cache entry filled by
  whichever process comes first, the others waiting); :func:`recover` — finish a cut publish and remove
  what dead builds left beside a target (their staging and scratch directories).
* :func:`kill_point` — the named crash points of the kill tests (``HERON_TEST_KILL_AT``).

Example::

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> with staged(root / "out") as tmp:
    ...     write_json_atomic(tmp / "m.json", {"format": "heron-x", "version": 2})
    >>> read_versioned_json(root / "out" / "m.json", "heron-x", 2, "heron X folder")["version"]
    2
"""

from heron.storage.checksums import sha256_file
from heron.storage.directories import build_lock, build_once, discard, publish, recover, scratch, staged, staging_dir
from heron.storage.files import (
           commit_file,
           fsync_path,
           fsync_tree,
           save_array_atomic,
           write_json_atomic,
           write_text_atomic,
)
from heron.storage.integrity import (
           SizeGuard,
           check_file,
           check_seal,
           check_tree,
           describe_file,
           describe_tree,
           make_read_only,
           seal,
           tree_problems,
           write_manifest,
)
from heron.storage.killpoints import KILL_ENV, kill_point
from heron.storage.manifest import read_json, read_versioned_json, read_yaml_mapping

__all__ = ["KILL_ENV", "SizeGuard", "atomic_file", "build_lock", "build_once", "check_file", "check_seal", "check_tree",
           "commit_file", "describe_file", "describe_tree", "discard", "fsync_path", "fsync_tree", "kill_point",
           "make_read_only", "publish", "read_json", "read_versioned_json", "read_yaml_mapping", "recover",
           "save_array_atomic", "scratch", "seal", "sha256_file", "staged", "staging_dir", "tree_problems",
           "write_json_atomic", "write_manifest", "write_text_atomic"]
