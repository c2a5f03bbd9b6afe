"""Versioned JSON files that heron writes beside its arrays (model configs, checkpoint configs).

    >>> import json, tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "m.json"
    >>> _ = path.write_text(json.dumps({"format": "heron-x", "version": 2, "dim": 4}))
    >>> read_versioned_json(path, "heron-x", 2, "heron X model")["dim"]
    4
"""

from __future__ import annotations

import json
from pathlib import Path

from heron.errors import HeronError


def read_versioned_json(path: str | Path, fmt: str, version: int, what: str, hint: str = "") -> dict:
    """The mapping in ``path``, checked to be ``{"format": fmt, "version": version, ...}``.

    ``what`` names the thing in one-line errors ("heron PRF model"); ``hint`` (e.g. "retrain with
    heron train prf") is added to the missing-file and wrong-version errors.
    """
    path = Path(path)
    tail = f"; {hint}" if hint else ""
    if not path.is_file():
        raise HeronError(f"{path}: missing (not a {what} folder{tail})")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HeronError(f"{path}: unreadable JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != fmt:
        found = config.get("format") if isinstance(config, dict) else None
        raise HeronError(f"{path}: not a {what} (format {found!r})")
    if config.get("version") != version:
        raise HeronError(f"{path}: {what} format version {config.get('version')!r} is not supported (this heron "
                         f"reads version {version}{tail})")
    return config
