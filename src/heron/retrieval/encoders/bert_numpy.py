"""SPLADE query encoding without torch: a BERT masked-LM forward pass in numpy.

A query is a few tokens through a small BERT; importing torch and transformers to run it costs ~3 s of a
cold ``heron query`` (the search itself takes milliseconds). For the checkpoints this module can read — a
Hugging Face ``BertForMaskedLM`` folder (``config.json`` with ``model_type: bert``, ``hidden_act: gelu``,
absolute positions; ``model.safetensors``; ``tokenizer.json``) — :class:`NumpySpladeQueries` encodes CPU
queries with ``tokenizers`` (the Rust tokenizer transformers' fast tokenizer wraps, from the same
``tokenizer.json``) and ``safetensors``' numpy loader. It computes what
:class:`~heron.retrieval.encoders.splade.SpladeEncoder` computes for queries (``encode_queries``: max
pooling of the masked logits, then the activation; ``top_k``; positive weights only), within float32
rounding (``tests/test_splade.py`` compares the two on every SciFact and NFCorpus test query).
:func:`load_query_encoder` picks it for SPLADE indexes whose query model qualifies; anything else (other
architectures, sum pooling, a CUDA device) goes through torch as before.

Example::

    >>> enc = NumpySpladeQueries.load("indexes/scifact-splade-tiny/encoder")   # doctest: +SKIP
    >>> enc.encode_queries(["does coffee cause cancer"]).nnz                   # doctest: +SKIP
    27
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from heron.errors import HeronError
from heron.storage import read_json

_ARCHITECTURES = {"BertForMaskedLM"}
_WEIGHTS = "model.safetensors"
_TOKENIZER = "tokenizer.json"
_BATCH = 32
_HEAD_TOKENS = 256  # tokens per vocabulary-projection block


def supported(folder: str | Path) -> bool:
    """Whether ``folder`` is a checkpoint :class:`NumpyBertMaskedLM` reads exactly as transformers does."""
    folder = Path(folder)
    if not ((folder / "config.json").is_file() and (folder / _WEIGHTS).is_file() and (folder / _TOKENIZER).is_file()):
        return False
    try:
        config = read_json(folder / "config.json")
    except HeronError:
        return False
    return (config.get("model_type") == "bert" and set(config.get("architectures") or ()) <= _ARCHITECTURES
            and config.get("hidden_act") == "gelu"
            and config.get("position_embedding_type", "absolute") == "absolute"
            and not config.get("is_decoder") and not config.get("add_cross_attention"))


def _erf(x: np.ndarray) -> np.ndarray:
    """The error function to ~1e-7 (Abramowitz & Stegun 7.1.26), in float64: numpy has none, and
    importing ``scipy.special`` for it would cost a third of a second."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact (erf) GELU."""
    return (0.5 * x * (1.0 + _erf(x.astype(np.float64) / math.sqrt(2.0)))).astype(np.float32)


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


class NumpyBertMaskedLM:
    """The forward pass of a ``BertForMaskedLM`` checkpoint (inference only), weights as numpy arrays."""

    def __init__(self, folder: str | Path):
        from safetensors.numpy import load_file

        folder = Path(folder)
        if not supported(folder):
            raise HeronError(f"{folder}: not a BERT masked-LM checkpoint the numpy encoder can read")
        self.config = read_json(folder / "config.json")
        tensors = load_file(folder / _WEIGHTS)
        self._weights = {self._canonical(name): value.astype(np.float32, copy=False)
                         for name, value in tensors.items()}
        for name in [n for n in self._weights if n.endswith(".weight") and self._weights[n].ndim == 2]:
            # linear layers as (in × out), contiguous: one BLAS call on the (tokens × in) matrix
            self._weights[name + "_t"] = np.ascontiguousarray(self._weights[name].T)
        self.eps = float(self.config.get("layer_norm_eps", 1e-12))
        self.heads = int(self.config["num_attention_heads"])
        self.layers = int(self.config["num_hidden_layers"])
        self.max_positions = int(self.config.get("max_position_embeddings", 512))
        word = self._get("bert.embeddings.word_embeddings.weight")
        self.decoder = self._weights.get("cls.predictions.decoder.weight", word)  # tied by default
        self.decoder_t = np.ascontiguousarray(self.decoder.T)
        self.decoder_bias = self._weights.get("cls.predictions.bias",
                                              self._weights.get("cls.predictions.decoder.bias"))
        self.vocab_size = int(self.decoder.shape[0])

    @staticmethod
    def _canonical(name: str) -> str:
        # checkpoints from TF-era BERT name LayerNorm parameters gamma / beta
        return name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")

    def _get(self, name: str) -> np.ndarray:
        try:
            return self._weights[name]
        except KeyError:
            raise HeronError(f"BERT checkpoint lacks the tensor {name!r}") from None

    def _linear(self, x: np.ndarray, prefix: str) -> np.ndarray:
        flat = x.reshape(-1, x.shape[-1]) @ self._get(f"{prefix}.weight_t") + self._get(f"{prefix}.bias")
        return flat.reshape(*x.shape[:-1], flat.shape[-1])

    def _norm(self, x: np.ndarray, prefix: str) -> np.ndarray:
        return _layer_norm(x, self._get(f"{prefix}.weight"), self._get(f"{prefix}.bias"), self.eps)

    def hidden(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """``B × L × H`` states after the masked-LM head's transform (dense, GELU, LayerNorm): the logits
        are these times :attr:`decoder_t` plus :attr:`decoder_bias`."""
        batch, length = input_ids.shape
        if length > self.max_positions:
            raise HeronError(f"{length} tokens exceed the model's {self.max_positions} positions")
        x = (self._get("bert.embeddings.word_embeddings.weight")[input_ids]
             + self._get("bert.embeddings.position_embeddings.weight")[:length][None]
             + self._get("bert.embeddings.token_type_embeddings.weight")[0][None, None])
        x = self._norm(x, "bert.embeddings.LayerNorm")
        width = x.shape[-1]
        head_dim = width // self.heads
        # additive mask as transformers builds it: 0 for tokens, the float32 minimum for padding
        additive = np.where(attention_mask[:, None, None, :] > 0, 0.0, np.finfo(np.float32).min).astype(np.float32)
        scale = np.float32(1.0 / math.sqrt(head_dim))
        for i in range(self.layers):
            p = f"bert.encoder.layer.{i}"

            def split(t: np.ndarray) -> np.ndarray:
                return t.reshape(batch, length, self.heads, head_dim).transpose(0, 2, 1, 3)

            q = split(self._linear(x, f"{p}.attention.self.query"))
            k = split(self._linear(x, f"{p}.attention.self.key"))
            v = split(self._linear(x, f"{p}.attention.self.value"))
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + additive
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            probs = scores / scores.sum(axis=-1, keepdims=True)
            context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, length, width)
            x = self._norm(self._linear(context, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
            inner = _gelu(self._linear(x, f"{p}.intermediate.dense"))
            x = self._norm(self._linear(inner, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
        x = _gelu(self._linear(x, "cls.predictions.transform.dense"))
        return self._norm(x, "cls.predictions.transform.LayerNorm")


class NumpySpladeQueries:
    """SPLADE query vectors (max pooling) from a BERT masked-LM, with numpy and ``tokenizers`` only.

    The settings are those of the index's ``heron_encoder.json`` (``query_max_length``, ``query_top_k``,
    ``activation``, ``lowercase``); :meth:`encode_queries` returns what ``SpladeEncoder.encode_queries``
    does.
    """

    def __init__(self, folder: str | Path, *, max_length: int, top_k: int | None, activation: str,
                 lowercase: bool):
        from tokenizers import Tokenizer

        from heron.retrieval.encoders.pooling import ACTIVATIONS

        if activation not in ACTIVATIONS:
            raise HeronError(f"{folder}: unsupported SPLADE activation {activation!r}")
        self.model = NumpyBertMaskedLM(folder)
        self.tokenizer = Tokenizer.from_file(str(Path(folder) / _TOKENIZER))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(int(max_length))
        self.max_length, self.top_k = int(max_length), top_k
        self.activation, self.lowercase = activation, bool(lowercase)
        self.vocab_size = self.model.vocab_size
        self.pad_id = int(self.model.config.get("pad_token_id") or 0)

    @classmethod
    def load(cls, directory: str | Path) -> NumpySpladeQueries | None:
        """The numpy query encoder of a saved SPLADE encoder folder, or ``None`` when its query side is not
        a BERT masked-LM with max pooling (then torch encodes)."""
        from heron.retrieval.encoders.hf import read_encoder_config

        directory = Path(directory)
        config = read_encoder_config(directory, "splade", "SPLADE")
        info, layout = config["encoder"], config["layout"]
        mode = info.get("query_mode")
        folder = layout.get("model") if mode == "shared" else layout.get("query") if mode == "model" else None
        if folder is None or info.get("pooling", "max") != "max" or not supported(directory / folder):
            return None
        return cls(directory / folder, max_length=int(info.get("query_max_length") or 512),
                   top_k=info.get("query_top_k"), activation=info.get("activation", "relu"),
                   lowercase=bool(info.get("lowercase")))

    def _max_logits(self, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``B × V``: each text's maximum logit over its real tokens, the vocabulary projection done for
        ~``_HEAD_TOKENS`` tokens at a time (whole texts), never for the padding."""
        lengths = np.maximum(mask.sum(axis=1), 1)
        maxima = np.empty((hidden.shape[0], self.vocab_size), dtype=np.float32)
        r = 0
        while r < len(lengths):
            stop, tokens = r, 0
            while stop < len(lengths) and (stop == r or tokens + lengths[stop] <= _HEAD_TOKENS):
                tokens += int(lengths[stop])
                stop += 1
            block = np.concatenate([hidden[i, :lengths[i]] for i in range(r, stop)]) @ self.model.decoder_t
            starts = np.concatenate([[0], np.cumsum(lengths[r:stop - 1])])
            maxima[r:stop] = np.maximum.reduceat(block, starts, axis=0)
            r = stop
        if self.model.decoder_bias is not None:
            maxima += self.model.decoder_bias  # max(x + b) = max(x) + b
        return maxima

    def encode_queries(self, texts: Sequence[str]) -> sp.csr_matrix:
        """``Q × V`` CSR float32 query vectors (blank queries give empty rows)."""
        from heron.retrieval.encoders.hf import pad_batch
        from heron.retrieval.encoders.pooling import splade_activation_numpy

        if isinstance(texts, str):
            raise TypeError("pass a list of texts, not a single string")
        texts = ["" if t is None else str(t) for t in texts]
        live = [i for i, t in enumerate(texts) if t.strip()]
        rows, cols, vals = [], [], []
        for start in range(0, len(live), _BATCH):
            chunk = live[start:start + _BATCH]
            encodings = self.tokenizer.encode_batch([texts[i].lower() if self.lowercase else texts[i]
                                                     for i in chunk], add_special_tokens=True)
            input_ids, mask = pad_batch([e.ids for e in encodings], self.pad_id)
            pooled = splade_activation_numpy(self._max_logits(self.model.hidden(input_ids, mask), mask),
                                             self.activation)
            if self.top_k is not None and self.top_k < pooled.shape[1]:
                top = np.argpartition(-pooled, self.top_k - 1, axis=1)[:, :self.top_k]
                kept = np.zeros_like(pooled)
                np.put_along_axis(kept, top, np.take_along_axis(pooled, top, axis=1), axis=1)
                pooled = kept
            r_idx, c_idx = np.nonzero(pooled > 0)
            rows.append(np.asarray(chunk, dtype=np.int64)[r_idx])
            cols.append(c_idx.astype(np.int32))
            vals.append(pooled[r_idx, c_idx].astype(np.float32))
        if not rows:
            return sp.csr_matrix((len(texts), self.vocab_size), dtype=np.float32)
        matrix = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                               shape=(len(texts), self.vocab_size), dtype=np.float32)
        matrix.sort_indices()
        return matrix
