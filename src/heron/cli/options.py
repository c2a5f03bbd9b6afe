"""Command-line pieces several commands share: ``--search KEY=VALUE`` (``heron eval``, ``heron query``), numeric
options checked by the models of :mod:`heron.retrieval.options`, options refused where they do not apply."""

from __future__ import annotations

from heron.errors import HeronError, config_error


def _preset_names() -> list[str]:
    """The approximate-search presets ``--search preset=`` takes (from :class:`SearchOptions`'s field type)."""
    from typing import get_args

    from heron.retrieval.options import SearchOptions

    names: list[str] = []
    for arg in get_args(SearchOptions.model_fields["preset"].annotation):
        names.extend(get_args(arg))
    return names


SEARCH_HELP = ("Search option KEY=VALUE (repeatable; pairs may be joined by commas): mode (exact, taat, "
               f"approx), preset ({', '.join(_preset_names())}; with mode=approx), query_cut, heap_factor, "
               "ef_search, nprobe, truncate_dims, candidates (see above).")


def parse_search(values: list[str] | None) -> dict:
    """``--search`` values (``key=value``, several per value when comma-separated) as checked search options
    (:class:`heron.retrieval.options.SearchOptions`); a one-line HeronError names a bad key or value."""
    from pydantic import ValidationError

    from heron.retrieval.options import SEARCH_KEYS, SearchOptions

    raw: dict[str, str] = {}
    for value in values or []:
        for item in value.split(","):
            key, sep, setting = (part.strip() for part in item.partition("="))
            if not item.strip():
                continue
            if not sep or not key or not setting:
                raise HeronError(f"--search {item.strip()!r}: expected KEY=VALUE, e.g. mode=approx")
            key = key.replace("-", "_")
            if key not in SEARCH_KEYS:
                raise HeronError(f"--search {item.strip()}: unknown key {key!r} (known: {', '.join(SEARCH_KEYS)})")
            if raw.get(key, setting) != setting:
                raise HeronError(f"--search {key}: given twice ({raw[key]} and {setting})")
            raw[key] = setting
    try:
        return SearchOptions.model_validate(raw).given()
    except ValidationError as exc:
        raise config_error(exc, "--search", show_input=True) from None


def checked_flags(model, **fields):
    """``model`` (:mod:`heron.retrieval.options`: BM25Options, FusionOptions, PRFOptions) from command-line
    values given as ``field=(flag, value)``, ``None`` meaning not given. A bad value is a one-line HeronError
    naming the flag: ``--k1: Input should be a finite number (got nan)``, ``--fusion-weight (value 2): …``."""
    from pydantic import ValidationError

    try:
        return model.model_validate({name: value for name, (_, value) in fields.items() if value is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        name, *rest = first["loc"]
        flag = fields[name][0] + (f" (value {rest[0] + 1})" if rest and isinstance(rest[0], int) else "")
        raise HeronError(f"{flag}: {first['msg']} (got {first['input']!r})") from None


def refuse_unused(given: dict[str, object], reason: str) -> None:
    """A one-line HeronError when any of ``given`` (flag → value; ``None`` / ``False`` / empty = not given) was
    given: they do not apply, for ``reason``, and would be ignored without a word."""
    used = [flag for flag, value in given.items() if value not in (None, False, [], ())]
    if used:
        verb = "applies" if len(used) == 1 else "apply"
        raise HeronError(f"{', '.join(used)} {verb} {reason}")


#: the --search keys, one block of the help of each command that takes --search (lines fit 80 columns)
SEARCH_KEYS_HELP = """\
--search KEY=VALUE (repeat it, or join pairs with commas) sets how an index
is searched; each index type takes its own keys:
  inverted index: mode=exact|taat|approx. exact (the default) is exact
    top-k with block-max pruning; taat is exhaustive term-at-a-time, with
    the same results; approx is Seismic-style approximate search, tuned by
    preset=recall90|recall95|recall99, or by query_cut=N (query terms
    visited) and heap_factor=X (any X > 0: below 1 faster, above 1 more
    recall; recall99 uses 2.0).
  FAISS index: ef_search=N (HNSW), nprobe=N (IVF), truncate_dims=N (score
    by the first N dimensions).
  multi-vector index: candidates=N (MUVERA candidates reranked by MaxSim)."""


def with_search_keys(command):
    """Decorator: ``command``'s docstring with :data:`SEARCH_KEYS_HELP` where it says ``{search_keys}``."""
    indent = "\n    "
    command.__doc__ = command.__doc__.replace("{search_keys}", SEARCH_KEYS_HELP.replace("\n", indent))
    return command


#: short metavars by value type (typer's own read ``<list[float]>``, ``<int range>``, …)
_METAVARS = {"int": "N", "float": "X", "Path": "PATH", "str": "TEXT"}


def _short_metavar_command():
    from typer.core import TyperCommand

    class ShortMetavarCommand(TyperCommand):
        """A command whose help names option values by short metavars (N, X, PATH, TEXT), not typer's
        ``<list[float]>`` or ``<int range>``: the narrower type column leaves room for whole option names and
        a readable help column at 80 columns. An option's own ``metavar=`` wins."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            for param in self.params:
                if getattr(param, "is_flag", True) or param.metavar is not None:
                    continue
                bare = param.bare_type().removeprefix("list[").removesuffix("]")
                param.metavar = _METAVARS.get(bare)  # None (typer's own) for any other type

    return ShortMetavarCommand


#: ``app.command(..., cls=ShortMetavarCommand)``: help readable at 80 columns (see the class docstring)
ShortMetavarCommand = _short_metavar_command()
