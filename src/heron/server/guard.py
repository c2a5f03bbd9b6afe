"""ASGI middleware that runs before any route: the Host allow-list, the API key and the body-size limit.

- **Host** (``allowed_hosts``): a request whose ``Host`` header (port aside) is not in the list gets 400
  ``invalid_host``. Entries are host names or addresses, ``*.example.com`` (any subdomain) or ``*`` (any).
  ``heron serve`` on loopback allows only loopback names by default, which stops DNS-rebinding pages in
  a browser from reading the server.
- **API key** (``api_key``): every route but ``/healthz`` needs ``Authorization: Bearer KEY`` or
  ``X-API-Key: KEY``; without one 401 (with ``WWW-Authenticate: Bearer``), with a wrong one 403. Keys are
  compared in constant time (:func:`hmac.compare_digest`).
- **Body size** (:class:`BodyLimit`): a body over the limit gets 413, declared or streamed.

Every refusal is the server's JSON error body ``{"error": {"type", "message"}}``.
"""

from __future__ import annotations

import hmac
import json

from fastapi.responses import Response

#: routes open without the API key (liveness probes carry no credentials)
OPEN_PATHS = frozenset({"/healthz"})


def error_response(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> Response:
    """The JSON error every refusal of the server answers with (ASCII JSON: a message quoting a lone
    surrogate from a request still encodes)."""
    body = json.dumps({"error": {"type": kind, "message": message}})
    return Response(content=body, status_code=status, headers=headers, media_type="application/json")


def host_name(value: str) -> str:
    """The host of a ``Host`` header value, without its port, lower-cased (``[::1]:80`` → ``::1``)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    name, sep, port = value.rpartition(":")
    return name if sep and port.isdigit() and ":" not in name else value


def host_allowed(host: str, allowed: list[str]) -> bool:
    """Whether ``host`` (from :func:`host_name`) matches an entry of ``allowed``."""
    for entry in allowed:
        entry = entry.strip().lower().strip("[]")
        if entry == "*" or entry == host or (entry.startswith("*.") and host.endswith(entry[1:])):
            return True
    return False


class Guard:
    """ASGI middleware: the Host allow-list (``allowed_hosts``; None: any) and the API key (None: none)."""

    def __init__(self, app, api_key: str | None = None, allowed_hosts: list[str] | None = None):
        self.app = app
        self.key = api_key.encode() if api_key else None
        self.hosts = list(allowed_hosts) if allowed_hosts is not None else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refusal = self.refusal(scope.get("headers") or [], scope.get("path", ""))
        if refusal is not None:
            return await refusal(scope, receive, send)
        await self.app(scope, receive, send)

    def refusal(self, headers: list[tuple[bytes, bytes]], path: str) -> Response | None:
        if self.hosts is not None:
            hosts = [v.decode("latin-1") for k, v in headers if k.lower() == b"host"]
            if len(hosts) != 1 or not host_allowed(host_name(hosts[0]), self.hosts):
                shown = repr(hosts[0][:100]) if len(hosts) == 1 else f"{len(hosts)} Host headers"
                return error_response(400, "invalid_host", f"Host {shown} is not served here (the server's "
                                      f"--allowed-host list)")
        if self.key is not None and path not in OPEN_PATHS:
            given = _given_key(headers)
            if given is None:
                return error_response(401, "unauthorized", "this server needs an API key: send "
                                      "'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                                      {"WWW-Authenticate": "Bearer"})
            if not hmac.compare_digest(given, self.key):
                return error_response(403, "forbidden", "wrong API key")
        return None


def _given_key(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        name = name.lower()
        if name == b"x-api-key":
            return value.strip()
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
    return None


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 (declared or streamed)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._too_large(scope, receive, send)
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
            await self._too_large(scope, receive, send)

    def _too_large(self, scope, receive, send):
        return error_response(413, "too_large", f"request body over {self.limit} bytes")(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


__all__ = ["OPEN_PATHS", "BodyLimit", "Guard", "error_response", "host_allowed", "host_name"]
