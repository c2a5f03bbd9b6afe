"""SPLADE: learned sparse vectors from a masked-language model's logits.

For a text with tokens ``i`` (padding excluded) and MLM logits ``logit_ij`` over the vocabulary ``j``::

    w_j = max_i log(1 + ReLU(logit_ij))        (SPLADE v2+, "max" pooling)

``log1p ∘ ReLU`` is monotone, so heron takes the max over the (attention-masked) logits first and
applies ``log1p(relu(.))`` to the ``V`` maxima only. Special tokens ([CLS], [SEP]) are treated like any
other position and their columns keep whatever the model gives, exactly as sentence-transformers'
``SpladePooling`` does. ``activation="log1p_relu"`` (OpenSearch models) applies ``log1p`` twice;
``pooling="sum"`` (SPLADE v1) sums ``log1p(relu(.))`` over the tokens.

Accepted models (a heron alias such as ``splade-tiny``, a Hugging Face id or a local folder):

- any Hugging Face masked-LM checkpoint (BERT, DistilBERT, RoBERTa, ...);
- a sentence-transformers ``SparseEncoder`` folder: ``modules.json`` with a fill-mask ``Transformer``
  (or the legacy ``MLMTransformer``) followed by ``SpladePooling``; the pooling, activation,
  ``max_seq_length`` and ``do_lower_case`` come from its config files;
- a sentence-transformers ``Router`` folder with ``query`` and ``document`` routes (efficient or
  inference-free SPLADE): the document route must be SPLADE, the query route SPLADE or a
  ``SparseStaticEmbedding`` (loaded as an :class:`~heron.retrieval.encoders.idf.IDFQueryEncoder`).

``trust_remote_code`` is never enabled.

Speed: texts are tokenised once per chunk, sorted by length (so batches carry little padding) and the
original order is restored. The language-model head's final projection (hidden → vocabulary, which
dominates the cost of small models) is computed by heron itself: on CPU one document and at most 256
tokens at a time, so the ``batch × length × V`` logits tensor is never materialised; on CUDA in batches,
in fp16 by default. Only non-zero weights are kept, optionally only the ``top_k`` largest per text.

Example::

    >>> enc = SpladeEncoder("splade-tiny", doc_max_length=256, threads=2)     # doctest: +SKIP
    >>> docs = enc.encode_documents(["The cat sat on the mat."])               # doctest: +SKIP
    >>> queries = enc.encode_queries(["where did the cat sit"])                 # doctest: +SKIP
    >>> (queries @ docs.T).toarray()                                            # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from heron.errors import HeronError
from heron.retrieval.encoders.hf import (
    ENCODER_CONFIG,
    class_name,
    copy_checkpoint,
    length_sorted_batches,
    load_checkpoint,
    model_max_length,
    read_encoder_config,
    read_json,
    read_modules,
    resolve_device,
    resolve_fp16,
    resolve_model_folder,
    write_encoder_config,
)
from heron.retrieval.encoders.idf import IDFQueryEncoder
from heron.retrieval.encoders.pooling import ACTIVATIONS, POOLINGS, splade_activation, splade_pool

_ST_CONFIGS = ("sentence_bert_config.json", "sentence_roberta_config.json", "sentence_distilbert_config.json",
               "sentence_camembert_config.json", "sentence_albert_config.json", "sentence_xlm-roberta_config.json")
_HEAD_CHUNK = 256  # tokens per projection block on CPU
_TEXT_CHUNK = 8192  # texts tokenised and length-sorted together in encode_documents / encode_queries


# -- model folders -------------------------------------------------------------------------------------
@dataclass
class SpladeSpec:
    """Where a SPLADE model's transformer lives and how its logits are pooled."""

    path: Path | str
    max_length: int | None = None
    lowercase: bool = False
    pooling: str = "max"
    activation: str = "relu"


@dataclass
class StaticSpec:
    """A sentence-transformers ``SparseStaticEmbedding`` folder (inference-free query weights)."""

    path: Path


def _parse_pipeline(folder: Path, modules: list[tuple[str, Path]]) -> SpladeSpec | StaticSpec:
    if [cls for cls, _ in modules] == ["SparseStaticEmbedding"]:
        return StaticSpec(modules[0][1])
    spec: SpladeSpec | None = None
    pooled = False
    for cls, path in modules:
        if cls in ("Transformer", "MLMTransformer"):
            if spec is not None:
                raise HeronError(f"{folder}: more than one Transformer module in one route")
            config = next((read_json(path / n) for n in _ST_CONFIGS if (path / n).is_file()), {})
            task = config.get("transformer_task", "fill-mask" if cls == "MLMTransformer" else None)
            if task != "fill-mask":
                raise HeronError(f"{folder}: the Transformer module is not a fill-mask (masked-LM) model "
                                 f"(transformer_task={task!r}); SPLADE needs MLM logits")
            spec = SpladeSpec(path, max_length=config.get("max_seq_length"),
                              lowercase=bool(config.get("do_lower_case", False)))
        elif cls == "SpladePooling":
            if spec is None:
                raise HeronError(f"{folder}: SpladePooling comes before any Transformer module")
            config = read_json(path / "config.json") if (path / "config.json").is_file() else {}
            spec.pooling = config.get("pooling_strategy", "max")
            spec.activation = config.get("activation_function", "relu")
            pooled = True
        else:
            raise HeronError(f"{folder}: module {cls!r} is not supported by heron's SPLADE encoder "
                             f"(expected a fill-mask Transformer followed by SpladePooling)")
    if spec is None or not pooled:
        raise HeronError(f"{folder}: not a SPLADE model (needs a fill-mask Transformer and SpladePooling)")
    return spec


def read_layout(folder: Path | str) -> tuple[SpladeSpec, SpladeSpec | StaticSpec | None]:
    """The document-side spec of a SPLADE model and, for a query/document Router, the query side.

    ``folder`` is what :func:`~heron.retrieval.encoders.hf.resolve_model_folder` gives: a local folder
    (a plain masked-LM checkpoint, a sentence-transformers ``SparseEncoder`` or ``Router`` folder) or a
    hub id (taken as a plain masked LM).
    """
    if not isinstance(folder, Path) or not folder.is_dir():
        return SpladeSpec(folder), None  # a hub id handed to transformers as it is
    modules = read_modules(folder)
    if modules is None:
        return SpladeSpec(folder), None
    if len(modules) == 1 and modules[0][0] == "Router":
        router = modules[0][1]
        config = read_json(router / "router_config.json")
        types, structure = config.get("types", {}), config.get("structure", {})

        def route(key: str):
            return _parse_pipeline(folder, [(class_name(types.get(n, "")), router / n) for n in structure[key]])

        doc_key = "document" if "document" in structure else config.get("parameters", {}).get("default_route")
        if doc_key not in structure:
            raise HeronError(f"{router / 'router_config.json'}: no 'document' route")
        doc = route(doc_key)
        if not isinstance(doc, SpladeSpec):
            raise HeronError(f"{folder}: the document route must be a SPLADE model")
        query = route("query") if "query" in structure and "query" != doc_key else None
        return doc, query
    return _parse_pipeline(folder, modules), None


def _vocabulary(tokenizer, size: int) -> list[str]:
    tokens = tokenizer.convert_ids_to_tokens(list(range(size)))
    return [t if t is not None else f"<{i}>" for i, t in enumerate(tokens)]


# -- one masked-LM -------------------------------------------------------------------------------------
class _MLMSide:
    """A loaded masked-LM with its tokenizer and pooling: turns texts into SPLADE vectors."""

    def __init__(self, name: str, spec: SpladeSpec, device: torch.device, fp16: bool,
                 pooling: str | None = None, activation: str | None = None, lowercase: bool | None = None):
        self.name = name
        self.path = spec.path
        self.pooling = pooling or spec.pooling
        self.activation = activation or spec.activation
        if self.pooling not in POOLINGS:
            raise HeronError(f"{name}: unsupported SPLADE pooling {self.pooling!r} (choose from {', '.join(POOLINGS)})")
        if self.activation not in ACTIVATIONS:
            raise HeronError(f"{name}: unsupported SPLADE activation {self.activation!r} "
                             f"(choose from {', '.join(ACTIVATIONS)})")
        self.lowercase = spec.lowercase if lowercase is None else bool(lowercase)
        self.tokenizer, model = load_checkpoint(spec.path, masked_lm=True, name=name)
        model.eval()
        out = model.get_output_embeddings()
        self.vocab_size = int(out.weight.shape[0]) if out is not None else int(model.config.vocab_size)
        self.max_length = model_max_length(spec.max_length, self.tokenizer, model.config)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        # the final vocabulary projection is done by heron (see module docstring) when it can be split off
        self.head = self._split_head(model) if self.pooling == "max" else None
        self.device = device
        # CPU: project one document at a time (bounded memory, cache-friendly); accelerators: whole batches
        self.per_document_head = device.type == "cpu"
        self.fp16 = bool(fp16)
        if self.fp16:
            model.half()
        model.to(device)
        self.model = model
        if self.head is not None:
            weight, bias = self.head
            weight = weight.to(device, torch.float16 if self.fp16 else torch.float32)
            self.head = (weight.t().contiguous() if self.per_document_head else weight,
                         None if bias is None else bias.to(device, torch.float32))

    def copy_to(self, target: Path) -> None:
        """This side's checkpoint as a plain masked-LM folder at ``target`` (published atomically)."""
        copy_checkpoint(self.path, target, masked_lm=True, tokenizer=self.tokenizer)

    def _split_head(self, model) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """Replace the output projection by the identity, if that provably gives the same logits."""
        out = model.get_output_embeddings()
        if not isinstance(out, torch.nn.Linear):
            return None
        owner = next(((m, attr) for m in model.modules() for attr, child in m.named_children() if child is out), None)
        if owner is None:
            return None
        try:
            probe = self.tokenizer(["heron probe: the quick brown fox jumps over the lazy dog", "short"],
                                   padding=True, return_tensors="pt", return_token_type_ids=False)
            with torch.inference_mode():
                reference = model(**probe).logits.float()
        except Exception:  # noqa: BLE001 - no probe, no split
            return None
        with torch.inference_mode():
            setattr(owner[0], owner[1], torch.nn.Identity())
            try:
                hidden = model(**probe).logits
                ok = hidden.shape[-1] == out.weight.shape[1]
                if ok:
                    got = torch.nn.functional.linear(hidden, out.weight, out.bias).float()
                    ok = torch.allclose(got, reference, rtol=1e-4, atol=1e-4)
            except Exception:  # noqa: BLE001 - any failure means: keep the model's own head
                ok = False
        if not ok:
            setattr(owner[0], owner[1], out)
            return None
        return out.weight.detach().clone(), None if out.bias is None else out.bias.detach().clone().float()

    # -- encoding ------------------------------------------------------------------------------------
    def encode(self, texts: Sequence[str], max_length: int, top_k: int | None, batch_size: int,
               on_batch=None) -> sp.csr_matrix:
        """``len(texts) × V`` SPLADE vectors; ``on_batch(n)`` (progress) is called after each batch of ``n``
        texts (blank texts count with the first batch)."""
        n = len(texts)
        width = self.vocab_size
        live = np.asarray([i for i, t in enumerate(texts) if t.strip()], dtype=np.int64)
        if on_batch is not None and n > len(live):
            on_batch(n - len(live))
        if len(live) == 0:
            return sp.csr_matrix((n, width), dtype=np.float32)
        batch_texts = [texts[i].lower() if self.lowercase else texts[i] for i in live]
        rows, cols, vals = [], [], []
        for sel, input_ids, mask in length_sorted_batches(self.tokenizer, batch_texts, max_length, batch_size,
                                                          self.pad_id):
            pooled = self.pool(input_ids, mask)
            r_idx, c_idx, v = _nonzeros(pooled, top_k)
            rows.append(live[sel][r_idx])
            cols.append(c_idx)
            vals.append(v)
            if on_batch is not None:
                on_batch(len(sel))
        matrix = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                               shape=(n, width), dtype=np.float32)
        matrix.sort_indices()
        return matrix

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``B × V`` float32 SPLADE weights for one padded batch."""
        with torch.inference_mode():
            input_ids = input_ids.to(self.device, non_blocking=True)
            attention_mask = attention_mask.to(self.device, non_blocking=True)
            output = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
            if self.head is not None:  # output: hidden states; the max of the projection, then the activation
                return splade_activation(self._project_max(output, attention_mask), self.activation)
            return splade_pool(output, attention_mask, pooling=self.pooling, activation=self.activation,
                               overwrite=True)

    def _project_max(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``max_i (h_i · W_j) + b_j`` over the real tokens, without the full logits tensor."""
        weight, bias = self.head
        batch = hidden.shape[0]
        if self.per_document_head:  # weight is W^T (H × V): one document, ≤ 256 tokens at a time
            lengths = attention_mask.sum(dim=1).tolist()
            maxima = torch.empty(batch, weight.shape[1], dtype=torch.float32)
            for r, n in enumerate(lengths):
                n = max(int(n), 1)
                row = maxima[r]
                for s in range(0, n, _HEAD_CHUNK):
                    block = torch.matmul(hidden[r, s:min(s + _HEAD_CHUNK, n)], weight).amax(dim=0)
                    if s == 0:
                        row.copy_(block)
                    else:
                        torch.maximum(row, block, out=row)
        else:  # accelerator: whole batches, masked
            keep = attention_mask.unsqueeze(-1) == 0
            maxima = None
            step = max(1, (1 << 27) // max(batch * weight.shape[0], 1))  # ~128M logits per block
            for s in range(0, hidden.shape[1], step):
                block = torch.matmul(hidden[:, s:s + step], weight.t())
                block = block.masked_fill_(keep[:, s:s + step], float("-inf")).amax(dim=1)
                maxima = block if maxima is None else torch.maximum(maxima, block)
            maxima = maxima.float()
        if bias is not None:
            maxima += bias  # max(x + b) = max(x) + b
        return maxima


def _nonzeros(pooled: torch.Tensor, top_k: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices, column indices and values of the positive entries (the ``top_k`` largest per row)."""
    if top_k is not None and top_k < pooled.shape[1]:
        values, columns = pooled.topk(top_k, dim=1)
        keep = values > 0
        rows = torch.arange(pooled.shape[0], device=pooled.device).unsqueeze(1).expand_as(columns)[keep]
        return rows.cpu().numpy(), columns[keep].cpu().numpy().astype(np.int32), values[keep].cpu().numpy()
    rows, columns = torch.nonzero(pooled > 0, as_tuple=True)
    values = pooled[rows, columns]
    return rows.cpu().numpy(), columns.cpu().numpy().astype(np.int32), values.cpu().numpy()


def _as_texts(texts: Iterable[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("pass a list of texts, not a single string")
    return ["" if t is None else t if isinstance(t, str) else str(t) for t in texts]


# -- the encoder -----------------------------------------------------------------------------------------
class SpladeEncoder:
    """SPLADE documents and queries as ``scipy.sparse.csr_matrix`` (float32, one column per vocabulary id).

    ``doc_model``: the document model (alias, hub id or folder; ``None`` for a query-only encoder, as
    :meth:`load` gives for a saved index encoder). ``query_model``: ``None`` to use the document model
    (or a Router folder's query route), another SPLADE model (efficient SPLADE: a small query model
    with the same vocabulary), or an :class:`IDFQueryEncoder` (inference-free: no network at query
    time; see also :meth:`fit_idf_queries`).

    ``doc_max_length`` / ``query_max_length`` count tokens including [CLS]/[SEP]; ``None`` takes the
    model's (sentence-transformers ``max_seq_length``, else the tokenizer's, capped by the position
    embeddings). ``doc_top_k`` / ``query_top_k`` keep only the k largest weights per text.
    ``threads`` calls ``torch.set_num_threads`` (process-wide). ``device="auto"`` uses CUDA when present;
    ``fp16=None`` means fp16 on CUDA and fp32 on CPU. ``pooling`` / ``activation`` / ``lowercase``
    override what the model folder says.
    """

    def __init__(self, doc_model: str | Path | None = "splade-tiny",
                 query_model: str | Path | IDFQueryEncoder | None = None, *,
                 doc_max_length: int | None = None, query_max_length: int | None = None,
                 batch_size: int = 32, threads: int | None = None, device: str | None = "auto",
                 fp16: bool | None = None, doc_top_k: int | None = None, query_top_k: int | None = None,
                 pooling: str | None = None, activation: str | None = None, lowercase: bool | None = None):
        if doc_model is None and query_model is None:
            raise ValueError("need a document model, a query model or both")
        for name, k in (("doc_top_k", doc_top_k), ("query_top_k", query_top_k)):
            if k is not None and k <= 0:
                raise ValueError(f"{name} must be positive (or None)")
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        if threads:
            torch.set_num_threads(int(threads))
        self.device = resolve_device(device)
        if fp16 and self.device.type != "cuda":
            raise HeronError("fp16 needs a CUDA device (use fp16=None or False on CPU)")
        self.fp16 = resolve_fp16(self.device, fp16)
        self.batch_size = int(batch_size)
        self.threads = threads
        self.doc_top_k, self.query_top_k = doc_top_k, query_top_k
        overrides = {"pooling": pooling, "activation": activation, "lowercase": lowercase}

        self._doc: _MLMSide | None = None
        route_query = None
        if doc_model is not None:
            doc_spec, route_query = read_layout(resolve_model_folder(doc_model))
            self._doc = _MLMSide(str(doc_model), doc_spec, self.device, self.fp16, **overrides)

        self._query: _MLMSide | IDFQueryEncoder
        if isinstance(query_model, IDFQueryEncoder):
            self._query, self.query_mode = query_model, "idf"
        elif query_model is not None:
            spec, _ = read_layout(resolve_model_folder(query_model))
            self._query = _MLMSide(str(query_model), spec, self.device, self.fp16, **overrides)
            self.query_mode = "model"
        elif (saved_idf := _saved_idf_query_side(doc_model)) is not None:
            # a heron inference-free checkpoint: its own query side (the training corpus's IDF, or binary)
            self._query, self.query_mode = saved_idf, "idf"
        elif isinstance(route_query, StaticSpec):
            self._query = IDFQueryEncoder.from_sentence_transformers(route_query.path, lowercase=self._doc.lowercase)
            self.query_mode = "idf"
        elif isinstance(route_query, SpladeSpec):
            self._query = _MLMSide(f"{doc_model}#query", route_query, self.device, self.fp16, **overrides)
            self.query_mode = "model"
        else:
            self._query, self.query_mode = self._doc, "shared"

        self.doc_model_name = self._doc.name if self._doc is not None else None
        self.query_model_name = self._query.name if self.query_mode == "model" else None
        self.doc_max_length = self._check_length(doc_max_length, self._doc)
        if self.query_mode == "idf":
            if query_max_length is not None:
                self._query.max_length = int(query_max_length)
            if query_top_k is not None:
                self._query.top_k = query_top_k
            self.query_top_k = self._query.top_k
            self.query_max_length = self._query.max_length
        else:
            self.query_max_length = self._check_length(query_max_length, self._query)
        main = self._doc if self._doc is not None else self._query
        mlm = main if isinstance(main, _MLMSide) else None
        # how the document vectors are made (kept for describe() even when only the query side is loaded)
        self.pooling = mlm.pooling if mlm else (pooling or "max")
        self.activation = mlm.activation if mlm else (activation or "relu")
        self.lowercase = mlm.lowercase if mlm else bool(main.lowercase if lowercase is None else lowercase)
        self.vocab_size = int(main.vocab_size)
        if self._query.vocab_size != self.vocab_size:
            raise HeronError(f"query encoder has {self._query.vocab_size} columns, document model "
                             f"{self.vocab_size}: they must share one vocabulary")
        self._vocabulary: list[str] | None = None

    @staticmethod
    def _check_length(requested: int | None, side: _MLMSide | None) -> int | None:
        if side is None:
            return requested
        if requested is None:
            return side.max_length
        limit = getattr(side.model.config, "max_position_embeddings", None)
        if requested <= 0 or (limit and requested > limit):
            raise ValueError(f"max length {requested} is outside 1..{limit} for {side.name}")
        return int(requested)

    # -- properties ------------------------------------------------------------------------------------
    @property
    def tokenizer(self):
        return (self._doc or self._query).tokenizer

    @property
    def vocabulary(self) -> list[str]:
        """Column ``j`` ↔ token string ``vocabulary[j]``."""
        if self._vocabulary is None:
            self._vocabulary = _vocabulary(self.tokenizer, self.vocab_size)
        return self._vocabulary

    @property
    def has_documents(self) -> bool:
        return self._doc is not None

    @property
    def query_encoder(self) -> _MLMSide | IDFQueryEncoder:
        return self._query

    # -- encoding ----------------------------------------------------------------------------------------
    def encode_documents(self, texts: Iterable[str], on_batch=None) -> sp.csr_matrix:
        """``N × V`` CSR float32 SPLADE document vectors (blank texts give empty rows); ``on_batch(n)`` is
        called as each batch of ``n`` documents is done (a progress bar's ``update``)."""
        if self._doc is None:
            raise HeronError("this encoder has no document model (it was saved for queries only)")
        return self._encode(self._doc, _as_texts(texts), self.doc_max_length, self.doc_top_k, on_batch)

    def encode_queries(self, texts: Iterable[str]) -> sp.csr_matrix:
        """``Q × V`` CSR float32 query vectors (blank queries give empty rows)."""
        texts = _as_texts(texts)
        if self.query_mode == "idf":
            return self._query.encode(texts)
        return self._encode(self._query, texts, self.query_max_length, self.query_top_k)

    def _encode(self, side: _MLMSide, texts: list[str], max_length: int, top_k: int | None,
                on_batch=None) -> sp.csr_matrix:
        if len(texts) <= _TEXT_CHUNK:
            return side.encode(texts, max_length, top_k, self.batch_size, on_batch)
        parts = [side.encode(texts[s:s + _TEXT_CHUNK], max_length, top_k, self.batch_size, on_batch)
                 for s in range(0, len(texts), _TEXT_CHUNK)]
        return sp.vstack(parts, format="csr", dtype=np.float32)

    # -- inference-free queries -------------------------------------------------------------------------
    def fit_idf_queries(self, df: np.ndarray, num_docs: int, formula: str = "log") -> IDFQueryEncoder:
        """Switch to inference-free queries: IDF weights from document frequencies over the corpus."""
        if self._doc is None:
            raise HeronError("fitting IDF query weights needs the document model's tokenizer")
        df = np.asarray(df)
        if len(df) != self.vocab_size:
            raise ValueError(f"df has {len(df)} entries, the vocabulary {self.vocab_size}")
        idf = IDFQueryEncoder.fit(self._doc.tokenizer, df, num_docs, formula=formula,
                                  max_length=self.query_max_length, lowercase=self._doc.lowercase,
                                  top_k=self.query_top_k)
        self._query, self.query_mode, self.query_model_name = idf, "idf", None
        return idf

    # -- description and persistence -------------------------------------------------------------------
    def describe(self) -> dict:
        """JSON-able parameters that determine the vectors (recorded with shards and indexes)."""
        info = {
            "type": "splade",
            "doc_model": self.doc_model_name,
            "query_model": self.query_model_name,
            "query_mode": self.query_mode,
            "doc_max_length": self.doc_max_length,
            "query_max_length": self.query_max_length,
            "doc_top_k": self.doc_top_k,
            "query_top_k": self.query_top_k,
            "pooling": self.pooling,
            "activation": self.activation,
            "lowercase": self.lowercase,
            "vocab_size": self.vocab_size,
            "fp16": self.fp16,
        }
        if self.query_mode == "idf":
            info["idf"] = self._query.describe()
        return info

    def save(self, directory: str | Path, include_documents: bool = False) -> Path:
        """Write what encodes queries into ``directory`` (an index's ``encoder/``).

        Shared model: the model files (``model/``), so documents can be encoded too. Separate query
        model: ``query/`` (plus ``documents/`` with ``include_documents``). Inference-free: tokenizer and
        IDF weights in ``query/``. The settings go to ``heron_encoder.json``.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        layout: dict[str, str | None] = {"model": None, "query": None, "documents": None}
        if self.query_mode == "shared":
            self._doc.copy_to(directory / "model")
            layout["model"] = "model"
        elif self.query_mode == "model":
            self._query.copy_to(directory / "query")
            layout["query"] = "query"
        else:
            self._query.save(directory / "query")
            layout["query"] = "query"
        if include_documents and self.query_mode != "shared":
            if self._doc is None:
                raise HeronError("this encoder has no document model to save")
            self._doc.copy_to(directory / "documents")
            layout["documents"] = "documents"
        write_encoder_config(directory, self.describe(), layout)
        return directory

    @classmethod
    def load(cls, directory: str | Path, *, device: str | None = "auto", fp16: bool | None = None,
             threads: int | None = None, batch_size: int = 32) -> SpladeEncoder:
        """Reopen an encoder written by :meth:`save` (runtime settings may differ from the saved ones)."""
        directory = Path(directory)
        config = read_encoder_config(directory, "splade", "SPLADE")
        info, layout = config["encoder"], config["layout"]
        doc_dir = layout.get("model") or layout.get("documents")
        doc_model = directory / doc_dir if doc_dir else None
        query_model: Path | IDFQueryEncoder | None = None
        if info["query_mode"] == "idf":
            query_model = IDFQueryEncoder.load(directory / layout["query"])
        elif info["query_mode"] == "model":
            query_model = directory / layout["query"]
        enc = cls(doc_model, query_model, doc_max_length=info.get("doc_max_length") if doc_model else None,
                  query_max_length=info.get("query_max_length"), batch_size=batch_size, threads=threads,
                  device=device, fp16=fp16, doc_top_k=info.get("doc_top_k"), query_top_k=info.get("query_top_k"),
                  pooling=info.get("pooling"), activation=info.get("activation"),
                  lowercase=info.get("lowercase"))
        if doc_model is None:
            enc.doc_max_length = info.get("doc_max_length")
        enc.doc_model_name, enc.query_model_name = info.get("doc_model"), info.get("query_model")
        return enc


def _saved_idf_query_side(doc_model) -> IDFQueryEncoder | None:
    """The IDF query encoder a ``heron train splade --inference-free`` checkpoint keeps in ``query/``."""
    if doc_model is None:
        return None
    folder = Path(str(doc_model)).expanduser()
    if not (folder / ENCODER_CONFIG).is_file():
        return None
    config = read_encoder_config(folder, "splade", "SPLADE")
    query_dir = config["layout"].get("query")
    if config["encoder"].get("query_mode") != "idf" or not query_dir:
        return None
    return IDFQueryEncoder.load(folder / query_dir)


# -- streaming to shards ---------------------------------------------------------------------------------
def _written_ids(writer) -> Iterator[str]:
    for shard in writer.manifest["shards"]:
        with np.load(writer.directory / shard["file"], allow_pickle=False) as arrays:
            yield from arrays["doc_ids"].tolist()


def encode_to_shards(encoder: SpladeEncoder, docs: Iterable[tuple[str, str]], writer, *,
                     chunk_size: int = 4096, progress: bool = True, close: bool = True,
                     total: int | None = None) -> dict:
    """Encode ``(doc_id, text)`` pairs chunk by chunk into a :class:`~heron.indexing.shards.SparseShardWriter`.

    ``writer`` may also be a directory: it is then opened with ``SparseShardWriter.resume`` (vocabulary
    size and ``encoder.describe()`` as metadata). Documents the writer already holds (after a resume)
    are skipped, after checking that their ids match the ones on disk. Memory stays bounded by one
    chunk. ``close=True`` marks the shards complete at the end. ``total``: the number of documents, for the
    progress bar (default ``len(docs)`` when it has one); the bar advances with every encoder batch. Returns counts:
    ``{"num_docs", "written", "skipped", "nnz"}``.
    """
    from heron.indexing.shards import SparseShardWriter

    if isinstance(writer, (str, Path)):
        writer = SparseShardWriter.resume(writer, encoder.vocab_size, meta=encoder.describe())
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    skip = int(writer.num_docs)
    if total is None and hasattr(docs, "__len__"):
        total = len(docs)
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="doc", desc="SPLADE encoding", disable=not progress, dynamic_ncols=True,
               mininterval=1.0)
    stream = iter(docs)
    written = nnz = 0
    try:
        if skip:
            stored = _written_ids(writer)
            for position in range(skip):
                try:
                    doc_id, _ = next(stream)
                except StopIteration:
                    raise HeronError(f"{writer.directory}: holds {skip} documents but the input has only "
                                     f"{position}; use a new output directory") from None
                if str(doc_id) != next(stored):
                    raise HeronError(f"{writer.directory}: document {position} on disk is not {doc_id!r}: the "
                                     f"input changed since these shards were written; use a new output directory")
            bar.update(skip)
        ids: list[str] = []
        texts: list[str] = []

        def flush() -> None:
            nonlocal written, nnz
            matrix = encoder.encode_documents(texts, on_batch=bar.update)  # the bar moves with every batch
            writer.add(ids, matrix)
            written += len(ids)
            nnz += int(matrix.nnz)
            ids.clear()
            texts.clear()

        for doc_id, text in stream:
            ids.append(str(doc_id))
            texts.append(text)
            if len(ids) >= chunk_size:
                flush()
        if ids:
            flush()
        if close:
            writer.close()
    finally:
        bar.close()
    return {"num_docs": int(writer.num_docs), "written": written, "skipped": skip, "nnz": nnz}
