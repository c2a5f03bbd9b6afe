"""Talking to Milvus: heron's ``milvus://`` addresses, connecting (fast, one-line errors), the collection
layout heron exports, and the companion collection of checked blobs (metadata, query-encoder files).

**Addresses.** ``milvus://HOST[:PORT]/COLLECTION`` is a Milvus server or cluster (``http://HOST:PORT``,
port 19530 by default; ``milvus+https://`` for TLS). ``milvus:///ABS/PATH/FILE.db/COLLECTION`` is a
milvus-lite database file: everything up to and including the first path component that ends in ``.db`` is the
local database, the next component the collection. A single slash after the scheme (``milvus:/ABS/…``, as a
path normaliser rewrites ``milvus:///ABS/…``) is read the same way: a local file when a component ends in
``.db``, else a server. One more component after the collection names a member of a bundle
(``…/COLLECTION/MEMBER``, for ``heron eval --index``). The token is never part of the address: ``--token`` or
the environment variable ``HERON_MILVUS_TOKEN``.

**Layout.** One collection per heron index or bundle: the primary key ``id`` is the document id (VARCHAR); one
vector field per member (``v_<member>``): a sparse member as SPARSE_FLOAT_VECTOR over heron's term ids with the
dequantised weights (``impact / scale``), so Milvus's inner product is heron's exact score up to float rounding;
a dense member as FLOAT_VECTOR (inner product, as heron's FAISS members); optional ``title`` / ``text``. A
document whose sparse vector is empty (Milvus refuses empty sparse vectors) holds one entry at term id
``vocab_size`` (:data:`EMPTY_SPARSE_TERM`), a dimension no query of the index has, so it never scores.

**Companion collection** ``<COLLECTION>_heron``: rows ``key`` → ``data`` (VARCHAR). A *blob* (bytes) is stored
as a header row ``blob:<name>`` (its size, sha256 and part count, JSON) and content-addressed parts
``part:<sha256>:<i>`` of base64 text; :func:`read_blob` checks the size and sha256 of what it reassembles.
Milvus needs a vector field in every collection: ``unused`` (2 dimensions, always zero).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from heron.errors import HeronError, IntegrityError

SCHEMES = {"milvus": "http", "milvus+https": "https"}
DEFAULT_PORT = 19530
TOKEN_ENV = "HERON_MILVUS_TOKEN"
#: seconds to wait for a Milvus server to answer before the one-line "cannot reach" error
TIMEOUT_ENV = "HERON_MILVUS_TIMEOUT"
DEFAULT_TIMEOUT = 10.0
#: Milvus's rule for collection and field names
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
COMPANION_SUFFIX = "_heron"
PRIMARY = "id"
MAX_ID_BYTES = 512
MAX_VARCHAR = 65535
#: raw bytes per blob part (base64: 4/3 as many characters, under Milvus's VARCHAR limit)
PART_BYTES = 45_000
#: parts per upsert / query request (about 3.6 MB of base64 text)
PARTS_PER_REQUEST = 60


@dataclass(frozen=True)
class MilvusAddress:
    """A parsed ``milvus://`` address: ``uri`` is what pymilvus connects to (``http://HOST:PORT`` or the
    milvus-lite file), ``member`` an optional bundle member."""

    uri: str
    collection: str
    local: bool
    member: str | None = None

    def __str__(self) -> str:
        if self.local:
            text = f"milvus://{self.uri}/{self.collection}"
        else:
            scheme, rest = self.uri.split("://", 1)
            text = f"{'milvus+https' if scheme == 'https' else 'milvus'}://{rest}/{self.collection}"
        return f"{text}/{self.member}" if self.member else text

    @property
    def companion(self) -> str:
        """The companion collection holding heron's metadata and query-encoder files."""
        return f"{self.collection}{COMPANION_SUFFIX}"

    def collection_address(self) -> MilvusAddress:
        """This address without its member."""
        return MilvusAddress(self.uri, self.collection, self.local)


def is_milvus_address(value: object) -> bool:
    """True for a ``milvus://`` (or ``milvus+https://``) address, also as a ``Path`` has rewritten it."""
    text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    return isinstance(text, str) and any(text.startswith(f"{s}:/") for s in SCHEMES)


def parse_address(value: object) -> MilvusAddress:
    """The :class:`MilvusAddress` of ``value`` (module docstring); a one-line error naming what is wrong."""
    text = os.fspath(value)
    scheme, sep, rest = text.partition(":")
    if scheme not in SCHEMES or not rest.startswith("/"):
        raise HeronError(f"{text}: not a Milvus address (milvus://HOST:PORT/COLLECTION or "
                         f"milvus:///ABS/PATH/FILE.db/COLLECTION)")
    if "?" in rest or "#" in rest:
        raise HeronError(f"{text}: a Milvus address takes no query or fragment (give the token with --token or "
                         f"{TOKEN_ENV})")
    double = rest.startswith("//")
    body = rest[2:] if double else rest[1:]
    parts = [p for p in body.split("/")]
    local_at = next((i for i, p in enumerate(parts) if p.endswith(".db")), None)
    if double and parts and parts[0] == "":  # milvus:///ABS/… : a local file
        if local_at is None:
            raise HeronError(f"{text}: a local Milvus address names a milvus-lite file ending in .db "
                             f"(milvus:///ABS/PATH/FILE.db/COLLECTION)")
    elif double:
        local_at = None  # milvus://HOST…: a server, even if the host name ends in .db
    if local_at is not None:
        if scheme != "milvus":
            raise HeronError(f"{text}: a milvus-lite file is local; use milvus:///ABS/PATH/FILE.db/COLLECTION")
        uri = "/" + "/".join(p for p in parts[:local_at + 1] if p)
        tail = parts[local_at + 1:]
        local = True
    else:
        host = parts[0] if parts else ""
        if "@" in host:
            raise HeronError(f"{text}: credentials do not belong in the address; give the token with --token or "
                             f"{TOKEN_ENV}")
        if not host:
            raise HeronError(f"{text}: no host (milvus://HOST:PORT/COLLECTION)")
        if ":" not in host.rsplit("]", 1)[-1]:
            host = f"{host}:{DEFAULT_PORT}"
        uri = f"{SCHEMES[scheme]}://{host}"
        tail = parts[1:]
        local = False
    tail = [p for p in tail if p != ""] if tail and tail[-1] == "" else tail
    if not tail or not tail[0]:
        raise HeronError(f"{text}: the address names no collection (…/COLLECTION at its end)")
    if len(tail) > 2 or any(not p for p in tail):
        raise HeronError(f"{text}: too many parts after the database (…/COLLECTION or …/COLLECTION/MEMBER)")
    check_collection_name(tail[0], text)
    return MilvusAddress(uri, tail[0], local, tail[1] if len(tail) == 2 else None)


def address_for(uri: str, collection: str) -> MilvusAddress:
    """The address of ``collection`` at a Milvus ``uri`` as pymilvus takes it: ``http(s)://HOST:PORT`` or a
    milvus-lite file path ending in ``.db`` (made absolute)."""
    check_collection_name(collection, "--collection")
    text = str(uri).strip()
    if text.startswith(("http://", "https://")):
        scheme, rest = text.split("://", 1)
        host = rest.rstrip("/")
        if not host or "/" in host or "@" in host:
            raise HeronError(f"--uri {uri}: give http(s)://HOST:PORT (the token goes in --token or {TOKEN_ENV})")
        if ":" not in host.rsplit("]", 1)[-1]:
            host = f"{host}:{DEFAULT_PORT}"
        return MilvusAddress(f"{scheme}://{host}", collection, False)
    if text.endswith(".db"):
        return MilvusAddress(str(Path(text).expanduser().absolute()), collection, True)
    raise HeronError(f"--uri {uri}: give http(s)://HOST:PORT for a Milvus server, or a milvus-lite file ending in .db")


def check_collection_name(name: str, where: object) -> None:
    if not NAME.match(name) or len(name) + len(COMPANION_SUFFIX) > 255:
        raise HeronError(f"{where}: collection name {name!r} must be letters, digits and '_' (not starting with a "
                         f"digit, at most {255 - len(COMPANION_SUFFIX)} characters)")


def field_name(member: str) -> str:
    """The vector field of a bundle member: ``v_`` and the member name with '.' and '-' as '_'."""
    return "v_" + re.sub(r"[^A-Za-z0-9_]", "_", member)


# -- connecting ----------------------------------------------------------------------------------------------
def token_from(token: str | None) -> str:
    """The token: ``token`` if given, else ``$HERON_MILVUS_TOKEN``, else none (empty)."""
    return token if token else os.environ.get(TOKEN_ENV, "")


def _timeout() -> float:
    raw = os.environ.get(TIMEOUT_ENV)
    try:
        return float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        raise HeronError(f"{TIMEOUT_ENV}={raw!r}: give a number of seconds") from None


def describe_milvus_error(exc: BaseException) -> str:
    """One line for a pymilvus / gRPC error: its message without the class wrapper."""
    message = getattr(exc, "message", None) or str(exc)
    message = " ".join(str(message).split())
    return message[:300] + ("…" if len(message) > 300 else "")


def _is_auth_error(exc: BaseException) -> bool:
    text = f"{getattr(exc, 'code', '')} {exc}".lower()
    return any(word in text for word in ("auth", "token", "credential", "permission denied", "unauthenticated",
                                         "1800"))


@contextlib.contextmanager
def milvus_errors(address: MilvusAddress | str, what: str):
    """Turn pymilvus errors raised inside the block into one-line HeronErrors naming ``address`` and ``what``
    was being done (a wrong token is said so)."""
    try:
        yield
    except HeronError:
        raise
    except Exception as exc:  # pymilvus raises MilvusException, gRPC errors, ValueError …
        module = type(exc).__module__
        if not (module.startswith(("pymilvus", "grpc", "milvus_lite")) or isinstance(exc, (ConnectionError, OSError))):
            raise
        if _is_auth_error(exc):
            raise HeronError(f"{address}: Milvus refused the token ({describe_milvus_error(exc)}); check --token or "
                             f"{TOKEN_ENV}") from None
        raise HeronError(f"{address}: Milvus failed to {what}: {describe_milvus_error(exc)}") from None


def connect(address: MilvusAddress, token: str | None = None, *, create: bool = False):
    """A ``MilvusClient`` for ``address`` (fails within ``$HERON_MILVUS_TIMEOUT`` seconds, default 10, when the
    server does not answer). A milvus-lite file must exist unless ``create``."""
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise HeronError("Milvus needs the distributed extra (pip install 'heron[distributed]': pymilvus, "
                         "milvus-lite)") from None
    quiet = logging.getLogger("pymilvus")
    if quiet.level == logging.NOTSET:  # heron reports Milvus's errors itself, in one line: no RPC log noise
        quiet.setLevel(logging.CRITICAL)
    if address.local:
        path = Path(address.uri)
        if not create and not path.exists():
            raise HeronError(f"{address}: no milvus-lite database at {path}")
        if not path.parent.is_dir():
            raise HeronError(f"{address}: the folder of the milvus-lite database does not exist ({path.parent})")
    try:
        return MilvusClient(uri=address.uri, token=token_from(token), timeout=_timeout())
    except Exception as exc:
        if _is_auth_error(exc):
            raise HeronError(f"{address}: Milvus refused the token ({describe_milvus_error(exc)}); check --token or "
                             f"{TOKEN_ENV}") from None
        raise HeronError(f"{address}: cannot reach Milvus at {address.uri} ({describe_milvus_error(exc)})") from None


def release_local(path: str | os.PathLike) -> None:
    """Stop this process's milvus-lite server of the database file ``path`` (it holds the file's lock until
    then; another process can open the file afterwards)."""
    try:
        from milvus_lite import server_manager_instance
    except ImportError:  # pragma: no cover - milvus-lite is part of the extra
        return
    server_manager_instance.release_server(os.path.abspath(os.fspath(path)))


# -- the companion collection: checked blobs ------------------------------------------------------------------
def load(client, address: MilvusAddress, name: str) -> None:
    """Load collection ``name`` for queries (a restarted server keeps collections released)."""
    with milvus_errors(address, f"load the collection {name}"):
        client.load_collection(name)


def create_companion(client, address: MilvusAddress) -> None:
    """Create the companion collection (key → data) if it does not exist; load it."""
    from pymilvus import DataType

    name = address.companion
    with milvus_errors(address, f"create the collection {name}"):
        if client.has_collection(name):
            load(client, address, name)
            return
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=256)
        schema.add_field("data", DataType.VARCHAR, max_length=MAX_VARCHAR)
        schema.add_field("unused", DataType.FLOAT_VECTOR, dim=2)
        params = client.prepare_index_params()
        params.add_index("unused", index_type="FLAT", metric_type="IP")
        client.create_collection(name, schema=schema, index_params=params, consistency_level="Strong")


def _rows(client, address: MilvusAddress, keys: list[str]) -> dict[str, str]:
    """``key → data`` of the companion rows ``keys`` that exist."""
    out: dict[str, str] = {}
    with milvus_errors(address, f"read {address.companion}"):
        for start in range(0, len(keys), PARTS_PER_REQUEST):
            chunk = keys[start:start + PARTS_PER_REQUEST]
            for row in client.query(address.companion, filter=f"key in {json.dumps(chunk)}",
                                    output_fields=["key", "data"], consistency_level="Strong"):
                out[str(row["key"])] = str(row["data"])
    return out


def _part_keys(sha: str, count: int) -> list[str]:
    return [f"part:{sha}:{i:06d}" for i in range(count)]


def write_blob(client, address: MilvusAddress, name: str, data: bytes) -> dict:
    """Store ``data`` as blob ``name`` (parts already stored with the same content are not sent again); returns
    its header ``{"bytes", "sha256", "parts"}``."""
    sha = hashlib.sha256(data).hexdigest()
    count = max(1, -(-len(data) // PART_BYTES))
    header = {"bytes": len(data), "sha256": sha, "parts": count}
    keys = _part_keys(sha, count)
    done = f"done:{sha}"
    if done not in _rows(client, address, [done]):
        with milvus_errors(address, f"write {name} to {address.companion}"):
            for start in range(0, count, PARTS_PER_REQUEST):
                rows = [{"key": keys[i], "unused": [0.0, 0.0],
                         "data": base64.b64encode(data[i * PART_BYTES:(i + 1) * PART_BYTES]).decode("ascii")}
                        for i in range(start, min(count, start + PARTS_PER_REQUEST))]
                client.upsert(address.companion, rows)
            client.upsert(address.companion, [{"key": done, "data": "", "unused": [0.0, 0.0]}])
    with milvus_errors(address, f"write {name} to {address.companion}"):
        client.upsert(address.companion, [{"key": f"blob:{name}", "data": json.dumps(header), "unused": [0.0, 0.0]}])
    return header


def read_header(client, address: MilvusAddress, name: str) -> dict | None:
    """The header of blob ``name``, or None when there is none."""
    raw = _rows(client, address, [f"blob:{name}"]).get(f"blob:{name}")
    if raw is None:
        return None
    try:
        header = json.loads(raw)
        int(header["bytes"]), int(header["parts"]), str(header["sha256"])
    except (ValueError, KeyError, TypeError):
        raise IntegrityError(f"{address}", f"blob {name!r} has a malformed header; export the index again") from None
    return header


def read_blob(client, address: MilvusAddress, name: str, expect: dict | None = None) -> bytes:
    """The bytes of blob ``name``, checked against its header (and ``expect``, e.g. a manifest's
    ``{"bytes", "sha256"}``); an IntegrityError when a part is missing or the content differs."""
    header = read_header(client, address, name)
    if header is None:
        raise IntegrityError(f"{address}", f"{name!r} is missing from {address.companion}; export the index again")
    if expect is not None and (int(expect["bytes"]) != int(header["bytes"]) or expect["sha256"] != header["sha256"]):
        raise IntegrityError(f"{address}", f"{name!r} in {address.companion} is not the file the metadata records; "
                                           f"export the index again")
    keys = _part_keys(header["sha256"], int(header["parts"]))
    found = _rows(client, address, keys)
    missing = [k for k in keys if k not in found]
    if missing:
        raise IntegrityError(f"{address}", f"{name!r}: {len(missing)} of its {len(keys)} parts are missing from "
                                           f"{address.companion}; export the index again")
    try:
        data = b"".join(base64.b64decode(found[k], validate=True) for k in keys)
    except ValueError:
        raise IntegrityError(f"{address}", f"{name!r}: a part is not base64 (damaged); export the index again") \
            from None
    if len(data) != int(header["bytes"]) or hashlib.sha256(data).hexdigest() != header["sha256"]:
        raise IntegrityError(f"{address}", f"{name!r}: its parts do not add up to the recorded size and sha256 "
                                           f"(damaged); export the index again")
    return data


def write_json_blob(client, address: MilvusAddress, name: str, obj) -> dict:
    return write_blob(client, address, name, json.dumps(obj, sort_keys=True).encode("utf-8"))


def read_json_blob(client, address: MilvusAddress, name: str):
    """A JSON blob, or None when the companion collection holds no blob ``name``."""
    if read_header(client, address, name) is None:
        return None
    data = read_blob(client, address, name)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise IntegrityError(f"{address}", f"{name!r} is not JSON (damaged); export the index again") from None


def delete_blob(client, address: MilvusAddress, name: str) -> None:
    with milvus_errors(address, f"update {address.companion}"):
        client.delete(address.companion, ids=[f"blob:{name}"])
