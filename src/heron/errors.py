"""Errors that heron reports to a user as one line (the CLI turns them into exit code 2)."""

from __future__ import annotations


class HeronError(Exception):
    """A problem with the user's input or environment, explained in one line.

    The message names what is wrong and, where it helps, the file, line and field.
    """


class InputFormatError(HeronError):
    """A data file is malformed: the message names the file, the line and the field."""

    def __init__(self, path: object, line: int | None, problem: str):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


class QueryError(HeronError):
    """A search request is invalid (empty query, unknown retriever, k out of range, wrong vector shape).

    The HTTP server answers these with 400 and the message; other errors are the server's own.
    """


class NotFoundError(QueryError):
    """A named thing a request asked for (an index, a retriever) does not exist (HTTP 404)."""


def config_error(exc, source: object, show_input: bool = False) -> HeronError:
    """The one-line :class:`HeronError` for a pydantic ``ValidationError`` of a config (its first error).

    ``source`` says where the config came from (a file, ``train csr``, ``indexes.colbert.train``); the
    message is ``{source}: field 'a.b': {what is wrong}``, with `` (got VALUE)`` when ``show_input`` and
    the bad value is a scalar (for values typed on a command line). Raise it ``from None``.
    """
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"])
    message = f"{source}: field {field!r}: {first['msg']}" if field else f"{source}: {first['msg']}"
    value = first.get("input")
    if show_input and isinstance(value, (str, int, float, bool)):
        message += f" (got {value!r})"
    return HeronError(message)


class IntegrityError(HeronError):
    """A stored file does not match what its manifest recorded (size, header or checksum), or is missing.

    The message names the file and what differs. Never answered from: the index (or server member) that
    raised it is unusable until rebuilt or restored; a server reports the member as failed (HTTP 503 for
    searches on it) and keeps serving the others.
    """

    def __init__(self, path: object, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem
