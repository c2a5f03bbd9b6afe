"""Where heron keeps things: one place for cache and data directories and environment variables.

- ``HERON_CACHE``: the cache root (default ``~/.cache/heron``): models, datasets, indexes heron builds for itself.
- ``HERON_DATA``: one or more directories (``os.pathsep``-separated) holding BEIR datasets by name.
- ``HERON_OFFLINE=1``: never try a network download.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    root = os.environ.get("HERON_CACHE")
    path = Path(root).expanduser() if root else Path.home() / ".cache" / "heron"
    return path


def data_dirs() -> list[Path]:
    raw = os.environ.get("HERON_DATA", "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]


def offline() -> bool:
    return os.environ.get("HERON_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
