"""Orchestration: config → encoders → index (or bundle of indexes), above retrieval and training.

``heron build-index`` lands here: :func:`build_index` builds one index from an
:class:`~heron.build.config.IndexConfig`; :func:`build_bundle` builds every member of a
:class:`~heron.build.bundle.BundleConfig` (training a member's model first when asked) and publishes
them together. The index types themselves live in :mod:`heron.indexing`, which never imports this package.
"""

from heron.build.bundle import BundleConfig, build_bundle, is_bundle_config, load_bundle_config
from heron.build.config import (
                                EncoderConfig,
                                FaissConfig,
                                IndexConfig,
                                MultiVectorConfig,
                                load_config,
                                make_config,
                                read_config_file,
)
from heron.build.index import build_index, reindex
from heron.retrieval import set_index_builder


def build_from_mapping(raw: dict):
    """Build the index a config mapping describes (what the named retrievers ``splade`` / ``dense`` use)."""
    return build_index(make_config(raw))


set_index_builder(build_from_mapping)

__all__ = ["BundleConfig", "EncoderConfig", "FaissConfig", "IndexConfig", "MultiVectorConfig", "build_bundle",
           "build_from_mapping", "build_index", "is_bundle_config", "load_bundle_config", "load_config", "make_config",
           "read_config_file", "reindex"]
