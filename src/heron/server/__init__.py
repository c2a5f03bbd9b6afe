"""The HTTP query server: :func:`~heron.server.app.create_app` (FastAPI) and ``heron serve`` (uvicorn).

Needs the ``server`` extra (``pip install -e '.[server]'``).
"""

from heron.server.app import ServerSettings, create_app, parse_index_args

__all__ = ["ServerSettings", "create_app", "parse_index_args"]
