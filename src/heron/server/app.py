"""The HTTP query server (FastAPI): ``heron serve --index DIR [--index NAME=DIR …]``.

Routes: ``POST /v1/search``, ``POST /v1/search/batch``, ``GET /v1/indexes``, ``GET /healthz``,
``GET /metrics`` (Prometheus text), OpenAPI docs at ``/docs`` (spec at ``/openapi.json``), and the write
routes ``POST /v1/indexes/{name}/documents`` / ``POST /v1/indexes/{name}/delete``, disabled (403) unless the
server has an API key (:mod:`heron.server.writes`). ``GET /v1/indexes`` shows each index's ``generation``
(its commit; null for a classic, write-once index); searches switch to a new commit without a restart.

Every index (and its query encoders) is opened when the app is created, before the first request; a
member that fails to open is reported failed and the others serve (:mod:`heron.server.health`), and every
member's files are then verified in full in the background. Searches are CPU-bound: they run on a thread
pool behind a bounded admission queue, single queries and batches in separate lanes, each under a
deadline that stops the work, not only the answer (:mod:`heron.server.scheduler`).

Every answer matches the OpenAPI schema, which carries this server's limits (k, batch size, query length).
Client mistakes get a 4xx with a JSON body ``{"error": {"type", "message"}}``: 422 for a body that cannot
be parsed (not JSON, not UTF-8) or does not match the schema, 400 for a request the schema allows but the
index cannot answer (a vector of the wrong dimension, fusion weights that do not match the retriever) and
for a Host outside the allow-list, 401 / 403 for a missing / wrong API key, 404 for an unknown index,
retriever or path, 405 (with ``Allow``) for a wrong method, 413 for a body over the size limit, 429 (with
``Retry-After``) when the admission queue is full. 503 (with ``Retry-After``) means a search passed its
deadline or asked for a failed member. No answer carries an absolute filesystem path.

Example::

    >>> from fastapi.testclient import TestClient                                   # doctest: +SKIP
    >>> app = create_app({"scifact": Index.open("indexes/scifact-bundle")})         # doctest: +SKIP
    >>> TestClient(app).post("/v1/search", json={"query": "coffee", "k": 3}).json()  # doctest: +SKIP
"""

# no `from __future__ import annotations`: the endpoints' body types are local classes FastAPI must see
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Annotated, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, StringConstraints, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from heron.api import MAX_TOTAL_HITS, Index
from heron.errors import HeronError, IntegrityError, NotFoundError, QueryError
from heron.retrieval.options import MAX_WEIGHT
from heron.server.guard import OPEN_PATHS, BodyLimit, Guard, error_response
from heron.server.health import Health, describe_error
from heron.server.metrics import Metrics
from heron.server.scheduler import RETRY_AFTER_S, Overloaded, Scheduler, Timeout
from heron.server.writes import CommitWatcher, WritesDisabled, add_write_routes, verify_served

logger = logging.getLogger("heron.server")


class ServerSettings(BaseModel):
    """Limits and knobs of one server (``heron serve`` flags)."""

    max_query_chars: int = Field(2000, ge=1)
    max_k: int = Field(1000, ge=1, le=1000)
    max_batch: int = Field(64, ge=1, le=1000)
    max_body_bytes: int = Field(1 << 20, ge=1024)
    max_allow: int = Field(10000, ge=1, le=10000)
    timeout_s: float = Field(30.0, gt=0)
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    batch_workers: int | None = Field(None, ge=1, description="threads batch requests may hold at once "
                                      "(default: half the workers, at least one)")
    batch_chunk: int = Field(1, ge=1, description="queries of a batch per pool task (deadline checked between)")
    max_queue: int = Field(64, ge=0, description="requests each lane lets wait for a thread; one more: 429")
    prf: str = Field("rocchio", description="the feedback method a request with prf=true gets")
    api_key: SecretStr | None = Field(None, description="required on every route but /healthz when set")
    allowed_hosts: list[str] | None = Field(None, description="Host header allow-list (None: any host)")
    verify: bool = Field(True, description="verify every member's files in full, in the background, at start")
    max_write_docs: int = Field(1000, ge=1, le=100_000, description="most documents (or ids) in one write request")
    refresh_s: float = Field(1.0, ge=0, description="seconds between checks for commits made by other processes "
                             "(0: only this server's own writes refresh)")


#: characters that count as blank in a query (Python's str.isspace, and JSON Schema's \s, which adds U+FEFF)
_BLANK = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
#: the most a fusion weight may be (fused scores stay finite in float32): the library's rule
MAX_FUSION_WEIGHT = MAX_WEIGHT
Component = Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)]
Term = Annotated[str, StringConstraints(min_length=1, max_length=200)]
DocId = Annotated[str, StringConstraints(min_length=1, max_length=512)]
Vector = (Annotated[dict[Term, Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)]],
                    Field(min_length=1, max_length=10000)]
          | Annotated[list[Component], Field(min_length=1, max_length=8192)]
          | Annotated[list[Annotated[list[Component], Field(min_length=1, max_length=8192)]],
                      Field(min_length=1, max_length=512)])
Integer = Annotated[int, BeforeValidator(lambda v: int(v) if isinstance(v, float) and v.is_integer() else v)]
"""An integer; 10.0 counts (JSON Schema says so), "10" and true do not (the request models are strict)."""
Weight = Annotated[float, Field(ge=0, le=MAX_FUSION_WEIGHT, allow_inf_nan=False)]  # as options.Weight, strict


def request_models(settings: ServerSettings, several_indexes: bool) -> tuple[type[BaseModel], type[BaseModel]]:
    """The request bodies of this server (search, batch): the schema carries its limits."""
    Text = Annotated[str, StringConstraints(min_length=1, max_length=settings.max_query_chars,
                                            pattern=f"[^{_BLANK}]")]
    IndexName = Annotated[str, StringConstraints(min_length=1, max_length=200)]

    class SearchOptions(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)  # no coercion: "true" is not a boolean

        if several_indexes:
            index: IndexName = Field(description="index name (GET /v1/indexes)")
        else:
            index: IndexName | None = Field(None, description="index name (GET /v1/indexes); optional: this "
                                            "server has one")
        k: Integer = Field(10, ge=1, le=settings.max_k, description="results to return")
        retriever: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = Field(
            None, description="a member of the bundle, or members joined by '+' (fused); default: the bundle's")
        fusion: Literal["rrf", "linear"] | None = Field(None, description="fusion of a '+' retriever")
        fusion_weights: Annotated[list[Weight], Field(min_length=2, max_length=16)] | None = Field(
            None, description=f"one weight per fused member, each in [0, {MAX_FUSION_WEIGHT:g}]")
        prf: bool = Field(False, description="pseudo-relevance feedback (the server's configured method)")
        allow: Annotated[list[DocId], Field(max_length=settings.max_allow)] | None = Field(
            None, description="rank only these document ids")
        fields: bool = Field(False, description="return each hit's title and text")

    class SearchRequest(SearchOptions):
        model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={
            "oneOf": [{"required": ["query"]}, {"required": ["vector"]}]})

        query: Text = Field(None, description="query text (or give vector)")  # null is not a query
        vector: Vector = Field(None, description="a precomputed query vector in one member's space: "
                                      "{term: weight} (sparse), [floats] (dense), [[floats], …] (multi-vector)")

        @model_validator(mode="after")
        def _one_of(self):
            if (self.query is None) == (self.vector is None):
                raise ValueError("give exactly one of query (text) and vector")
            return self

    class BatchRequest(SearchOptions):
        queries: Annotated[list[Text], Field(min_length=1, max_length=settings.max_batch)]

    return SearchRequest, BatchRequest


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


class MemberState(BaseModel):
    status: Literal["verifying", "ok", "failed"]
    error: str | None = None


class HealthResponse(BaseModel):
    status: Literal["ok", "degraded", "failed"] = Field(
        description="failed: a member failed (HTTP 503); degraded: verification still running; ok: all verified")
    indexes: dict[str, dict[str, MemberState]]


class IndexesResponse(BaseModel):
    indexes: dict[str, dict]


class ErrorBody(BaseModel):
    type: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


_RETRY = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}
_DOCS = {
    400: "a request the schema allows but the index cannot answer, or a Host outside the allow-list",
    404: "unknown index or retriever",
    413: "request body over the size limit",
    422: "a body that cannot be parsed (not JSON, not UTF-8) or does not match the schema",
    429: "the admission queue is full; retry after Retry-After seconds",
    503: "the search passed its deadline (its work stopped), or asked for a failed member",
}


def _responses(*statuses: int) -> dict:
    return {s: {"model": ErrorResponse, "description": _DOCS[s], **({"headers": _RETRY} if s in (429, 503) else {})}
            for s in statuses}


class _MemberFailed(Exception):
    def __init__(self, index: str, member: str, error: str):
        super().__init__(f"index {index!r} member {member!r} failed its checks and is not served until it is "
                         f"rebuilt or restored: {error}")


def create_app(indexes: dict[str, Index], settings: ServerSettings | None = None) -> FastAPI:
    """The app serving ``indexes`` (name → opened :class:`heron.Index`), every member loaded now."""
    settings = settings or ServerSettings()
    if not indexes:
        raise HeronError("serve needs at least one index")
    from heron.retrieval.prf import parse_prf

    parse_prf(settings.prf)  # a bad --prf fails at start, not on every request
    health = Health({name: index.retrievers for name, index in indexes.items()},
                    {(name, m): member.path for name, index in indexes.items() for m, member in index.members.items()})
    for name, index in indexes.items():
        _load(name, index, settings.prf, health)
    if all(state["status"] == "failed" for name in indexes for state in health.members(name).values()):
        first = next(iter(health.members(next(iter(indexes))).values()))
        raise HeronError(f"no index member could be opened: {first['error']}")
    paths = _Paths({name: index.path for name, index in indexes.items()})
    described = {name: paths.describe(index) for name, index in indexes.items()}
    scheduler = Scheduler(settings.workers, settings.batch_workers, settings.max_queue, settings.batch_chunk)
    metrics = Metrics(scheduler)
    SearchRequest, BatchRequest = request_models(settings, len(indexes) > 1)
    app = FastAPI(title="heron", version=_version(),
                  description="Learned sparse, dense and multi-vector retrieval over heron index bundles.")
    app.state.indexes, app.state.settings, app.state.metrics = indexes, settings, metrics
    app.state.scheduler, app.state.health = scheduler, health

    def error(status: int, kind: str, message: str, headers: dict | None = None) -> Response:
        return error_response(status, kind, paths.text(message), headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        if first.get("type") == "json_invalid":
            where = f"body is not valid JSON (at character {loc[0]})" if loc else "body is not valid JSON"
            return error(422, "invalid_json", f"{where}: {first.get('msg')}")
        where = ".".join(loc) or "body"
        if first.get("type") == "string_pattern_mismatch":  # the one pattern: a query of blank characters
            return error(422, "invalid_request", f"{where}: only blank characters; give some text to search for")
        return error(422, "invalid_request", f"{where}: {first.get('msg')}")

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: NotFoundError):
        return error(404, "not_found", str(exc))

    @app.exception_handler(QueryError)
    async def _bad_query(request: Request, exc: QueryError):
        return error(400, "bad_request", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            # FastAPI's answer to a body it cannot decode (not UTF-8): unparsable bodies all get 422
            return error(422, "invalid_json", "body is not valid JSON: it cannot be decoded as UTF-8")
        kind = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status_code, "bad_request")
        return error(exc.status_code, kind, str(exc.detail), exc.headers)  # 405 keeps its Allow header

    @app.exception_handler(Overloaded)
    async def _overloaded(request: Request, exc: Overloaded):
        return error(429, "overloaded", str(exc), {"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(Timeout)
    async def _timeout(request: Request, exc: Timeout):
        return error(503, "timeout", f"the search took longer than {settings.timeout_s} s and was stopped",
                     {"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(_MemberFailed)
    async def _failed(request: Request, exc: _MemberFailed):
        return error(503, "member_failed", str(exc), {"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(WritesDisabled)
    async def _read_only(request: Request, exc: WritesDisabled):
        return error(403, "writes_disabled", "this server is read-only: write routes need the server to be started "
                     "with an API key (heron serve --api-key or HERON_API_KEY)")

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        logger.exception("internal error on %s", request.url.path)
        return error(500, "internal", f"internal error ({type(exc).__name__}); see the server log")

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(Guard, api_key=settings.api_key.get_secret_value() if settings.api_key else None,
                       allowed_hosts=settings.allowed_hosts)  # outside the body limit, inside Observe
    app.add_middleware(Observe, metrics=metrics)  # outermost: every answer is counted, refusals too

    def pick(name: str | None) -> tuple[str, Index]:
        if name is None:
            if len(indexes) == 1:
                return next(iter(indexes.items()))
            raise QueryError(f"this server has {len(indexes)} indexes; name one with \"index\" "
                             f"({', '.join(indexes)})")
        if name not in indexes:
            raise NotFoundError(f"unknown index {name!r} (this server has: {', '.join(indexes)})")
        return name, indexes[name]

    def plan(req, count: int) -> tuple[str, Index, str, list[str]]:
        """Checks made before a request is queued: index, retriever, failed members, options, size."""
        name, index = pick(req.index)
        retriever = req.retriever or index.default
        members = index.parse_retriever(retriever)
        failed = health.failure(name, members)
        if failed is not None:
            raise _MemberFailed(name, *failed)
        if len(members) == 1 and (req.fusion is not None or req.fusion_weights is not None):
            raise QueryError(f"fusion options apply to a fused retriever (members joined by '+'); {retriever!r} "
                             f"is one member")
        if count * req.k > MAX_TOTAL_HITS:
            raise QueryError(f"{count} queries × k={req.k} asks for more than {MAX_TOTAL_HITS} hits in one request")
        return name, index, retriever, members

    def guarded(name: str, members: list[str], fn):
        """``fn()`` on a pool thread; an IntegrityError fails the member whose file it names (503)."""
        try:
            return fn()
        except IntegrityError as exc:
            key = health.member_of(exc.path) or ((name, members[0]) if len(members) == 1 else None)
            if key is None:
                raise _MemberFailed(name, "+".join(members), describe_error(exc)) from None
            health.fail(*key, describe_error(exc))
            raise _MemberFailed(*key, describe_error(exc)) from None

    def options(req) -> dict:
        return dict(k=req.k, fusion=req.fusion, fusion_weights=req.fusion_weights,
                    prf=settings.prf if req.prf else None, allow=req.allow, fields=req.fields)

    @app.post("/v1/search", response_model=SearchResponse, summary="Search one query",
              responses=_responses(400, 404, 413, 422, 429, 503))
    async def search(req: SearchRequest) -> Response:
        name, index, retriever, members = plan(req, 1)
        start = time.perf_counter()
        hits = await scheduler.run(lambda: _hits_json(guarded(name, members, lambda: index.search(
            req.query, retriever=retriever, vector=req.vector, **options(req)))), settings.timeout_s)
        return _json(f'{{"index": {json.dumps(name)}, "retriever": {json.dumps(retriever)}, '
                     f'"took_ms": {(time.perf_counter() - start) * 1000:.3f}, "hits": {hits}}}')

    @app.post("/v1/search/batch", response_model=BatchResponse, summary="Search many queries",
              responses=_responses(400, 404, 413, 422, 429, 503))
    async def search_batch(req: BatchRequest) -> Response:
        name, index, retriever, members = plan(req, len(req.queries))
        start = time.perf_counter()
        results = await scheduler.run_batch(req.queries, lambda part: [_hits_json(hits) for hits in guarded(
            name, members, lambda: index.search_batch(part, retriever=retriever, **options(req)))],
            settings.timeout_s)
        return _json(f'{{"index": {json.dumps(name)}, "retriever": {json.dumps(retriever)}, '
                     f'"took_ms": {(time.perf_counter() - start) * 1000:.3f}, "results": [{", ".join(results)}]}}')

    @app.get("/v1/indexes", response_model=IndexesResponse, summary="The served indexes, their members' manifests "
             "and health (no filesystem paths)")
    async def list_indexes() -> dict:
        out = {}
        for name, info in described.items():
            states = health.members(name)
            out[name] = {**info, "generation": indexes[name].generation,
                         "members": {m: {**member, **states[m]} for m, member in info["members"].items()}}
        return {"indexes": paths.value(out)}

    def changed(name: str) -> None:
        """A served index switched to a new commit: what /v1/indexes shows of it is described again."""
        described[name] = paths.describe(indexes[name])

    add_write_routes(app, indexes, enabled=settings.api_key is not None, max_docs=settings.max_write_docs,
                     max_queue=settings.max_queue, on_commit=changed, error_model=ErrorResponse)
    if settings.refresh_s > 0:
        watcher = CommitWatcher(indexes, settings.refresh_s, on_change=changed).start()
        app.router.on_shutdown.append(watcher.stop)

    @app.get("/healthz", response_model=HealthResponse, summary="Health: ok, degraded (verifying) or failed (503)",
             responses={503: {"model": HealthResponse, "description": "a member failed"}})
    async def healthz() -> JSONResponse:
        status = health.status()
        body = {"status": status, "indexes": {name: health.members(name) for name in indexes}}
        return JSONResponse(paths.value(body), status_code=503 if status == "failed" else 200)

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(content=body, media_type=content_type)

    _document_security(app, settings)
    app.router.on_shutdown.append(scheduler.shutdown)
    if settings.verify:
        health.verify_in_background(verify_served)
    else:
        for name, index in indexes.items():
            for m in index.members:
                health.mark_ok(name, m)
    return app


def _load(name: str, index: Index, prf: str, health: Health) -> None:
    """Open and warm up every member of ``index``; one that fails is marked failed, the others load."""
    ok = []
    for member in index.members:
        try:
            index.retriever(member)
            try:
                index.retriever(member, prf)
            except QueryError:
                pass  # e.g. a multi-vector member: a prf request on it gets a 400
            index.search("warm up the query encoder and the search kernels", k=1, retriever=member)
            ok.append(member)
        except Exception as exc:  # one damaged member never takes the server down
            health.fail(name, member, describe_error(exc))
    if len(ok) == len(index.members):
        try:
            index.load(prf).warm_up()  # the document store, and queries of several lengths
        except Exception as exc:
            where = health.member_of(exc.path) if isinstance(exc, IntegrityError) else None
            for member in [where[1]] if where is not None and where[0] == name else index.members:
                health.fail(name, member, describe_error(exc))


def _hits_json(hits) -> str:
    """Hits as a JSON array, made on the search thread; a score that is not finite is an error, never null."""
    try:
        return json.dumps([h.to_dict() for h in hits], allow_nan=False)
    except ValueError:
        raise RuntimeError(f"a search returned a non-finite score ({[h.score for h in hits][:5]}…)") from None


def _json(body: str) -> Response:
    return Response(content=body, media_type="application/json")


def _document_security(app: FastAPI, settings: ServerSettings) -> None:
    """Add to the OpenAPI spec what the middleware answers: 400 for a Host outside the allow-list, and with
    an API key its security schemes and 401 / 403 on every route but /healthz."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = build()
        if settings.api_key is not None:
            spec.setdefault("components", {}).setdefault("securitySchemes", {}).update({
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}})
        for path, operations in spec["paths"].items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
                if settings.allowed_hosts is not None:
                    responses.setdefault("400", {**error, "description": _DOCS[400]})
                if settings.api_key is not None and path not in OPEN_PATHS:
                    operation["security"] = [{"bearer": []}, {"apiKey": []}]
                    responses["401"] = {**error, "description": "no API key",
                                        "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}}
                    responses["403"] = {**error, "description": "wrong API key"}
        app.openapi_schema = spec
        return spec

    app.openapi = openapi


class _Paths:
    """Keeps filesystem paths out of answers: a served index's directory becomes the index's name, any other
    absolute path its last component."""

    _ABSOLUTE = re.compile(r"(?<![\w/.:~-])/(?:[^\s/'\"]+/)*[^\s/'\"]*")

    def __init__(self, roots: dict[str, Path]):
        self.roots = sorted(((os.path.abspath(p), name) for name, p in roots.items()), key=lambda r: -len(r[0]))

    def text(self, text: str) -> str:
        for root, name in self.roots:
            text = text.replace(root, name)
        return self._ABSOLUTE.sub(lambda m: os.path.basename(m.group(0).rstrip("/")) or "/", text)

    def value(self, value):
        if isinstance(value, str):
            return self.text(value) if "/" in value else value
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        return value

    def describe(self, index: Index) -> dict:
        """``Index.describe()`` without paths (a member's path relative to its bundle), or, for an index that
        cannot describe itself (a damaged member), its members and their search options."""
        try:
            info = index.describe()
        except Exception as exc:
            logger.warning("%s: cannot describe the index: %s", index.path, describe_error(exc))
            info = {"retrievers": index.retrievers, "default": index.default, "fusion": index.fusion,
                    "members": {m: {"path": str(member.path), "search": member.search}
                                for m, member in index.members.items()}}
        info.pop("path", None)
        for m, member in index.members.items():
            rel = os.path.relpath(os.path.abspath(member.path), os.path.abspath(index.path))
            info["members"][m]["path"] = os.path.basename(os.path.abspath(member.path)) if rel.startswith("..") else rel
        return self.value(info)


class Observe:
    """ASGI middleware: each answer's route, method, status and latency into :class:`Metrics` (a pure ASGI
    middleware: no task or stream per request, unlike ``@app.middleware``)."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500

        async def observed(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe(route, scope["method"], status, time.perf_counter() - start)


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


__all__ = ["MAX_FUSION_WEIGHT", "ServerSettings", "create_app", "parse_index_args", "request_models"]
