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
