"""Trainers publish their output through heron.storage: a run killed right before the swap leaves the
previous checkpoint exactly as it was (same files, same bytes, still loadable); a run killed right after
it leaves the new checkpoint whole.

Each test trains a tiny model in-process into OUTPUT, then runs the same trainer again in a subprocess
with ``HERON_TEST_KILL_AT`` set, which makes :func:`heron.storage.publish` SIGKILL its own process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from heron.storage import KILL_ENV, sha256_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# runs ``module.function(ConfigClass(**config), output, progress=False)`` in a fresh interpreter
_RUN = """
import importlib, json, sys
module = importlib.import_module(sys.argv[1])
config = getattr(module, sys.argv[2])(**json.loads(sys.argv[3]))
getattr(module, sys.argv[4])(config, sys.argv[5], progress=False)
"""

TRAINERS = {  # name → (module, config class, training function)
    "splade": ("heron.training.splade", "SpladeTrainConfig", "train_splade"),
    "csr": ("heron.training.csr", "CSRTrainConfig", "train_csr"),
    "colbert": ("heron.training.colbert", "ColBERTTrainConfig", "train_colbert"),
    "prf": ("heron.training.prf", "PRFTrainConfig", "train_prf"),
}


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """A tiny random masked LM (SPLADE base) and its encoder alone (dense / ColBERT backbone)."""
    from test_splade import _tiny_model
    from transformers import BertModel

    root = tmp_path_factory.mktemp("kill-models")
    mlm = _tiny_model(root / "mlm")
    backbone = root / "backbone"
    BertModel.from_pretrained(str(mlm)).save_pretrained(str(backbone), safe_serialization=True)
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"):
        if (mlm / name).exists():
            (backbone / name).write_bytes((mlm / name).read_bytes())
    return {"mlm": mlm, "backbone": backbone}


@pytest.fixture(scope="module")
def bm25_index(tiny_beir, tmp_path_factory) -> Path:
    from heron.build.config import make_config
    from heron.build.index import build_index

    path = tmp_path_factory.mktemp("kill-prf") / "tiny-bm25"
    build_index(make_config({"dataset": str(tiny_beir), "output": str(path), "encoder": {"type": "bm25"}}),
                progress=False)
    return path


@pytest.fixture
def heron_cache(tmp_path, monkeypatch):
    """A heron cache of the test's own (corpus embeddings of the tiny models), shared with the subprocess."""
    monkeypatch.setenv("HERON_CACHE", str(tmp_path / "cache"))


def _config(name: str, tiny_beir: Path, models: dict[str, Path], index: Path | None, **overrides) -> dict:
    """The smallest settings each trainer accepts (one or two steps on the tiny BEIR set)."""
    common = {"steps": 1, "seed": 0, "threads": 1}
    if name == "splade":
        config = {"datasets": [str(tiny_beir)], "base": str(models["mlm"]), "batch_size": 2, "negatives": 0,
                  "document_length": 32, "query_length": 8}
    elif name == "csr":
        config = {"datasets": [str(tiny_beir)], "base": str(models["backbone"]), "k": 4, "hidden_mult": 2,
                  "batch_size": 4, "recon_batch": 4, "aux_k": 8}
    elif name == "colbert":
        config = {"datasets": [str(tiny_beir)], "base": str(models["backbone"]), "dim": 8, "batch_size": 2,
                  "negatives": 0, "query_length": 8, "document_length": 32}
    else:
        config = {"dataset": str(tiny_beir), "index": str(index), "feedback": [0, 1], "batch_size": 4,
                  "candidates": 5}
    return {**common, **config, **overrides}


def _train_here(name: str, config: dict, output: Path) -> Path:
    import importlib

    module, config_cls, function = TRAINERS[name]
    mod = importlib.import_module(module)
    return getattr(mod, function)(getattr(mod, config_cls)(**config), output, progress=False)


def _train_killed(name: str, config: dict, output: Path, point: str) -> subprocess.CompletedProcess:
    module, config_cls, function = TRAINERS[name]
    env = {**os.environ, KILL_ENV: point, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-c", _RUN, module, config_cls, json.dumps(config), function, str(output)],
                          capture_output=True, text=True, env=env, timeout=300)


def _hashes(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` (relative path → sha256)."""
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def _load(name: str, output: Path):
    """Reopen a checkpoint the way heron uses it, and use it once."""
    if name == "splade":
        from heron.retrieval.encoders.splade import SpladeEncoder

        assert SpladeEncoder.load(output, device="cpu").encode_documents(["protein in the cell"]).nnz > 0
    elif name == "csr":
        from heron.retrieval.encoders.csr import SparseAutoencoder

        SparseAutoencoder.load(output)
    elif name == "colbert":
        from heron.retrieval.encoders.multivector import MultiVectorEncoder

        assert MultiVectorEncoder(output, device="cpu").encode_queries(["protein"])[0].shape[1] == 8
    else:
        from heron.retrieval.prf import PRFModel

        PRFModel.load(output)
    return json.loads((output / "training.json").read_text())


@pytest.mark.parametrize("name", list(TRAINERS))
def test_killed_before_the_swap_keeps_the_previous_checkpoint(name, tiny_beir, tiny_models, heron_cache, tmp_path,
                                                              request):
    index = request.getfixturevalue("bm25_index") if name == "prf" else None
    output = tmp_path / "ckpt"
    _train_here(name, _config(name, tiny_beir, tiny_models, index), output)
    before = _hashes(output)
    assert "training.json" in before
    proc = _train_killed(name, _config(name, tiny_beir, tiny_models, index, seed=1, steps=2), output, "publish")
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert _hashes(output) == before
    (staging,) = tmp_path.glob(".ckpt.staged-*")  # killed at the trainer's own publish: its new folder is complete
    assert set(_hashes(staging)) == set(before) and _hashes(staging) != before
    assert _load(name, output)["history"]  # the first run's checkpoint, whole and usable
    assert not list(tmp_path.glob(".ckpt.old"))


def test_killed_after_the_swap_leaves_the_new_checkpoint(tiny_beir, tiny_models, heron_cache, tmp_path):
    output = tmp_path / "ckpt"
    _train_here("splade", _config("splade", tiny_beir, tiny_models, None), output)
    before = _hashes(output)
    proc = _train_killed("splade", _config("splade", tiny_beir, tiny_models, None, steps=2), output, "published")
    assert proc.returncode == -9, proc.stderr[-2000:]
    after = _hashes(output)
    assert after != before and set(after) == set(before)  # the same files, new contents
    assert _load("splade", output)["config"]["steps"] == 2
    # the next run tidies what the killed one left beside the target, and publishes again
    _train_here("splade", _config("splade", tiny_beir, tiny_models, None, steps=3), output)
    assert _load("splade", output)["config"]["steps"] == 3
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".ckpt")) == []
