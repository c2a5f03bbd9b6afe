"""The one reader of heron's versioned JSON files (index and bundle manifests, model and checkpoint
configs) and of YAML config files. Every failure is one line that names the file: missing, unreadable,
another format, or a format version this heron does not read."""

from __future__ import annotations

import json
import os
from pathlib import Path

from heron.errors import HeronError, IntegrityError
from heron.storage.integrity import check_seal


def read_json(path: str | os.PathLike, what: str = "JSON file", *, stored: bool = False):
    """The JSON value in ``path``; a missing, undecodable or malformed file is a one-line HeronError (an
    :class:`~heron.errors.IntegrityError` when ``stored``: a file heron wrote itself, so damage, not a
    user's mistake)."""
    path = Path(path)
    if not path.is_file():
        raise HeronError(f"{path}: missing ({what})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        if stored:
            raise IntegrityError(path, f"unreadable {what} ({exc})") from None
        raise HeronError(f"{path}: unreadable {what} ({exc})") from None


def read_versioned_json(path: str | os.PathLike, fmt: str, version: int, what: str, hint: str = "", *,
                        version_key: str = "version") -> dict:
    """The mapping in ``path``, checked to be ``{"format": fmt, version_key: version, ...}`` (and its
    ``checksum`` when it is sealed, :func:`heron.storage.integrity.seal`: a damaged one is an
    :class:`~heron.errors.IntegrityError`).

    ``what`` names the thing in the errors ("heron PRF model"); ``hint`` (e.g. "rebuild the index") is
    added to the missing-file and wrong-version errors.
    """
    path = Path(path)
    tail = f"; {hint}" if hint else ""
    if not path.is_file():
        raise HeronError(f"{path}: missing (not a {what}{tail})")
    config = read_json(path, f"{what} JSON", stored=True)
    if not isinstance(config, dict) or config.get("format") != fmt:
        found = config.get("format") if isinstance(config, dict) else None
        raise HeronError(f"{path}: not a {what} (format {found!r})")
    if config.get(version_key) != version:
        raise HeronError(f"{path}: {what} format version {config.get(version_key)!r} is not supported (this heron "
                         f"reads version {version}{tail})")
    check_seal(path, config, hint)
    return config


def read_yaml_mapping(path: str | os.PathLike) -> dict:
    """The top-level mapping of a YAML config file (index, bundle or training config); a missing file,
    invalid YAML (with its line) or a non-mapping is a one-line HeronError."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise HeronError(f"{path}: config file does not exist") from None
    except UnicodeDecodeError as exc:
        raise HeronError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise HeronError(f"{path}{line}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict):
        raise HeronError(f"{path}: expected a mapping at the top level")
    return raw
