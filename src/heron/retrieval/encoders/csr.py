"""CSR — Contrastive Sparse Representation: sparse codes from a TopK autoencoder over dense embeddings.

The model (Wen et al., ICML 2025; ``../shared/notes/algorithms.md``) sits on a *frozen* dense encoder::

    x̃   = x − b_pre
    z   = W_enc x̃ + b_lat                      (hidden = 4–8 × dim latents)
    z_k = ReLU(TopK(z, k))                      at most k non-zeros: TopK comes before the ReLU
    x̂_k = W_encᵀ z_k + b_pre                    tied decoder

The codes ``z_k`` (L2-normalised by default, so that a dot product is the cosine the contrastive loss
was trained on) are ``{latent: weight}`` vectors over ``hidden`` latents: heron's inverted index serves
them like any other sparse representation. Training lives in :mod:`heron.training.csr`.

A checkpoint is a folder: ``config.json`` (sizes, ``k``, the base dense model, training summary) and
``model.safetensors`` (``b_pre``, ``W_enc``, ``b_lat``). :class:`CSREncoder` pairs a checkpoint with its
dense base encoder and emits ``scipy.sparse`` CSR matrices.

Example::

    >>> import torch
    >>> sae = SparseAutoencoder(dim=8, hidden=32, k=3)
    >>> codes = sae.encode(torch.randn(5, 8))
    >>> int((codes != 0).sum(dim=1).max()) <= 3
    True
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from heron.errors import HeronError
from heron.retrieval.encoders.hf import read_encoder_config, write_encoder_config
from heron.storage import read_versioned_json, staged, write_json_atomic

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_FORMAT = "heron-csr"
CHECKPOINT_VERSION = 1


class SparseAutoencoder(nn.Module):
    """The TopK sparse autoencoder with a tied decoder; ``steps_since_fired`` tracks dead latents."""

    def __init__(self, dim: int, hidden: int, k: int, dead_threshold: int = 30):
        super().__init__()
        if not 1 <= k <= hidden:
            raise HeronError(f"CSR: k={k} must be between 1 and the hidden size {hidden}")
        self.dim, self.hidden, self.k, self.dead_threshold = int(dim), int(hidden), int(k), int(dead_threshold)
        self.b_pre = nn.Parameter(torch.zeros(dim))
        weight = torch.randn(hidden, dim)
        self.W_enc = nn.Parameter(weight / weight.norm(dim=1, keepdim=True))
        self.b_lat = nn.Parameter(torch.zeros(hidden))
        self.register_buffer("steps_since_fired", torch.zeros(hidden, dtype=torch.long), persistent=False)

    # -- pieces ---------------------------------------------------------------------------------------
    def preactivations(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x - self.b_pre, self.W_enc, self.b_lat)

    @staticmethod
    def topk(pre: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``ReLU`` of the ``k`` largest pre-activations per row and their latent ids (``B × k`` each)."""
        values, indices = pre.topk(min(int(k), pre.shape[-1]), dim=-1)
        return torch.relu(values), indices

    @staticmethod
    def densify(values: torch.Tensor, indices: torch.Tensor, hidden: int) -> torch.Tensor:
        return torch.zeros(values.shape[0], hidden, dtype=values.dtype, device=values.device).scatter(
            -1, indices, values)

    @classmethod
    def topk_relu(cls, pre: torch.Tensor, k: int) -> torch.Tensor:
        """``ReLU(TopK(pre, k))`` as a dense tensor: at most ``k`` non-zeros per row (a new tensor)."""
        values, indices = cls.topk(pre, k)
        return cls.densify(values, indices, pre.shape[-1])

    def decode(self, z: torch.Tensor, bias: bool = True) -> torch.Tensor:
        """``W_encᵀ z (+ b_pre)`` for dense codes ``z``."""
        out = z @ self.W_enc
        return out + self.b_pre if bias else out

    def decode_sparse(self, values: torch.Tensor, indices: torch.Tensor, bias: bool = True) -> torch.Tensor:
        """:meth:`decode` of codes given as ``(values, indices)``: ``B·k·dim`` work instead of ``B·hidden·dim``."""
        out = nn.functional.embedding_bag(indices, self.W_enc, per_sample_weights=values, mode="sum")
        return out + self.b_pre if bias else out

    def encode(self, x: torch.Tensor, k: int | None = None) -> torch.Tensor:
        return self.topk_relu(self.preactivations(x), k or self.k)

    # -- dead latents ---------------------------------------------------------------------------------
    def update_dead(self, codes: torch.Tensor, indices: torch.Tensor | None = None) -> None:
        """One training step's bookkeeping: latents that fired are reset, the others age by one step.

        ``codes`` is dense (``B × hidden``), or the values of ``(values, indices)`` with ``indices``.
        """
        if indices is None:
            fired = (codes != 0).any(dim=0)
        else:
            fired = torch.zeros(self.hidden, dtype=torch.bool, device=codes.device)
            fired[indices[codes > 0]] = True
        self.steps_since_fired += 1
        self.steps_since_fired[fired] = 0

    def dead_mask(self) -> torch.Tensor:
        return self.steps_since_fired > self.dead_threshold

    # -- persistence ----------------------------------------------------------------------------------
    def save(self, directory: str | Path, config: dict | None = None) -> Path:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({name: p.detach().cpu().contiguous() for name, p in self.named_parameters()},
                  str(directory / WEIGHTS_FILE))
        info = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "dim": self.dim, "hidden": self.hidden,
                "k": self.k, "dead_threshold": self.dead_threshold, **(config or {})}
        write_json_atomic(directory / CONFIG_FILE, info)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> tuple[SparseAutoencoder, dict]:
        from safetensors.torch import load_file

        directory = Path(directory)
        config = read_checkpoint_config(directory)
        model = cls(config["dim"], config["hidden"], config["k"], config.get("dead_threshold", 30))
        try:
            state = load_file(str(directory / WEIGHTS_FILE))
        except (OSError, RuntimeError) as exc:
            raise HeronError(f"{directory / WEIGHTS_FILE}: unreadable CSR weights ({exc})") from None
        expected = {name: tuple(p.shape) for name, p in model.named_parameters()}
        got = {name: tuple(t.shape) for name, t in state.items()}
        if got != expected:
            raise HeronError(f"{directory / WEIGHTS_FILE}: tensors {got} do not match the config {expected}")
        model.load_state_dict(state, strict=False)
        model.eval()
        return model, config


def read_checkpoint_config(directory: str | Path) -> dict:
    path = Path(directory) / CONFIG_FILE
    config = read_versioned_json(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "heron CSR checkpoint",
                                 "train one with heron train csr")
    for key in ("dim", "hidden", "k", "base"):
        if key not in config:
            raise HeronError(f"{path}: field {key!r} missing")
    return config


def latent_vocabulary(hidden: int) -> list[str]:
    """Names of the latents as index terms."""
    return [f"latent{i}" for i in range(hidden)]


def codes_to_csr(codes: torch.Tensor | np.ndarray, normalize: bool = True) -> sp.csr_matrix:
    codes = torch.as_tensor(codes, dtype=torch.float32)
    if normalize:
        codes = nn.functional.normalize(codes, p=2, dim=1)
    matrix = sp.csr_matrix(codes.numpy())
    matrix.eliminate_zeros()
    matrix.sort_indices()
    return matrix


class CSREncoder:
    """Dense base encoder + CSR checkpoint → sparse codes (``encode_documents`` / ``encode_queries``).

    ``k`` overrides the checkpoint's k at encoding time; ``normalize`` (default on) L2-normalises codes.
    """

    def __init__(self, checkpoint: str | Path, *, base=None, k: int | None = None, normalize: bool = True,
                 batch_size: int = 64, threads: int | None = None, device: str | None = "auto"):
        from heron.retrieval.encoders.dense import DenseEncoder

        self.checkpoint = Path(checkpoint)
        self.model, self.config = SparseAutoencoder.load(self.checkpoint)
        self.k = int(k or self.config["k"])
        if not 1 <= self.k <= self.model.hidden:
            raise HeronError(f"CSR: k={self.k} must be between 1 and the hidden size {self.model.hidden}")
        self.normalize = bool(normalize)
        self.base = base if base is not None else DenseEncoder(self.config["base"], batch_size=batch_size,
                                                                threads=threads, device=device)
        if self.base.dim != self.model.dim:
            raise HeronError(f"{self.checkpoint}: the CSR model takes {self.model.dim}-dimensional inputs, the base "
                             f"encoder {self.config['base']!r} gives {self.base.dim}")

    @property
    def vocab_size(self) -> int:
        return self.model.hidden

    @property
    def vocabulary(self) -> list[str]:
        return latent_vocabulary(self.model.hidden)

    def codes(self, embeddings: np.ndarray) -> sp.csr_matrix:
        """Sparse codes of precomputed base embeddings."""
        with torch.inference_mode():
            z = self.model.encode(torch.as_tensor(np.asarray(embeddings, dtype=np.float32)), self.k)
        return codes_to_csr(z, self.normalize)

    def encode_documents(self, texts: Iterable[str]) -> sp.csr_matrix:
        return self.codes(self.base.encode_documents(list(texts)))

    def encode_queries(self, texts: Iterable[str]) -> sp.csr_matrix:
        return self.codes(self.base.encode_queries(list(texts)))

    def describe(self) -> dict:
        return {"type": "csr", "checkpoint": str(self.checkpoint), "base": self.config["base"],
                "dim": self.model.dim, "hidden": self.model.hidden, "k": self.k, "normalize": self.normalize,
                "base_encoder": self.base.describe()}

    def save(self, directory: str | Path) -> Path:
        """``base/`` (the dense encoder), ``csr/`` (the checkpoint) and ``heron_encoder.json``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.base.save(directory / "base")
        with staged(directory / "csr") as target:
            for name in (CONFIG_FILE, WEIGHTS_FILE):
                shutil.copy2(self.checkpoint / name, target / name)
        write_encoder_config(directory, self.describe(), {"base": "base", "csr": "csr"})
        return directory

    @classmethod
    def load(cls, directory: str | Path, *, device: str | None = "auto", threads: int | None = None,
             batch_size: int = 64) -> CSREncoder:
        from heron.retrieval.encoders.dense import DenseEncoder

        directory = Path(directory)
        config = read_encoder_config(directory, "csr", "CSR")
        info = config["encoder"]
        base = DenseEncoder.load(directory / config["layout"]["base"], device=device, threads=threads,
                                 batch_size=batch_size)
        return cls(directory / config["layout"]["csr"], base=base, k=info.get("k"),
                   normalize=info.get("normalize", True))
