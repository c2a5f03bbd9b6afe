"""The server's write endpoints, and how served indexes follow new commits.

Routes (each write is one commit, made on the server's one write thread, so writes are serialised):

* ``POST /v1/indexes/{name}/documents`` — ``{"documents": [{"_id", "title", "text"}, …]}``: upsert the batch
  (new ids are added, ids already in the index replaced), encoded with the index's own encoders;
* ``POST /v1/indexes/{name}/delete`` — ``{"ids": [...]}``: delete these documents (unknown ids are counted
  in ``not_found``, not an error). POST with a body rather than DELETE: DELETE bodies are unreliable
  across HTTP clients and proxies.

Both answer ``{"index", "generation", "upserted"|"deleted", "not_found"?, "live_docs", "took_ms"}`` once
the commit is published and this server searches it.

**Disabled unless the server has an API key** (``heron serve --api-key`` / ``HERON_API_KEY``): without
one they answer 403 (``writes_disabled``) whatever the request; with one, the server's key is required
as on every route (401 without a key, 403 with a wrong one, :mod:`heron.server.guard`). A body that the
schema allows but that is no valid document batch (an id with white space, a duplicate id in the batch,
text that is not UTF-8) gets 400; an unknown index 404; an index another process is writing to (``heron
index add`` holding its lock) 409 with ``Retry-After``; more than ``max_queue`` writes waiting 429.

Searches keep being answered during writes and merges (readers never wait for a writer,
:mod:`heron.indexing.segments`) and switch to the new commit without a restart: a write refreshes the
served :class:`heron.Index` as it commits, and a background thread (:class:`CommitWatcher`) checks each
served index's latest generation every ``refresh_s`` seconds (one directory listing), so commits made by
another process (``heron index add`` on the same directory) are picked up too — including the first,
which converts a classic index to a segmented one.
"""

# no `from __future__ import annotations`: the endpoints' body types are local classes FastAPI must see
import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

from fastapi import FastAPI
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from heron.api import Index, IndexBusy
from heron.errors import HeronError, IntegrityError, NotFoundError, QueryError
from heron.server.scheduler import Lane

logger = logging.getLogger("heron.server")

DocId = Annotated[str, StringConstraints(min_length=1, max_length=512)]


class WritesDisabled(Exception):
    """A write on a server without an API key: 403."""


class DocumentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=False)

    id: DocId = Field(alias="_id", description="document id (no white space)")
    title: Annotated[str, StringConstraints(max_length=100_000)] = ""
    text: Annotated[str, StringConstraints(max_length=1_000_000)] = ""


def write_models(max_docs: int) -> tuple[type[BaseModel], type[BaseModel]]:
    class UpsertRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)

        documents: Annotated[list[DocumentIn], Field(min_length=1, max_length=max_docs)] = Field(
            description="documents to add; an id already in the index is replaced")

    class DeleteRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)

        ids: Annotated[list[DocId], Field(min_length=1, max_length=max_docs)] = Field(
            description="ids of the documents to delete")

    return UpsertRequest, DeleteRequest


class WriteResponse(BaseModel):
    index: str
    generation: int
    upserted: int | None = None
    deleted: int | None = None
    not_found: int | None = None
    live_docs: int
    took_ms: float


class WriteLane:
    """One thread for every write of the server (serialised), at most ``max_queue`` waiting (429 beyond)."""

    def __init__(self, max_queue: int):
        self.lane = Lane("write", 1, max_queue)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="heron-write")

    async def run(self, fn):
        await self.lane.acquire(time.monotonic() + 24 * 3600)  # a write waits its turn; the queue is bounded
        future = self.pool.submit(fn)
        try:  # a write that started completes, even if its client goes away
            return await asyncio.shield(asyncio.wrap_future(future))
        finally:
            if future.done():
                self.lane.release()
            else:
                loop = asyncio.get_running_loop()
                future.add_done_callback(lambda _f: loop.call_soon_threadsafe(self.lane.release))

    def shutdown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


#: the answers of the write routes besides 200 (documented in the OpenAPI spec)
WRITE_ERRORS = {
    400: "not a valid document batch (an id with white space, a duplicate id, text that is not UTF-8)",
    403: "writes are disabled (the server was started without an API key), or a wrong API key",
    404: "unknown index",
    409: "another process is writing to this index; retry after Retry-After seconds",
    413: "request body over the size limit",
    422: "a body that cannot be parsed (not JSON, not UTF-8) or does not match the schema",
    429: "too many writes waiting; retry after Retry-After seconds",
}
_RETRY = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}


def add_write_routes(app: FastAPI, indexes: dict[str, Index], enabled: bool, max_docs: int, max_queue: int,
                     on_commit=None, error_model=None) -> WriteLane:
    """Register the write routes on ``app`` (see the module docstring); ``on_commit(name)`` runs after each.
    ``error_model``: the pydantic model of the server's error bodies (for the OpenAPI spec)."""
    UpsertRequest, DeleteRequest = write_models(max_docs)
    lane = WriteLane(max_queue)
    content = {"model": error_model} if error_model is not None else {}
    responses = {status: {**content, "description": text, **({"headers": _RETRY} if status in (409, 429) else {})}
                 for status, text in WRITE_ERRORS.items()}
    IndexName = Annotated[str, PathParam(min_length=1, max_length=200, description="index name (GET /v1/indexes)")]

    @app.exception_handler(IndexBusy)
    async def _busy(request, exc: IndexBusy):
        from heron.server.guard import error_response

        return error_response(409, "index_busy", "another writer holds this index's lock; retry later",
                              {"Retry-After": "1"})

    def served(name: str) -> Index:
        if not enabled:
            raise WritesDisabled()
        if name not in indexes:
            raise NotFoundError(f"unknown index {name!r} (this server has: {', '.join(indexes)})")
        return indexes[name]

    def write(name: str, index: Index, change) -> dict:
        started = time.perf_counter()
        try:
            counts = change(index)
            generation = index.commit()
        except (QueryError, IntegrityError, IndexBusy):
            index.rollback()
            raise
        except HeronError as exc:  # the request's documents (ids, text) or a write the index refuses
            index.rollback()
            raise QueryError(str(exc)) from None
        except BaseException:
            index.rollback()
            raise
        if on_commit is not None:
            on_commit(name)
        return {"index": name, "generation": generation, **counts, "live_docs": index.snapshot.num_docs,
                "took_ms": round((time.perf_counter() - started) * 1000, 3)}

    @app.post("/v1/indexes/{name}/documents", response_model=WriteResponse, response_model_exclude_none=True,
              summary="Upsert a batch of documents (one commit; needs the server's API key)", responses=responses)
    async def upsert(name: IndexName, req: UpsertRequest) -> Response:
        index = served(name)
        docs = [{"_id": d.id, "title": d.title, "text": d.text} for d in req.documents]
        body = await lane.run(lambda: write(name, index, lambda ix: {"upserted": ix.upsert(docs)}))
        return _json(body)

    @app.post("/v1/indexes/{name}/delete", response_model=WriteResponse, response_model_exclude_none=True,
              summary="Delete documents by id (one commit; needs the server's API key)", responses=responses)
    async def delete(name: IndexName, req: DeleteRequest) -> Response:
        index = served(name)
        ids = list(dict.fromkeys(req.ids))

        def change(ix):
            deleted = ix.delete(ids)
            return {"deleted": deleted, "not_found": len(ids) - deleted}

        return _json(await lane.run(lambda: write(name, index, change)))

    app.router.on_shutdown.append(lane.shutdown)
    return lane


def _json(body: dict) -> Response:
    import json

    return Response(content=json.dumps(body), media_type="application/json")


class CommitWatcher:
    """A daemon thread that refreshes each served index when another commit appears (every ``interval``
    seconds: one listing of the index directory while nothing changed), then opens its members so the first
    search on the new commit pays nothing. ``on_change(name)`` runs after each switch."""

    def __init__(self, indexes: dict[str, Index], interval: float = 1.0, on_change=None):
        self.indexes, self.interval, self.on_change = indexes, interval, on_change
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="heron-commits", daemon=True)

    def start(self) -> "CommitWatcher":
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def check(self) -> list[str]:
        """Refresh every index that has a newer commit now; the names of those that changed."""
        changed = []
        for name, index in self.indexes.items():
            try:
                if index.refresh():
                    for member in index.members:
                        index.retriever(member)
                    changed.append(name)
            except Exception as exc:  # a torn or damaged commit: keep serving the one we have
                logger.warning("index %s: cannot refresh to the latest commit: %s", name, exc)
        for name in changed:
            if self.on_change is not None:
                self.on_change(name)
        return changed

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()


def verify_served(path) -> None:
    """Full verification of a served member's files: every segment of a segmented index's commit, or the
    classic index / bundle."""
    from heron.indexing.milvus_index import is_cached_encoder, verify_cached_encoder
    from heron.indexing.segments import SegmentedIndex, is_segmented

    if is_cached_encoder(path):  # a Milvus member: its cached query encoder (Milvus keeps the vectors)
        verify_cached_encoder(path)
        return
    if is_segmented(path):
        SegmentedIndex.open(path, verify=True)
        return
    from heron.server.health import verify_member

    verify_member(path)


__all__ = ["CommitWatcher", "WriteLane", "WritesDisabled", "add_write_routes", "verify_served", "write_models"]
