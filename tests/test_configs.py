"""Every shipped config validates, and the CLI's section overrides merge into a config's sections."""

from __future__ import annotations

from pathlib import Path

import pytest

from heron.errors import HeronError
from heron.indexing.build import load_config
from heron.indexing.pipeline import is_bundle_config, load_bundle_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_validates(path):
    import yaml

    if is_bundle_config(yaml.safe_load(path.read_text())):
        bundle = load_bundle_config(path)
        assert bundle.dataset in path.name and str(bundle.output).startswith("indexes/")
        for name in bundle.indexes:  # every member resolves to a valid single-index config
            assert bundle.member_index_config(name, Path("x")).encoder.type == bundle.indexes[name].encoder.type
        return
    config = load_config(path)
    assert config.dataset in path.name and str(config.output).startswith("indexes/")
    if config.multivector is not None:
        config.multivector.reductions()


def test_overrides_merge_sections(tmp_path):
    config = load_config(CONFIGS[0].parent / "scifact-minilm-hnsw.yaml", faiss={"type": "flat"})
    assert config.faiss.type == "flat" and config.faiss.m == 32  # other fields kept
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: scifact\noutput: x\nmultivector: {crisp: C4x8, prune: tail}\n"
                   "encoder: {type: multivector}\n")
    with pytest.raises(HeronError, match="choose crisp or prune"):
        load_config(bad).multivector.reductions()
    bad.write_text("dataset: scifact\noutput: x\nfaiss: {type: hnsw, nlist: 4}\n")
    with pytest.raises(HeronError, match="faiss.nlist|unknown parameter"):
        from heron.indexing.faiss_index import default_params

        cfg = load_config(bad)
        default_params(cfg.faiss.type, 100, 8, cfg.faiss.params())


def test_bundle_config_errors(tmp_path):
    bad = tmp_path / "bundle.yaml"
    bad.write_text("dataset: scifact\noutput: x\nindexes:\n  a+b: {encoder: {type: bm25}}\n")
    with pytest.raises(HeronError, match="bundle.yaml: field 'indexes'.*no '\\+'"):
        load_bundle_config(bad)
    bad.write_text("dataset: scifact\noutput: x\ndefault: dense\nindexes:\n  bm25: {encoder: {type: bm25}}\n")
    with pytest.raises(HeronError, match="field 'default': 'dense' is not a member"):
        load_bundle_config(bad)
    bad.write_text("dataset: scifact\noutput: x\nindexes:\n  bm25: {encoder: {type: bm25}, search: {k: 3}}\n")
    with pytest.raises(HeronError, match="indexes.bm25.search.*unknown search option"):
        load_bundle_config(bad)
    bad.write_text("dataset: scifact\noutput: x\nindexes:\n  bm25: {encoder: {type: bm25, nonsense: 1}}\n")
    with pytest.raises(HeronError, match="indexes.bm25.encoder.nonsense"):
        load_bundle_config(bad)
