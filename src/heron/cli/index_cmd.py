"""``heron build-index``, ``heron query``, ``heron index check`` (and ``heron index add|delete|merge|info``,
:mod:`heron.cli.lifecycle_cmd`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from heron.cli import lifecycle_cmd
from heron.cli.options import SEARCH_HELP, checked_flags, parse_search, refuse_unused, with_search_keys
from heron.errors import HeronError

console = Console()
err_console = Console(stderr=True)

index_app = typer.Typer(help="Look after built indexes and bundles.", no_args_is_help=True)
lifecycle_cmd.register(index_app)  # add, delete, merge, info


@index_app.command("check")
def check_command(
    paths: Annotated[list[Path], typer.Argument(help="Index or bundle directories.")],
) -> None:
    """Verify every byte of every file of indexes and bundles against their manifests.

    Each file is hashed (xxh3) and compared with what its manifest recorded
    when the index was built, as are the manifests themselves. Prints one
    line per index checked, and one line per damaged file naming it; exits
    with 1 when any file is damaged (2 when a path is not an index at all).

    Examples:
      heron index check indexes/scifact-bundle
      heron index check indexes/scifact-bm25 indexes/scifact-minilm-hnsw
    """
    import time

    damaged = 0
    for path in paths:
        started = time.monotonic()
        problems = _problems(path)
        seconds = time.monotonic() - started
        for problem in problems:
            err_console.print(f"[bold red]damaged:[/] {problem}", highlight=False, soft_wrap=True)
        if problems:
            damaged += 1
            console.print(f"{path}: {len(problems)} damaged file(s); rebuild or restore it", soft_wrap=True,
                          highlight=False)
        else:
            size = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
            console.print(f"{path}: ok ({size / 1e6:,.1f} MB verified in {seconds:.2f} s)", soft_wrap=True,
                          highlight=False)
    if damaged:
        raise typer.Exit(1)


def _problems(path: Path) -> list:
    """Every damaged file of a classic index or bundle, or of a segmented index's latest commit (the commit
    point and live bitmaps, then every segment's files hashed in full)."""
    from heron.errors import IntegrityError
    from heron.indexing.registry import index_problems
    from heron.indexing.segments import SegmentedIndex, is_segmented

    if not is_segmented(path):
        return index_problems(path)
    try:
        snapshot = SegmentedIndex.open(path)
    except IntegrityError as exc:
        return [exc]
    return [problem for seg in snapshot.segments for problem in index_problems(Path(path) / "segments" / seg["name"])]


def build_index_command(
    config: Annotated[Path | None, typer.Argument(help="YAML config (see configs/); flags override its fields.")]
    = None,
    config_option: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config: one index, or a "
                                                       "bundle (indexes: …) built stage by stage.")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="BEIR name or dataset folder.")] = None,
    encoder: Annotated[str | None, typer.Option(help="Encoder type: splade, bm25, csr (inverted index), dense "
                                                "(FAISS) or multivector.")] = None,
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
    faiss: Annotated[str | None, typer.Option(
        help="dense, or multivector --muvera (its FDE index): FAISS type (flat, hnsw, ivf-flat, ivf-pq, "
             "sq8).")] = None,
    k: Annotated[int | None, typer.Option("--k", help="csr: active latents per vector (default: the "
                                          "checkpoint's).")] = None,
    crisp: Annotated[str | None, typer.Option(help="multivector: post-hoc CRISP clustering (C4x8, C8x32, C25, "
                                              "C50).")] = None,
    muvera: Annotated[bool | None, typer.Option("--muvera/--no-muvera", help="multivector: add MUVERA FDEs "
                                                "(R 20, k_sim 5, d_proj 16) in FAISS for candidate generation.")]
    = None,
    from_index: Annotated[Path | None, typer.Option(help="Rebuild from this index's stored vectors (no "
                                                    "re-encoding), e.g. to add --approx.")] = None,
    ray: Annotated[bool | None, typer.Option("--ray/--no-ray", help="Encode on a Ray cluster (a local one "
                                             "unless --ray-address) into a segmented index; splade and dense.")]
    = None,
    ray_address: Annotated[str | None, typer.Option(help="HOST:PORT of a running Ray cluster's head node "
                                                    "(implies --ray).")] = None,
    ray_workers: Annotated[int | None, typer.Option(min=1, help="Ray encoder actors (default: one per GPU, else "
                                                    "per CPU).")] = None,
) -> None:
    """Encode a dataset's corpus and build an index, or a bundle of indexes (atomic, resumable).

    By encoder: splade, bm25 and csr build heron's inverted index (--approx
    adds the approximate-search structures); dense builds a FAISS index
    (--faiss); multivector builds a multi-vector token store (--crisp, and
    --muvera for MUVERA FDEs in FAISS). A bundle config (indexes: …) builds
    several indexes of one corpus into one directory, which heron query and
    heron serve open.

    Examples:
      heron build-index configs/scifact-splade-tiny.yaml
      heron build-index configs/scifact-bundle.yaml
      heron build-index -d scifact --encoder bm25 -o indexes/scifact-bm25
      heron build-index --from-index indexes/scifact-bm25 --approx \\
          -o indexes/scifact-bm25-approx
      heron build-index -d scifact --encoder dense --model minilm \\
          --faiss hnsw -o indexes/scifact-minilm-hnsw
      heron build-index -d scifact --encoder csr \\
          --model checkpoints/scifact-csr-k32 -o indexes/scifact-csr
      heron build-index -d scifact --encoder multivector \\
          --model checkpoints/scifact-colbert --muvera \\
          -o indexes/scifact-colbert-muvera
      heron build-index configs/scifact-splade-tiny.yaml --ray
      heron build-index configs/scifact-splade-tiny.yaml \\
          --ray-address 10.0.0.5:6379 --ray-workers 16
    """
    from heron.build import build_index, load_config, make_config, reindex
    from heron.models import quiet_model_loading

    quiet_model_loading()  # the encoders' bars say what is happening; no per-tensor bar from transformers
    if config is not None and config_option is not None:
        raise HeronError("give the config once: as the argument or with --config")
    config = config or config_option
    from heron.build import is_bundle_config, read_config_file

    raw = read_config_file(config) if config is not None else None
    if raw is not None and is_bundle_config(raw):
        _build_bundle(config, raw, dataset=dataset, output=output,
                      flags={"encoder": encoder, "model": model, "query_model": query_model, "query_mode": query_mode,
                             "doc_max_length": doc_max_length, "doc_top_k": doc_top_k, "batch_size": batch_size,
                             "threads": threads, "quantization": quantization, "approx": approx, "faiss": faiss,
                             "k": k, "crisp": crisp, "muvera": muvera, "from_index": from_index, "ray": ray,
                             "ray_address": ray_address, "ray_workers": ray_workers})
        return

    if from_index is not None:
        if ray or ray_address is not None or ray_workers is not None:
            raise HeronError("--from-index re-uses stored vectors (nothing to encode); leave out --ray")
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
    if ray_address is not None or ray_workers is not None or ray:
        if ray is False:
            raise HeronError("--no-ray contradicts --ray-address / --ray-workers")
        top["ray"] = {"address": ray_address, "workers": ray_workers}
    if config is not None:
        cfg = load_config(config, raw, encoder=encoder_fields, **top)
        if approx is False:
            cfg = cfg.model_copy(update={"approx": None})
        if ray is False:
            cfg = cfg.model_copy(update={"ray": None})
    else:
        if dataset is None or output is None:
            raise HeronError("build-index needs a config file, or --dataset and --output")
        raw = {k: v for k, v in top.items() if v is not None or k == "approx"}
        raw["encoder"] = {k: v for k, v in encoder_fields.items() if v is not None}
        cfg = make_config(raw)
    path = build_index(cfg)
    console.print(f"index ready: {path}", soft_wrap=True)


def _build_bundle(path: Path, raw: dict, dataset: str | None, output: Path | None, flags: dict) -> None:
    from heron.build import build_bundle, load_bundle_config

    given = sorted(name.replace("_", "-") for name, value in flags.items() if value is not None)
    if given:
        raise HeronError(f"{path}: a bundle config sets each member in its file; --{', --'.join(given)} "
                         f"apply to single-index builds (only --dataset and --output override a bundle)")
    cfg = load_bundle_config(path, raw, dataset=dataset, output=output)
    out = build_bundle(cfg, log=lambda line: console.print(line, highlight=False, soft_wrap=True))
    console.print(f"bundle ready: {out} ({', '.join(cfg.indexes)})", soft_wrap=True)


def _snippet(text: str, limit: int = 300) -> str:
    """The start of a document with no title: ``limit`` characters, cut at a word, ``…`` when shortened."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " …"


@with_search_keys
def query_command(
    text: Annotated[str, typer.Argument(help="The query text.")],
    index: Annotated[str, typer.Option("--index", "-i", metavar="DIR|URI", help="Index or bundle "
                                       "directory (from heron build-index), or the milvus:// address of an "
                                       "exported one (heron export milvus).")],
    k: Annotated[int, typer.Option("--k", "-k", min=1, max=1000, help="Results to show.")] = 10,
    retriever: Annotated[str | None, typer.Option("--retriever", "-r", help="Bundle member, or members joined "
                                                  "by '+' (fused); default: the bundle's default.")] = None,
    fusion: Annotated[str | None, typer.Option(help="Fusion of a '+' retriever: rrf or linear (default: the "
                                               "bundle's).")] = None,
    prf: Annotated[str | None, typer.Option(help="Pseudo-relevance feedback: rocchio, average or model:PATH.")]
    = None,
    search: Annotated[list[str] | None, typer.Option("--search", "-s", metavar="KEY=VALUE",
                                                     help=SEARCH_HELP)]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the hits as JSON (as the HTTP server "
                                          "returns them).")] = False,
) -> None:
    """Search an index or bundle and print the top-k documents with their titles.

    {search_keys}
    Given here, it replaces the searched member's own options (a new mode
    drops the member's approx keys too); name one member, not a fusion.

    Examples:
      heron query -i indexes/scifact-splade-tiny "does coffee cause cancer"
      heron query -i indexes/scifact-bundle -r splade+dense "coffee and cancer"
      heron query -i indexes/scifact-splade-tiny -s mode=approx,preset=recall99 \\
          "does coffee cause cancer"
      heron query -i milvus:///data/heron.db/scifact -r splade+dense "coffee"
    """
    import json

    from heron.api import Index

    if not text.strip():
        raise HeronError("the query is empty; give some text to search for")
    from heron.models import quiet_model_loading

    quiet_model_loading()
    opened = Index.open(index)
    options = parse_search(search)
    names = opened.parse_retriever(retriever)
    if len(names) == 1:
        refuse_unused({"--fusion": fusion}, f"to a fused retriever (members joined by '+'); {names[0]} is one index")
    elif fusion is not None:
        from heron.retrieval.options import FusionOptions

        checked_flags(FusionOptions, method=("--fusion", fusion))
    if options:
        from heron.retrieval.options import APPROX_KEYS

        if len(names) != 1:
            raise HeronError(f"--search {', '.join(options)}: name one retriever, not a fusion")
        stored = opened.members[names[0]].search
        if "mode" in options:  # a new mode replaces the member's stored mode and its approximate knobs
            for key in ("mode", *APPROX_KEYS):
                stored.pop(key, None)
        stored.update(options)
    hits = opened.search(text, k=k, retriever=retriever, fusion=fusion, prf=prf, fields=True)
    if as_json:
        print(json.dumps({"query": text, "retriever": retriever or opened.default,
                          "hits": [h.to_dict() for h in hits]}, ensure_ascii=False))
        return
    table = Table(title=f"{text!r} — {retriever or opened.default}")
    table.add_column("rank", justify="right")
    table.add_column("doc id")
    table.add_column("score", justify="right")
    table.add_column("title / text")
    for hit in hits:
        table.add_row(str(hit.rank), Text(hit.doc_id), f"{hit.score:.3f}", Text(hit.title or _snippet(hit.text or "")))
    console.print(table)
    if not hits:
        console.print("no results: the query encodes to no term the index knows")
