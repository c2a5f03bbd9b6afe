"""Dense bi-encoders: Hugging Face / sentence-transformers models → one L2-comparable vector per text.

Accepted models (a heron alias such as ``minilm``, a Hugging Face id or a local folder):

- a sentence-transformers folder: ``modules.json`` with a ``Transformer``, a ``Pooling`` module
  (``1_Pooling/config.json``: CLS, mean, max, mean-sqrt-len or last-token pooling) and optionally
  ``Normalize``; ``max_seq_length`` and ``do_lower_case`` come from ``sentence_bert_config.json`` and the
  query / document prompts from ``config_sentence_transformers.json``;
- a plain Hugging Face encoder checkpoint (``AutoModel``): mean pooling, no normalisation, unless the
  caller says otherwise.

The pooling and normalisation are the model's own, so heron's vectors equal sentence-transformers'
``encode`` output for the same model (tested). ``trust_remote_code`` is never enabled.

Speed: texts are tokenised once per chunk, sorted by length so a batch carries little padding, and
encoded under ``torch.inference_mode``; on CUDA the model runs in fp16 by default.

Example::

    >>> enc = DenseEncoder("minilm", threads=2)                                  # doctest: +SKIP
    >>> docs = enc.encode_documents(["The cat sat on the mat.", "Dogs bark."])   # doctest: +SKIP
    >>> enc.encode_queries(["where did the cat sit"]) @ docs.T                   # doctest: +SKIP
    array([[0.61, 0.08]], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from heron.errors import HeronError
from heron.retrieval.encoders import hf

POOLINGS = ("mean", "cls", "max", "mean_sqrt_len", "lasttoken")
_TEXT_CHUNK = 8192
_POOLING_KEYS = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean",
                 "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
                 "pooling_mode_lasttoken": "lasttoken"}


def _read_st_layout(folder: Path) -> dict:
    """Pooling, normalisation, max length, lower-casing and prompts of a sentence-transformers folder."""
    layout = {"transformer": folder, "pooling": "mean", "normalize": False, "max_length": None,
              "lowercase": False, "query_prompt": "", "document_prompt": ""}
    modules = hf.read_modules(folder)
    if modules is None:
        return layout
    seen_transformer = False
    for cls, path in modules:
        if cls == "Transformer":
            seen_transformer = True
            layout["transformer"] = path
            st_file = path / "sentence_bert_config.json"
            config = hf.read_json(st_file) if st_file.is_file() else {}
            layout["max_length"] = config.get("max_seq_length")
            layout["lowercase"] = bool(config.get("do_lower_case", False))
        elif cls == "Pooling":
            config = hf.read_json(path / "config.json")
            modes = [mode for key, mode in _POOLING_KEYS.items() if config.get(key)]
            if len(modes) != 1:
                raise HeronError(f"{path / 'config.json'}: heron supports exactly one pooling mode, found "
                                 f"{modes or 'none'}")
            layout["pooling"] = modes[0]
        elif cls == "Normalize":
            layout["normalize"] = True
        else:
            raise HeronError(f"{folder}: module {cls!r} is not supported by heron's dense encoder "
                             f"(expected Transformer, Pooling and optionally Normalize)")
    if not seen_transformer:
        raise HeronError(f"{folder / 'modules.json'}: no Transformer module")
    st_config = folder / "config_sentence_transformers.json"
    if st_config.is_file():
        prompts = hf.read_json(st_config).get("prompts") or {}
        layout["query_prompt"] = prompts.get("query", "") or ""
        layout["document_prompt"] = prompts.get("document", prompts.get("passage", "")) or ""
    return layout


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool ``B × L × H`` token states over the real tokens (``mask``) into ``B × H`` (float32)."""
    hidden = hidden.float()
    m = mask.unsqueeze(-1).to(hidden.dtype)
    if mode == "cls":
        return hidden[:, 0]
    if mode == "lasttoken":
        last = mask.sum(dim=1).clamp(min=1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    if mode == "max":
        return hidden.masked_fill(m == 0, float("-inf")).amax(dim=1)
    summed = (hidden * m).sum(dim=1)
    counts = m.sum(dim=1).clamp(min=1e-9)
    if mode == "mean":
        return summed / counts
    if mode == "mean_sqrt_len":
        return summed / counts.sqrt()
    raise HeronError(f"unsupported pooling {mode!r} (choose from {', '.join(POOLINGS)})")


class DenseEncoder:
    """A bi-encoder: ``encode_documents`` / ``encode_queries`` → ``float32`` arrays of shape ``n × dim``."""

    def __init__(self, model: str | Path = "minilm", *, max_length: int | None = None, batch_size: int = 64,
                 threads: int | None = None, device: str | None = "auto", fp16: bool | None = None,
                 pooling: str | None = None, normalize: bool | None = None, query_prompt: str | None = None,
                 document_prompt: str | None = None, lowercase: bool | None = None):
        self.model_name = str(model)
        folder = hf.resolve_model_folder(model)
        layout = _read_st_layout(folder) if isinstance(folder, Path) else \
            {"transformer": folder, "pooling": "mean", "normalize": False, "max_length": None, "lowercase": False,
             "query_prompt": "", "document_prompt": ""}
        self.path = Path(str(folder))
        self.transformer_path = Path(str(layout["transformer"]))  # the Hugging Face checkpoint inside
        self.pooling = pooling or layout["pooling"]
        if self.pooling not in POOLINGS:
            raise HeronError(f"{model}: unsupported pooling {self.pooling!r} (choose from {', '.join(POOLINGS)})")
        self.normalize = layout["normalize"] if normalize is None else bool(normalize)
        self.lowercase = layout["lowercase"] if lowercase is None else bool(lowercase)
        self.query_prompt = layout["query_prompt"] if query_prompt is None else query_prompt
        self.document_prompt = layout["document_prompt"] if document_prompt is None else document_prompt
        if threads:
            torch.set_num_threads(int(threads))
        self.device = hf.resolve_device(device)
        self.fp16 = hf.resolve_fp16(self.device, fp16)
        self.tokenizer, net = hf.load_checkpoint(layout["transformer"], masked_lm=False, name=str(model))
        net.eval()
        if self.fp16:
            net.half()
        self.net = net.to(self.device)
        self.model_max_length = hf.model_max_length(layout["max_length"], self.tokenizer, net.config)
        if max_length is not None and max_length > self.model_max_length:
            raise HeronError(f"{model}: max_length {max_length} exceeds the model's {self.model_max_length} tokens")
        self.max_length = int(max_length or self.model_max_length)
        self.batch_size = int(batch_size)
        self.dim = int(net.config.hidden_size)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    # -- encoding ------------------------------------------------------------------------------------
    def encode_documents(self, texts: Iterable[str], on_batch=None) -> np.ndarray:
        """``N × dim`` document vectors; ``on_batch(n)`` (progress) is called after each batch of ``n``."""
        return self._encode([self.document_prompt + t for t in texts], on_batch)

    def encode_queries(self, texts: Iterable[str]) -> np.ndarray:
        return self._encode([self.query_prompt + t for t in texts])

    def _encode(self, texts: Sequence[str], on_batch=None) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), _TEXT_CHUNK):
            out[start:start + _TEXT_CHUNK] = self._encode_chunk(texts[start:start + _TEXT_CHUNK], on_batch)
        return out

    def _encode_chunk(self, texts: Sequence[str], on_batch=None) -> np.ndarray:
        prepared = [t.lower() if self.lowercase else t for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for sel, input_ids, mask in hf.length_sorted_batches(self.tokenizer, prepared, self.max_length,
                                                             self.batch_size, self.pad_id):
            out[sel] = self.embed(input_ids, mask).cpu().numpy()
            if on_batch is not None:
                on_batch(len(sel))
        return out

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``B × dim`` float32 embeddings of one padded batch."""
        with torch.inference_mode():
            input_ids = input_ids.to(self.device)
            attention_mask = attention_mask.to(self.device)
            hidden = self.net(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            vectors = pool(hidden, attention_mask, self.pooling)
            if self.normalize:
                vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
            return vectors

    # -- persistence ---------------------------------------------------------------------------------
    def describe(self) -> dict:
        return {"type": "dense", "model": self.model_name, "dim": self.dim, "pooling": self.pooling,
                "normalize": self.normalize, "max_length": self.max_length, "lowercase": self.lowercase,
                "query_prompt": self.query_prompt, "document_prompt": self.document_prompt, "fp16": self.fp16}

    def save(self, directory: str | Path) -> Path:
        """Write the model files (``model/``) and the settings (``heron_encoder.json``) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        hf.copy_checkpoint(self.transformer_path, directory / "model", masked_lm=False, tokenizer=self.tokenizer)
        hf.write_encoder_config(directory, self.describe(), {"model": "model"})
        return directory

    @classmethod
    def load(cls, directory: str | Path, *, device: str | None = "auto", fp16: bool | None = None,
             threads: int | None = None, batch_size: int = 64) -> DenseEncoder:
        directory = Path(directory)
        config = hf.read_encoder_config(directory, "dense", "dense")
        info = config["encoder"]
        enc = cls(directory / config["layout"]["model"], max_length=info.get("max_length"), batch_size=batch_size,
                  threads=threads, device=device, fp16=fp16, pooling=info.get("pooling"),
                  normalize=info.get("normalize"), query_prompt=info.get("query_prompt"),
                  document_prompt=info.get("document_prompt"), lowercase=info.get("lowercase"))
        enc.model_name = info.get("model", enc.model_name)
        return enc
