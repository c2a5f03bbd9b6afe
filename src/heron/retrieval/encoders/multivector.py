"""ColBERT-style multi-vector encoder: one L2-normalised vector per token, scored by MaxSim.

Model folders are read in the PyLate / sentence-transformers layout (which heron's own trainer also
writes, so its checkpoints load in PyLate and vice versa):

- ``modules.json``: a ``Transformer`` (the backbone, a Hugging Face encoder) then a ``Dense`` module
  (``1_Dense/config.json`` with ``in_features``, ``out_features``, ``bias``; ``1_Dense/model.safetensors``
  with ``linear.weight`` [and ``linear.bias``]): the projection to the token-vector size (128);
- ``config_sentence_transformers.json``: ``query_prefix`` / ``document_prefix`` (the marker tokens, e.g.
  ``[Q] `` / ``[D] ``, inserted right after ``[CLS]``), ``query_length`` (queries are padded with
  ``[MASK]`` to this length — ColBERT's query augmentation — and attend to those tokens),
  ``document_length`` and ``skiplist_words``.

Document vectors of skip-list tokens (punctuation by default, as ColBERT) and of padding are dropped;
query vectors are all kept, [MASK] expansions included. Vectors are L2-normalised. Pickle weights
(``pytorch_model.bin``) are refused; ``trust_remote_code`` is never enabled.

Example::

    >>> enc = MultiVectorEncoder("checkpoints/scifact-colbert")             # doctest: +SKIP
    >>> docs = enc.encode_documents(["The cat sat on the mat."])            # doctest: +SKIP
    >>> docs[0].shape                                                        # doctest: +SKIP
    (7, 128)
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from heron.errors import HeronError
from heron.retrieval.encoders.hf import (
    load_checkpoint,
    read_json,
    read_modules,
    resolve_device,
    resolve_model_folder,
    save_pretrained,
)
from heron.storage import staged, write_json_atomic

DEFAULTS = {"query_prefix": "[unused0] ", "document_prefix": "[unused1] ", "query_length": 32,
            "document_length": 180, "skiplist_words": list(string.punctuation)}
ST_CONFIG = "config_sentence_transformers.json"


class ColBERTModel(nn.Module):
    """Backbone + linear projection; ``forward`` gives normalised token vectors (``B × L × dim``)."""

    def __init__(self, backbone: nn.Module, projection: nn.Linear):
        super().__init__()
        self.backbone = backbone
        self.projection = projection

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return nn.functional.normalize(self.projection(hidden), p=2, dim=-1)


def _load_dense(folder: Path, in_features: int) -> nn.Linear:
    config = read_json(folder / "config.json")
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise HeronError(f"{folder}: no model.safetensors (pickle weights are not loaded)")
    from safetensors.torch import load_file

    state = load_file(str(weights))
    out_features = int(config.get("out_features", state["linear.weight"].shape[0]))
    if int(config.get("in_features", in_features)) != in_features:
        raise HeronError(f"{folder / 'config.json'}: in_features {config.get('in_features')} does not match the "
                         f"backbone's hidden size {in_features}")
    activation = str(config.get("activation_function", "Identity"))
    if not activation.endswith("Identity"):
        raise HeronError(f"{folder / 'config.json'}: activation {activation!r} is not supported (Identity only)")
    layer = nn.Linear(in_features, out_features, bias="linear.bias" in state)
    layer.load_state_dict({k.removeprefix("linear."): v for k, v in state.items()})
    return layer


class MultiVectorEncoder:
    """``encode_queries`` / ``encode_documents`` → one ``float32 n_i × dim`` array per text."""

    def __init__(self, model: str | Path, *, batch_size: int = 32, threads: int | None = None,
                 device: str | None = "auto", query_length: int | None = None, document_length: int | None = None,
                 projection_dim: int = 128, seed: int = 0):
        self.model_name = str(model)
        folder = Path(str(resolve_model_folder(model)))
        if threads:
            torch.set_num_threads(int(threads))
        self.device = resolve_device(device)
        backbone_dir, dense_dir, settings = folder, None, dict(DEFAULTS)
        configured = set()
        pooled = False
        for cls, path in read_modules(folder) or []:
            if cls == "Transformer":
                backbone_dir = path
            elif cls == "Dense":
                dense_dir = path
            elif cls in ("Pooling", "Normalize"):
                pooled = True  # a bi-encoder folder: only its Transformer is used, as a backbone
            else:
                raise HeronError(f"{folder}: module {cls!r} is not supported by the multi-vector encoder "
                                 f"(a ColBERT folder has Transformer and Dense)")
        if pooled and dense_dir is not None:
            raise HeronError(f"{folder}: has both Pooling and Dense modules; not a ColBERT folder")
        if (folder / ST_CONFIG).is_file() and not pooled:
            st = read_json(folder / ST_CONFIG)
            settings.update({k: st[k] for k in DEFAULTS if st.get(k) is not None})
            configured = {k for k in DEFAULTS if st.get(k) is not None}
        self.tokenizer, backbone = load_checkpoint(backbone_dir, masked_lm=False, name=str(model), what="a backbone")
        hidden = int(backbone.config.hidden_size)
        if dense_dir is not None:
            projection = _load_dense(dense_dir, hidden)
            self.initialised = False
        else:  # a plain backbone: a fresh, seeded projection (to be trained by heron train colbert)
            torch.manual_seed(seed)
            projection = nn.Linear(hidden, projection_dim, bias=False)
            self.initialised = True
        self.model = ColBERTModel(backbone, projection).to(self.device).eval()
        self.dim = int(projection.out_features)
        self.query_prefix, self.document_prefix = settings["query_prefix"], settings["document_prefix"]
        self.query_length = int(query_length or settings["query_length"])
        self.document_length = int(document_length or settings["document_length"])
        positions = getattr(backbone.config, "max_position_embeddings", None)
        if positions and max(self.query_length, self.document_length) > positions:
            raise HeronError(f"{model}: lengths {self.query_length}/{self.document_length} exceed the model's "
                             f"{positions} positions")
        self.skiplist_words = list(settings["skiplist_words"])
        self.batch_size = int(batch_size)
        tok = self.tokenizer
        self.mask_id = tok.mask_token_id if tok.mask_token_id is not None else tok.pad_token_id
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        # heron's default markers ([unused0] / [unused1]) are optional; configured ones must exist
        self.query_marker = self._marker(self.query_prefix, "query_prefix" in configured)
        self.document_marker = self._marker(self.document_prefix, "document_prefix" in configured)
        if self.query_marker is None:
            self.query_prefix = ""
        if self.document_marker is None:
            self.document_prefix = ""
        skip = set()
        for word in self.skiplist_words:
            ids = tok.encode(word, add_special_tokens=False)
            if len(ids) == 1:
                skip.add(ids[0])
        self.skip_ids = torch.tensor(sorted(skip), dtype=torch.long)

    def _marker(self, prefix: str, required: bool) -> int | None:
        token = prefix.strip()
        if not token:
            return None
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            if not required:
                return None
            raise HeronError(f"{self.model_name}: the marker token {token!r} is not in the tokenizer's vocabulary")
        return int(token_id)

    # -- tokenisation ---------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str], is_query: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ``(input_ids, attention_mask)`` with the marker after [CLS]; queries padded with [MASK]."""
        length = self.query_length if is_query else self.document_length
        marker = self.query_marker if is_query else self.document_marker
        room = length - (1 if marker is not None else 0)
        ids = self.tokenizer(list(texts), truncation=True, max_length=room, add_special_tokens=True,
                             return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        if marker is not None:
            ids = [row[:1] + [marker] + row[1:] for row in ids]
        width = length if is_query else max((len(r) for r in ids), default=1)
        input_ids = torch.full((len(ids), width), self.mask_id if is_query else self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for r, row in enumerate(ids):
            input_ids[r, : len(row)] = torch.tensor(row)
            mask[r, : len(row)] = 1
        if is_query:
            mask[:] = 1  # queries attend to their [MASK] expansion tokens
        return input_ids, mask

    def keep_mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, is_query: bool) -> torch.Tensor:
        """Which output vectors a text keeps: all of a query's; a document's real, non-skip-list tokens."""
        if is_query:
            return attention_mask.bool()
        keep = attention_mask.bool()
        if len(self.skip_ids):
            keep &= ~torch.isin(input_ids, self.skip_ids.to(input_ids.device))
        return keep

    # -- encoding -------------------------------------------------------------------------------------
    def encode_queries(self, texts: Iterable[str]) -> list[np.ndarray]:
        return self._encode(list(texts), is_query=True)

    def encode_documents(self, texts: Iterable[str]) -> list[np.ndarray]:
        return self._encode(list(texts), is_query=False)

    def _encode(self, texts: list[str], is_query: bool) -> list[np.ndarray]:
        out: list[np.ndarray | None] = [None] * len(texts)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths batch together
        for start in range(0, len(order), self.batch_size):
            sel = order[start:start + self.batch_size]
            input_ids, mask = self.tokenize([texts[i] for i in sel], is_query)
            with torch.inference_mode():
                vectors = self.model(input_ids.to(self.device), mask.to(self.device)).float().cpu()
            keep = self.keep_mask(input_ids, mask, is_query)
            for r, i in enumerate(sel):
                out[i] = vectors[r][keep[r]].numpy().astype(np.float32)
        return out

    # -- persistence ----------------------------------------------------------------------------------
    def describe(self) -> dict:
        return {"type": "multivector", "model": self.model_name, "dim": self.dim, "query_length": self.query_length,
                "document_length": self.document_length, "query_prefix": self.query_prefix,
                "document_prefix": self.document_prefix}

    def save(self, directory: str | Path) -> Path:
        """Write a PyLate-layout folder (see :meth:`write_files`), published atomically: a previous
        ``directory`` stays whole until the new one replaces it."""
        with staged(directory) as tmp:
            self.write_files(tmp)
        return Path(directory)

    def write_files(self, directory: str | Path) -> Path:
        """Backbone files, ``1_Dense/``, ``modules.json`` and the ST config, into the existing folder
        ``directory`` (a staging folder: the caller publishes it)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        save_pretrained(self.model.backbone, self.tokenizer, directory)
        dense = directory / "1_Dense"
        dense.mkdir()
        proj = self.model.projection
        state = {"linear.weight": proj.weight.detach().cpu().contiguous()}
        if proj.bias is not None:
            state["linear.bias"] = proj.bias.detach().cpu().contiguous()
        save_file(state, str(dense / "model.safetensors"))
        write_json_atomic(dense / "config.json", {
            "in_features": proj.in_features, "out_features": proj.out_features, "bias": proj.bias is not None,
            "activation_function": "torch.nn.modules.linear.Identity"}, durable=False)
        write_json_atomic(directory / "modules.json", [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"}], durable=False)
        write_json_atomic(directory / "sentence_bert_config.json",
                          {"max_seq_length": self.document_length, "do_lower_case": False}, durable=False)
        write_json_atomic(directory / ST_CONFIG, {
            "query_prefix": self.query_prefix, "document_prefix": self.document_prefix,
            "query_length": self.query_length, "document_length": self.document_length,
            "attend_to_expansion_tokens": True, "skiplist_words": self.skiplist_words,
            "similarity_fn_name": "MaxSim"}, durable=False)
        return directory
