"""Where heron keeps things: one place for cache and data directories and environment variables.

- ``HERON_CACHE``: the cache root (default ``~/.cache/heron``): models, datasets, indexes heron builds for itself.
- ``HERON_DATA``: one or more directories (``os.pathsep``-separated) holding BEIR datasets by name.
- ``HERON_OFFLINE=1``: never try a network download.
- ``HERON_QUERY_ENCODER``: ``auto`` (default), ``numpy`` or ``torch`` — how SPLADE queries are encoded
  (:func:`query_encoder_runtime`).
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


QUERY_ENCODER_RUNTIMES = ("auto", "numpy", "torch")


def query_encoder_runtime() -> str:
    """``numpy`` or ``torch``: which runtime encodes SPLADE queries of a BERT masked-LM index.

    ``auto`` (the default) is ``numpy`` unless the machine has an NVIDIA GPU (``/dev/nvidiactl``), where
    torch runs the query model on it; ``numpy`` saves a query process the ~3 s of importing torch and
    transformers. Models the numpy encoder cannot read always use torch.
    """
    value = os.environ.get("HERON_QUERY_ENCODER", "auto").strip().lower() or "auto"
    if value not in QUERY_ENCODER_RUNTIMES:
        from heron.errors import HeronError

        raise HeronError(f"HERON_QUERY_ENCODER={value!r}: choose one of {', '.join(QUERY_ENCODER_RUNTIMES)}")
    if value == "auto":
        return "torch" if Path("/dev/nvidiactl").exists() else "numpy"
    return value
