"""Training configs: one loader for every ``heron train`` command (a YAML file, then flags on top).

Each trainer validates its settings with its pydantic model (``SpladeTrainConfig``, ``CSRTrainConfig``,
``ColBERTTrainConfig``, ``PRFTrainConfig``); :func:`load_config` reads the ``--config`` file (if any),
lets every flag that was given replace the file's field, and turns a validation error into one line
naming the file and the field. ``configs/train/`` holds examples (``csr.yaml`` and ``colbert.yaml``
hold the trainers' defaults).

Example::

    >>> from heron.training.csr import CSRTrainConfig                                     # doctest: +SKIP
    >>> load_config("configs/train/csr.yaml", CSRTrainConfig, datasets=["scifact"], k=64)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from heron.errors import config_error
from heron.storage import read_yaml_mapping


def load_config(path: str | Path | None, cls, **overrides):
    """A ``cls`` config from YAML (``path`` may be ``None``) with the non-``None`` ``overrides`` on top
    (an empty list counts as not given)."""
    from pydantic import ValidationError

    raw: dict = dict(read_yaml_mapping(path)) if path is not None else {}
    raw.update({k: v for k, v in overrides.items() if v is not None and v != []})
    try:
        return cls(**raw)
    except ValidationError as exc:
        raise config_error(exc, path or "train config") from None


__all__ = ["load_config"]
