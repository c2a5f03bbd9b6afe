"""The HTTP query server (FastAPI): ``heron serve --index DIR [--index NAME=DIR …]``.

Routes: ``POST /v1/search``, ``POST /v1/search/batch``, ``GET /v1/indexes``, ``GET /healthz``,
``GET /metrics`` (Prometheus text), OpenAPI docs at ``/docs`` (spec at ``/openapi.json``).

Every index (and its query encoders) is opened when the app is created, before the first request.
Searches are CPU-bound: they run on a thread pool, off the event loop, each under a timeout. Client
mistakes get a 4xx with a JSON body ``{"error": {"type", "message"}}``: 422 for a body that is not valid
JSON or does not match the schema (wrong types, empty or oversized query, k out of range), 400 for a
request the schema allows but the index cannot answer (a vector of the wrong dimension), 404 for an
unknown index or retriever, 413 for a body over the size limit.

Example::

    >>> from fastapi.testclient import TestClient                                   # doctest: +SKIP
    >>> app = create_app({"scifact": Index.open("indexes/scifact-bundle")})         # doctest: +SKIP
    >>> TestClient(app).post("/v1/search", json={"query": "coffee", "k": 3}).json()  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.exceptions import HTTPException as StarletteHTTPException

from heron.api import Index
from heron.errors import HeronError, NotFoundError, QueryError
from heron.server.metrics import Metrics

logger = logging.getLogger("heron.server")


class ServerSettings(BaseModel):
    """Limits and knobs of one server (``heron serve`` flags)."""

    max_query_chars: int = Field(2000, ge=1)
    max_k: int = Field(1000, ge=1, le=1000)
    max_batch: int = Field(64, ge=1)
    max_body_bytes: int = Field(1 << 20, ge=1024)
    max_allow: int = Field(10000, ge=1)
    timeout_s: float = Field(30.0, gt=0)
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    prf: str = Field("rocchio", description="the feedback method a request with prf=true gets")


Finite = Annotated[float, Field(allow_inf_nan=False)]
Component = Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)]
Term = Annotated[str, StringConstraints(min_length=1, max_length=200)]
DocId = Annotated[str, StringConstraints(min_length=1, max_length=512)]
Vector = (Annotated[dict[Term, Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]],
                    Field(min_length=1, max_length=10000)]
          | Annotated[list[Component], Field(min_length=1, max_length=8192)]
          | Annotated[list[Annotated[list[Component], Field(min_length=1, max_length=8192)]],
                      Field(min_length=1, max_length=512)])


class SearchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        None, description="index name (GET /v1/indexes); optional when the server has one")
    k: int = Field(10, ge=1, le=1000, description="results to return")
    retriever: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = Field(
        None, description="a member of the bundle, or members joined by '+' (fused); default: the bundle's")
    fusion: Literal["rrf", "linear"] | None = Field(None, description="fusion of a '+' retriever")
    fusion_weights: Annotated[list[Finite], Field(min_length=2, max_length=16)] | None = None
    prf: bool = Field(False, description="pseudo-relevance feedback (the server's configured method)")
    allow: Annotated[list[DocId], Field(max_length=10000)] | None = Field(
        None, description="rank only these document ids")
    fields: bool = Field(False, description="return each hit's title and text")


class SearchRequest(SearchOptions):
    query: Annotated[str, StringConstraints(min_length=1, max_length=100000)] | None = Field(
        None, description="query text (or give vector)")
    vector: Vector | None = Field(None, description="a precomputed query vector in one member's space: "
                                  "{term: weight} (sparse), [floats] (dense), [[floats], …] (multi-vector)")


class BatchRequest(SearchOptions):
    queries: Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=100000)]],
                       Field(min_length=1, max_length=1000)]


class HitModel(BaseModel):
    doc_id: str
    score: float
    rank: int
    title: str | None = None
    text: str | None = None


class SearchResponse(BaseModel):
    index: str
    retriever: str
    took_ms: float
    hits: list[HitModel]


class BatchResponse(BaseModel):
    index: str
    retriever: str
    took_ms: float
    results: list[list[HitModel]]


class ErrorBody(BaseModel):
    type: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


_ERRORS = {status: {"model": ErrorResponse} for status in (400, 404, 413, 422, 503)}


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"type": kind, "message": message}})


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 (declared or streamed)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _error(413, "too_large", f"request body over {self.limit} bytes")(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _BodyTooLarge:
            await _error(413, "too_large", f"request body over {self.limit} bytes")(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def create_app(indexes: dict[str, Index], settings: ServerSettings | None = None) -> FastAPI:
    """The app serving ``indexes`` (name → opened :class:`heron.Index`), every member loaded now."""
    settings = settings or ServerSettings()
    if not indexes:
        raise HeronError("serve needs at least one index")
    from heron.retrieval.prf import parse_prf

    parse_prf(settings.prf)  # a bad --prf fails at start, not on every request
    for index in indexes.values():
        index.load(prf=settings.prf).warm_up()
    pool = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="heron-search")
    metrics = Metrics()
    app = FastAPI(title="heron", version=_version(),
                  description="Learned sparse, dense and multi-vector retrieval over heron index bundles.")
    app.state.indexes, app.state.settings, app.state.metrics = indexes, settings, metrics

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        if first.get("type") == "json_invalid":
            where = f"body is not valid JSON (at character {loc[0]})" if loc else "body is not valid JSON"
            return _error(422, "invalid_json", f"{where}: {first.get('msg')}")
        return _error(422, "invalid_request", f"{'.'.join(loc) or 'body'}: {first.get('msg')}")

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: NotFoundError):
        return _error(404, "not_found", str(exc))

    @app.exception_handler(QueryError)
    async def _bad_query(request: Request, exc: QueryError):
        return _error(400, "bad_request", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        kind = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status_code, "bad_request")
        return _error(exc.status_code, kind, str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        logger.exception("internal error on %s", request.url.path)
        return _error(500, "internal", f"internal error ({type(exc).__name__}); see the server log")

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)  # inside _observe: its 413s are counted

    @app.middleware("http")
    async def _observe(request: Request, call_next):
        start = time.perf_counter()
        try:
            response = await call_next(request)
        except Exception:
            metrics.observe(_route_of(request), request.method, 500, time.perf_counter() - start)
            raise
        metrics.observe(_route_of(request), request.method, response.status_code, time.perf_counter() - start)
        return response

    def pick(name: str | None) -> tuple[str, Index]:
        if name is None:
            if len(indexes) == 1:
                return next(iter(indexes.items()))
            raise QueryError(f"this server has {len(indexes)} indexes; name one with \"index\" "
                             f"({', '.join(indexes)})")
        if name not in indexes:
            raise NotFoundError(f"unknown index {name!r} (this server has: {', '.join(indexes)})")
        return name, indexes[name]

    def check(req: SearchOptions, texts: list[str]) -> None:
        if req.k > settings.max_k:
            raise QueryError(f"k={req.k} is over this server's limit of {settings.max_k}")
        if req.allow is not None and len(req.allow) > settings.max_allow:
            raise QueryError(f"allow lists {len(req.allow)} ids, over this server's limit of {settings.max_allow}")
        for i, text in enumerate(texts):
            if len(text) > settings.max_query_chars:
                raise QueryError(f"query {i}: {len(text)} characters, over this server's limit of "
                                 f"{settings.max_query_chars}")
            if not text.strip():
                raise QueryError(f"query {i}: only whitespace; give some text to search for")

    async def run(fn):
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(pool, fn), settings.timeout_s)
        except TimeoutError:
            raise _Timeout from None

    @app.exception_handler(_Timeout)
    async def _timeout(request: Request, exc: _Timeout):
        return _error(503, "timeout", f"the search took longer than {settings.timeout_s} s")

    @app.post("/v1/search", response_model=SearchResponse, responses=_ERRORS, summary="Search one query")
    async def search(req: SearchRequest) -> SearchResponse:
        name, index = pick(req.index)
        if (req.query is None) == (req.vector is None):
            raise QueryError("give exactly one of query (text) and vector")
        check(req, [req.query] if req.query is not None else [])
        retriever = req.retriever or index.default
        start = time.perf_counter()
        hits = await run(lambda: index.search(
            req.query, k=req.k, retriever=retriever, fusion=req.fusion, fusion_weights=req.fusion_weights,
            prf=settings.prf if req.prf else None, vector=req.vector, allow=req.allow, fields=req.fields))
        return SearchResponse(index=name, retriever=retriever, took_ms=(time.perf_counter() - start) * 1000,
                              hits=[HitModel(**h.to_dict()) for h in hits])

    @app.post("/v1/search/batch", response_model=BatchResponse, responses=_ERRORS, summary="Search many queries")
    async def search_batch(req: BatchRequest) -> BatchResponse:
        name, index = pick(req.index)
        if len(req.queries) > settings.max_batch:
            raise QueryError(f"{len(req.queries)} queries, over this server's batch limit of {settings.max_batch}")
        check(req, req.queries)
        retriever = req.retriever or index.default
        start = time.perf_counter()
        results = await run(lambda: index.search_batch(
            req.queries, k=req.k, retriever=retriever, fusion=req.fusion, fusion_weights=req.fusion_weights,
            prf=settings.prf if req.prf else None, allow=req.allow, fields=req.fields))
        return BatchResponse(index=name, retriever=retriever, took_ms=(time.perf_counter() - start) * 1000,
                             results=[[HitModel(**h.to_dict()) for h in hits] for hits in results])

    @app.get("/v1/indexes", summary="The served indexes and their manifests")
    async def list_indexes() -> dict:
        return {"indexes": {name: index.describe() for name, index in indexes.items()}}

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict:
        return {"status": "ok", "indexes": list(indexes)}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(content=body, media_type=content_type)

    app.router.on_shutdown.append(lambda: pool.shutdown(wait=False, cancel_futures=True))
    return app


class _Timeout(Exception):
    pass


def _route_of(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", None) or "unmatched"


def _version() -> str:
    from heron import __version__

    return __version__


def parse_index_args(values: list[str]) -> dict[str, str]:
    """``--index DIR`` or ``--index NAME=DIR`` → name → directory (names default to the folder name)."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep:
            path = value
            name = os.path.basename(os.path.normpath(value))
        if not name or name in out:
            raise HeronError(f"--index {value}: {'empty' if not name else 'duplicate'} index name")
        out[name] = path
    return out


__all__ = ["ServerSettings", "create_app", "parse_index_args"]
