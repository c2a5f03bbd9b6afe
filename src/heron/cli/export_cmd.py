"""``heron export milvus INDEX --uri URI --collection NAME``: serve a heron index or bundle from Milvus
(:mod:`heron.build.export_milvus`); ``--sync`` brings the collection to the index's latest commit after
``heron index add / delete``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(stderr=True)
app = typer.Typer(no_args_is_help=True, help="Export an index to a serving backend (Milvus).")


@app.command("milvus")
def milvus_command(
    index: Annotated[Path, typer.Argument(help="Index or bundle directory (from heron build-index).")],
    uri: Annotated[str, typer.Option(help="Milvus: http(s)://HOST:PORT of a server or cluster, or a milvus-lite "
                                     "file ending in .db.")],
    collection: Annotated[str, typer.Option(help="Collection name (letters, digits, '_'); heron also writes "
                                            "NAME_heron beside it (metadata and query encoders).")],
    token: Annotated[str | None, typer.Option(envvar="HERON_MILVUS_TOKEN", show_envvar=True,
                                              help="Milvus token (USER:PASSWORD or an API key).")] = None,
    sync: Annotated[bool, typer.Option("--sync", help="Update an existing collection to the index's latest commit "
                                       "(documents added, replaced or deleted since).")] = False,
    fields: Annotated[bool, typer.Option("--fields", help="Also store each document's title and text.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Write the index's vectors into a Milvus collection (resumable: rerun
    after an interruption), then search it with heron query, eval or serve
    --index milvus://ADDRESS.

    Examples:
      heron export milvus indexes/scifact --uri /data/h.db --collection scifact
      heron query -i milvus:///data/h.db/scifact "coffee and cancer"
      heron export milvus indexes/scifact --uri http://milvus:19530 \
          --collection scifact --sync
    """
    from heron.build.export_milvus import export_milvus
    from heron.indexing.milvus_store import address_for

    address = address_for(uri, collection)
    summary = export_milvus(index, address, token=token, fields=fields, sync=sync, progress=progress,
                            log=lambda message: console.print(message, highlight=False))
    console.print(f"{summary['address']}: {summary['documents']} documents ({summary['sent']} sent, "
                  f"{summary['deleted']} deleted) in {summary['seconds']:.1f} s (documents: "
                  f"{summary['documents_seconds']:.1f} s)", highlight=False)
    print(summary["address"])
