"""Every shipped config validates (index, bundle and training configs), the CLI's section overrides merge
into a config's sections, and the search options keep one vocabulary from the kernels to the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from heron.build import is_bundle_config, load_bundle_config, load_config
from heron.errors import HeronError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
TRAIN_CONFIGS = CONFIGS[0].parent / "train"


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
    bad.write_text("dataset: scifact\noutput: x\nencoder: {type: dense}\nfaiss: {type: hnsw, nlist: 4}\n")
    with pytest.raises(HeronError, match="faiss.nlist|unknown parameter"):
        from heron.indexing.faiss_index import default_params

        cfg = load_config(bad)
        default_params(cfg.faiss.type, 100, 8, cfg.faiss.params())


BAD_BUNDLES = [
    ("indexes:\n  a+b: {encoder: {type: bm25}}\n", "bundle.yaml: field 'indexes'.*no '\\+'"),
    ("default: dense\nindexes:\n  bm25: {encoder: {type: bm25}}\n", "field 'default': 'dense' is not a member"),
    ("indexes:\n  bm25: {encoder: {type: bm25}, search: {k: 3}}\n", "indexes.bm25.search.*unknown search option"),
    ("indexes:\n  bm25: {encoder: {type: bm25, nonsense: 1}}\n", "indexes.bm25.encoder.nonsense"),
]


@pytest.mark.parametrize("body, error", BAD_BUNDLES)
def test_bundle_config_errors(tmp_path, body, error):
    bad = tmp_path / "bundle.yaml"
    bad.write_text("dataset: scifact\noutput: x\n" + body)
    with pytest.raises(HeronError, match=error):
        load_bundle_config(bad)


def test_search_sections_use_the_search_vocabulary():
    """Bundle members' search: sections hold SearchOptions keys and values; the option model's modes and
    presets are the kernels' (one name per search method from the kernels to the CLI)."""
    import typing

    import yaml

    from heron.indexing.inverted import approx, kernels
    from heron.retrieval.options import SearchOptions

    assert typing.get_args(SearchOptions.model_fields["mode"].annotation)[0] == typing.Literal[kernels.MODES]
    assert set(typing.get_args(typing.get_args(SearchOptions.model_fields["preset"].annotation)[0])) == \
        set(approx.PRESETS)
    sections = [member.get("search") or {} for path in CONFIGS
                for member in (yaml.safe_load(path.read_text()).get("indexes") or {}).values()]
    assert sections  # the shipped bundle searches its colbert member with MUVERA candidates
    for section in sections:
        assert SearchOptions.model_validate(section).given() == section


#: training config file prefix → the trainer's config model
TRAINERS = {"splade": ("heron.training.splade", "SpladeTrainConfig"),
            "prf": ("heron.training.prf", "PRFTrainConfig"),
            "csr": ("heron.training.csr", "CSRTrainConfig"),
            "colbert": ("heron.training.colbert", "ColBERTTrainConfig")}


@pytest.mark.parametrize("path", sorted(TRAIN_CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_training_config_validates(path):
    import importlib

    import yaml

    from heron.training.configs import load_config as load_training_config

    trainer = path.stem.split("-")[0]
    module, name = TRAINERS[trainer]
    model = getattr(importlib.import_module(module), name)
    target = {"dataset": "scifact", "index": "indexes/x"} if trainer == "prf" else {"datasets": ["scifact"]}
    config = load_training_config(path, model, **target)
    if trainer in ("csr", "colbert"):  # these two files hold the trainers' defaults, every field spelled out
        assert config == model(**target)
        assert set(yaml.safe_load(path.read_text())) == set(model.model_fields) - {"datasets", "threads"}
