"""Hugging Face plumbing shared by heron's neural encoders (SPLADE, dense, multi-vector, CSR) and trainers.

What every encoder built on a ``transformers`` checkpoint needs, in one place:

- **model folders**: :func:`resolve_model_folder` (a heron alias, hub id or local folder → a folder or a
  hub id), :func:`read_modules` (a sentence-transformers ``modules.json`` pipeline as ``(class, path)``
  pairs), :func:`read_json` (any JSON file of a model folder; one-line errors);
- **loading**: :func:`load_tokenizer`, :func:`load_checkpoint` (tokenizer + masked-LM or plain encoder,
  ``trust_remote_code`` never enabled), :func:`model_max_length`;
- **batching**: :func:`length_sorted_batches` (texts tokenised once, padded batches of similar lengths),
  :func:`pad_batch` (one padded batch and its mask);
- **runtime**: :func:`resolve_device` and :func:`resolve_fp16` (``"auto"`` = CUDA when present, fp16 on CUDA);
- **saving**: :func:`save_pretrained` (a model and its tokenizer as safetensors, never pickle files),
  :func:`copy_checkpoint` (a plain Hugging Face folder copied or re-saved, published atomically through
  :mod:`heron.storage`), and ``heron_encoder.json`` — :func:`write_encoder_config` /
  :func:`read_encoder_config` — the settings file every saved heron encoder folder starts from.

Example::

    >>> resolve_device("cpu")
    device(type='cpu')
    >>> class_name("sentence_transformers.models.Transformer")
    'Transformer'
"""

from __future__ import annotations

import os
import pickle
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from heron.errors import HeronError
from heron.storage import read_json, read_versioned_json, staged, write_json_atomic

if TYPE_CHECKING:  # torch is imported where it is used: reading an encoder's config needs none
    import torch

ENCODER_CONFIG = "heron_encoder.json"
ENCODER_FORMAT = "heron-encoder"
ENCODER_VERSION = 1
# files copied when a checkpoint is copied (pickle formats never are)
MODEL_FILE_SUFFIXES = (".json", ".txt", ".safetensors", ".model")
# files that make a folder a sentence-transformers / heron-registry folder rather than a plain checkpoint
PIPELINE_FILES = ("modules.json", "heron-model.json")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
_UNSET_LENGTH = 100_000  # transformers' "no limit" model_max_length is a huge number


# -- model folders -----------------------------------------------------------------------------------------
def resolve_model_folder(name_or_path: str | os.PathLike) -> Path | str:
    """A local folder for a model name: the path itself when it is a folder, else heron's registry
    (:func:`heron.models.resolve_model`); a string (a hub id) only where heron.models is unavailable."""
    local = Path(str(name_or_path)).expanduser()
    if local.is_dir():
        return local
    try:
        from heron.models import resolve_model
    except ImportError:  # pragma: no cover - heron.models ships with heron
        return str(name_or_path)
    return Path(resolve_model(str(name_or_path)))


def class_name(type_name: str) -> str:
    """The class name of a sentence-transformers module type (``"pkg.models.Dense"`` → ``"Dense"``)."""
    return str(type_name).rsplit(".", 1)[-1]


def read_modules(folder: Path) -> list[tuple[str, Path]] | None:
    """A sentence-transformers folder's pipeline, ``(class name, module folder)`` in ``idx`` order;
    ``None`` when ``folder`` has no ``modules.json`` (a plain Hugging Face checkpoint)."""
    modules_file = Path(folder) / "modules.json"
    if not modules_file.is_file():
        return None
    entries = sorted(read_json(modules_file), key=lambda e: e.get("idx", 0))
    return [(class_name(e.get("type", "")), Path(folder) / e.get("path", "")) for e in entries]


# -- loading -----------------------------------------------------------------------------------------------
def refuse_pickle_weights(folder: str | os.PathLike, name: str | None = None) -> None:
    """A one-line HeronError when a local model folder holds its weights only as pickle files
    (``pytorch_model.bin``, ``*.pt``, …): heron loads safetensors only, since unpickling can run code (torch
    refuses most such files anyway, with a long traceback)."""
    folder = Path(str(folder))
    if not folder.is_dir():
        return
    files = [p.name for p in folder.iterdir() if p.is_file()]
    pickles = sorted(n for n in files if n.endswith(PICKLE_SUFFIXES))
    if pickles and not any(n.endswith(".safetensors") for n in files):
        raise HeronError(f"{name or folder}: the weights in {folder} are pickle files ({', '.join(pickles)}), "
                         f"which heron refuses to load (unpickling can run code): it loads safetensors only; "
                         f"convert them to model.safetensors")


def load_tokenizer(path: str | os.PathLike):
    """``AutoTokenizer.from_pretrained(path)`` without remote code."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)


def load_checkpoint(path: str | os.PathLike, *, masked_lm: bool, name: str | None = None, what: str | None = None):
    """``(tokenizer, model)`` of a Hugging Face checkpoint: ``AutoModelForMaskedLM`` with ``masked_lm``,
    else ``AutoModel``. Failures are one-line HeronErrors naming ``name`` (default: the path) and
    ``what`` was expected (default: "a masked-LM checkpoint" / "an encoder checkpoint")."""
    from transformers import AutoModel, AutoModelForMaskedLM

    what = what or ("a masked-LM checkpoint" if masked_lm else "an encoder checkpoint")
    auto = AutoModelForMaskedLM if masked_lm else AutoModel
    refuse_pickle_weights(path, name)
    try:
        tokenizer = load_tokenizer(path)
        model = auto.from_pretrained(str(path), trust_remote_code=False)
    except (OSError, ValueError, pickle.UnpicklingError) as exc:
        raise HeronError(f"{name or path}: cannot load {what} from {path} ({exc})") from None
    return tokenizer, model


def model_max_length(configured: int | None, tokenizer, config) -> int:
    """The longest input in tokens: ``configured`` (e.g. sentence-transformers ``max_seq_length``), else
    the tokenizer's ``model_max_length`` (512 when unset), capped by the position embeddings."""
    length = configured
    if not length:
        length = getattr(tokenizer, "model_max_length", None)
        if not length or length > _UNSET_LENGTH:
            length = 512
    positions = getattr(config, "max_position_embeddings", None)
    if positions and positions > 0:
        length = min(int(length), int(positions))
    return int(length)


# -- batching ----------------------------------------------------------------------------------------------
def length_sorted_batches(tokenizer, texts: Sequence[str], max_length: int, batch_size: int,
                          pad_id: int) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """``texts`` tokenised once (special tokens added, truncated to ``max_length``), then cut into padded
    batches of similar lengths, longest first (a batch too big for memory fails at once).

    Yields ``(positions, input_ids, attention_mask)``: ``positions`` index ``texts``; the tensors are
    ``int64``, ``len(positions) × width`` with ``width`` the longest text in the batch (at least 1).
    """
    import torch

    ids = tokenizer(list(texts), truncation=True, max_length=max_length, add_special_tokens=True,
                    return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    order = np.argsort(-lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        sel = order[start:start + batch_size]
        input_ids, mask = pad_batch([ids[j] for j in sel], pad_id)
        yield sel, torch.from_numpy(input_ids), torch.from_numpy(mask)


def pad_batch(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Token id lists as one right-padded ``int64`` batch and its attention mask (width: the longest, ≥ 1)."""
    width = max(max((len(x) for x in ids), default=0), 1)
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for r, row in enumerate(ids):
        input_ids[r, :len(row)] = row
        mask[r, :len(row)] = 1
    return input_ids, mask


# -- runtime -----------------------------------------------------------------------------------------------
def resolve_device(device: str | None = "auto") -> torch.device:
    """``"auto"`` / ``None``: CUDA when available, else CPU; an explicit CUDA device must exist."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise HeronError(f"device {device!r} requested but CUDA is not available")
    return dev


def resolve_fp16(device: torch.device, fp16: bool | None) -> bool:
    """Whether a model runs in half precision: ``None`` means fp16 on CUDA and fp32 elsewhere."""
    return device.type == "cuda" if fp16 is None else bool(fp16)


# -- saving ------------------------------------------------------------------------------------------------
def save_pretrained(model, tokenizer, directory: str | os.PathLike) -> Path:
    """Write ``model`` (safetensors) and ``tokenizer`` into ``directory`` and remove any pickle file."""
    directory = Path(directory)
    model.save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))
    for stray in directory.glob("*"):  # never ship pickle files
        if stray.suffix in PICKLE_SUFFIXES:
            stray.unlink()
    return directory


def copy_checkpoint(source: str | os.PathLike, target: str | os.PathLike, *, masked_lm: bool, tokenizer) -> Path:
    """A plain Hugging Face folder at ``target`` from the checkpoint at ``source`` (a folder or hub id).

    Safetensors, configs and tokenizer files are copied (never pickle files, nor ``modules.json`` /
    ``heron-model.json``); a checkpoint without safetensors weights is loaded (fp32) and re-saved as
    safetensors with ``tokenizer``. The folder is published atomically (:func:`heron.storage.staged`): a
    previous ``target`` stays whole until the new one replaces it.
    """
    source = Path(str(source))
    with staged(target) as tmp:
        copied = []
        if source.is_dir():
            for path in sorted(source.iterdir()):
                if path.is_file() and path.suffix in MODEL_FILE_SUFFIXES and not path.name.startswith(".") \
                        and path.name not in PIPELINE_FILES:
                    shutil.copy2(path, tmp / path.name)
                    copied.append(path.name)
        if not any(name.endswith(".safetensors") for name in copied):
            from transformers import AutoModel, AutoModelForMaskedLM

            auto = AutoModelForMaskedLM if masked_lm else AutoModel
            fresh = auto.from_pretrained(str(source), trust_remote_code=False)  # an fp32 copy
            fresh.save_pretrained(str(tmp), safe_serialization=True)
            tokenizer.save_pretrained(str(tmp))
            for name in PIPELINE_FILES:
                (tmp / name).unlink(missing_ok=True)
    return Path(target)


# -- heron_encoder.json ------------------------------------------------------------------------------------
def write_encoder_config(directory: str | os.PathLike, info: dict, layout: dict) -> Path:
    """``heron_encoder.json``: what every saved heron encoder folder (SPLADE, dense, CSR) starts from —
    the encoder's ``describe()`` (``info``, with its ``type``) and where its parts are (``layout``)."""
    path = Path(directory) / ENCODER_CONFIG
    write_json_atomic(path, {"format": ENCODER_FORMAT, "version": ENCODER_VERSION, "encoder": info,
                             "layout": layout})
    return path


def read_encoder_config(directory: str | os.PathLike, kind: str, what: str) -> dict:
    """The ``heron_encoder.json`` of a saved ``kind`` encoder (format, version and type checked;
    ``what`` names the encoder in the errors, e.g. "SPLADE")."""
    path = Path(directory) / ENCODER_CONFIG
    name = f"saved heron {what} encoder"
    config = read_versioned_json(path, ENCODER_FORMAT, ENCODER_VERSION, name)
    found = config.get("encoder", {}).get("type") if isinstance(config.get("encoder"), dict) else None
    if found != kind:
        raise HeronError(f"{path}: not a {name} (type {found!r})")
    return config
