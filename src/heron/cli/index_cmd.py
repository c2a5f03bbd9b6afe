"""``heron build-index`` and ``heron query``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from heron.errors import HeronError

console = Console()


def build_index_command(
    config: Annotated[Path | None, typer.Argument(help="YAML config (see configs/); flags override its fields.")]
    = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="BEIR name or dataset folder.")] = None,
    encoder: Annotated[str | None, typer.Option(help="Encoder type: splade, bm25, dense or csr.")] = None,
    model: Annotated[str | None, typer.Option(help="splade / dense: alias, HF id or folder; csr: a checkpoint "
                                              "folder from heron train csr.")] = None,
    query_model: Annotated[str | None, typer.Option(help="Separate SPLADE query model.")] = None,
    query_mode: Annotated[str | None, typer.Option(help="model, or idf for inference-free queries.")] = None,
    doc_max_length: Annotated[int | None, typer.Option(help="Document max tokens.")] = None,
    doc_top_k: Annotated[int | None, typer.Option(help="Keep the k largest weights per document.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Encoding batch size.")] = None,
    threads: Annotated[int | None, typer.Option(help="Torch threads for encoding.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Index directory to write.")] = None,
    quantization: Annotated[str | None, typer.Option(help="Impact type: uint8 or uint16.")] = None,
    approx: Annotated[bool | None, typer.Option("--approx/--no-approx",
                                                help="Add the approximate-search structures.")] = None,
    faiss: Annotated[str | None, typer.Option(help="dense: FAISS type (flat, hnsw, ivf-flat, ivf-pq, sq8).")] = None,
    k: Annotated[int | None, typer.Option("--k", help="csr: active latents per vector (default: the "
                                          "checkpoint's).")] = None,
    crisp: Annotated[str | None, typer.Option(help="multivector: post-hoc CRISP clustering (C4x8, C8x32, C25, "
                                              "C50).")] = None,
    muvera: Annotated[bool | None, typer.Option("--muvera/--no-muvera", help="multivector: add MUVERA FDEs "
                                                "(R 20, k_sim 5, d_proj 16) in FAISS for candidate generation.")]
    = None,
    from_index: Annotated[Path | None, typer.Option(help="Rebuild from this index's stored vectors (no "
                                                    "re-encoding), e.g. to add --approx.")] = None,
) -> None:
    """Encode a dataset's corpus and build heron's inverted index (atomic, resumable).

    Examples:
      heron build-index configs/scifact-splade-tiny.yaml
      heron build-index --dataset scifact --encoder bm25 --output indexes/scifact-bm25
      heron build-index --from-index indexes/scifact-bm25 --approx --output indexes/scifact-bm25-approx
      heron build-index --dataset scifact --encoder dense --model minilm --faiss hnsw -o indexes/scifact-minilm-hnsw
      heron build-index --dataset scifact --encoder csr --model checkpoints/scifact-csr-k32 -o indexes/scifact-csr
      heron build-index --dataset scifact --encoder multivector --model checkpoints/scifact-colbert --muvera \
          -o indexes/scifact-colbert-muvera
    """
    from heron.indexing.build import build_index, load_config, make_config, reindex

    if from_index is not None:
        if output is None:
            raise HeronError("--from-index needs --output")
        if not from_index.is_dir():
            raise HeronError(f"{from_index}: index directory does not exist")
        path = reindex(from_index, output, approx={} if approx else None)
        console.print(f"index ready: {path}", soft_wrap=True)
        return

    encoder_fields = {"type": encoder, "model": model, "query_model": query_model, "query_mode": query_mode,
                      "doc_max_length": doc_max_length, "doc_top_k": doc_top_k, "batch_size": batch_size,
                      "threads": threads, "k": k}
    top = {"dataset": dataset, "output": output, "quantization": quantization}
    if approx is not None:
        top["approx"] = {} if approx else None
    if faiss is not None:
        top["faiss"] = {"type": faiss}
    if crisp is not None or muvera is not None:
        top["multivector"] = {"crisp": crisp, "muvera": {} if muvera else None}
    if config is not None:
        cfg = load_config(config, encoder=encoder_fields, **top)
        if approx is False:
            cfg = cfg.model_copy(update={"approx": None})
    else:
        if dataset is None or output is None:
            raise HeronError("build-index needs a config file, or --dataset and --output")
        raw = {k: v for k, v in top.items() if v is not None or k == "approx"}
        raw["encoder"] = {k: v for k, v in encoder_fields.items() if v is not None}
        cfg = make_config(raw)
    path = build_index(cfg)
    console.print(f"index ready: {path}", soft_wrap=True)


def query_command(
    text: Annotated[str, typer.Argument(help="The query text.")],
    index: Annotated[Path, typer.Option("--index", "-i", help="Index directory (from heron build-index).")],
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=10000, help="Results to show.")] = 10,
    mode: Annotated[str, typer.Option(help="exact, taat or approx.")] = "exact",
    preset: Annotated[str | None, typer.Option(help="Approximate preset (with --mode approx).")] = None,
    query_cut: Annotated[int | None, typer.Option(help="Approximate: query terms kept.")] = None,
    heap_factor: Annotated[float | None, typer.Option(help="Approximate: block skip factor (0, 1].")] = None,
    candidates: Annotated[int | None, typer.Option(help="Multi-vector: MUVERA candidates reranked by MaxSim "
                                                   "(default: brute force).")] = None,
) -> None:
    """Search an index and print the top-k documents with their titles.

    Example: heron query --index indexes/scifact-splade-tiny "does coffee cause cancer"
    """
    from heron.indexing.docstore import DocStore
    from heron.retrieval import open_index_retriever

    if not text.strip():
        raise HeronError("the query is empty; give some text to search for")
    retriever = open_index_retriever(index, mode=None if mode == "exact" else mode, preset=preset,
                                     query_cut=query_cut, heap_factor=heap_factor, candidates=candidates)
    (ids, scores), = retriever.search([text], k=k)
    store = DocStore(retriever.index.docstore_dir) if retriever.index.docstore_dir else None
    table = Table(title=f"{text!r} — {retriever.name}, {mode}")
    table.add_column("rank", justify="right")
    table.add_column("doc id")
    table.add_column("score", justify="right")
    table.add_column("title / text")
    for rank, (doc_id, score) in enumerate(zip(ids, scores), start=1):
        shown = ""
        if store is not None:
            row = store.get(retriever.index.doc_index(doc_id))
            shown = row["title"] or row["text"][:100]
        table.add_row(str(rank), doc_id, f"{score:.3f}", shown)
    console.print(table)
    if not ids:
        console.print("no results: the query encodes to no term the index knows")
