"""Dense encoder: parity with sentence-transformers, pooling modes, persistence; FAISS retriever errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from heron.errors import HeronError
from heron.retrieval.encoders.dense import DenseEncoder

TEXTS = ["The cat sat on the mat.", "Coffee intake and the risk of cancer in a large prospective cohort study "
         "of adults followed for ten years.", "", "fever", "White matter develops fast in the first year"]


def _tiny_st_folder(directory, pooling: str, normalize: bool):
    """A randomly initialised BERT saved as a sentence-transformers folder with the given pooling."""
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from test_splade import _tiny_model
    from transformers import BertModel

    mlm_dir = _tiny_model(directory / "mlm")
    model = BertModel.from_pretrained(str(mlm_dir))
    model.save_pretrained(str(directory), safe_serialization=True)
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"):
        if (mlm_dir / name).exists():
            (directory / name).write_bytes((mlm_dir / name).read_bytes())
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (directory / "modules.json").write_text(json.dumps(modules))
    (directory / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64, "do_lower_case": False}))
    (directory / "1_Pooling").mkdir()
    keys = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens", "max": "pooling_mode_max_tokens"}
    config = {"word_embedding_dimension": 32, **{v: k == pooling for k, v in keys.items()}}
    (directory / "1_Pooling" / "config.json").write_text(json.dumps(config))
    return directory


@pytest.mark.parametrize("pooling,normalize", [("cls", False), ("mean", True), ("max", False)])
def test_parity_with_sentence_transformers_tiny(tmp_path, pooling, normalize):
    st = pytest.importorskip("sentence_transformers")
    folder = _tiny_st_folder(tmp_path / "m", pooling, normalize)
    ours = DenseEncoder(folder, batch_size=2, device="cpu").encode_documents(TEXTS)
    theirs = st.SentenceTransformer(str(folder), device="cpu").encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


@pytest.mark.models
def test_parity_with_sentence_transformers_minilm(tmp_path):
    st = pytest.importorskip("sentence_transformers")
    from heron.models import resolve_model

    enc = DenseEncoder("minilm", batch_size=2, device="cpu")
    assert (enc.pooling, enc.normalize, enc.max_length, enc.dim) == ("mean", True, 256, 384)
    theirs = st.SentenceTransformer(str(resolve_model("minilm")), device="cpu").encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(enc.encode_documents(TEXTS), theirs, atol=1e-5)
    # saved into an index's encoder/ folder and reloaded: the same vectors
    enc.save(tmp_path / "encoder")
    assert not list((tmp_path / "encoder").rglob("*.bin"))
    again = DenseEncoder.load(tmp_path / "encoder", device="cpu")
    np.testing.assert_allclose(again.encode_queries(TEXTS), theirs, atol=1e-5)


def test_sorted_batches_equal_one_at_a_time(tmp_path):
    folder = _tiny_st_folder(tmp_path / "m", "mean", True)
    enc = DenseEncoder(folder, batch_size=3, device="cpu")
    batched = enc.encode_documents(TEXTS)
    single = np.concatenate([enc.encode_documents([t]) for t in TEXTS])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, rtol=1e-5)


def test_unsupported_module_and_lengths(tmp_path):
    folder = _tiny_st_folder(tmp_path / "m", "mean", False)
    with pytest.raises(HeronError, match="exceeds the model's 64 tokens"):
        DenseEncoder(folder, max_length=512, device="cpu")
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(HeronError, match="module 'Dense' is not supported"):
        DenseEncoder(folder, device="cpu")


def test_index_encoder_dimension_mismatch(tmp_path):
    from heron.indexing.faiss_index import build_faiss_index
    from heron.retrieval.dense import DenseIndexRetriever

    folder = _tiny_st_folder(tmp_path / "m", "mean", True)
    DenseEncoder(folder, device="cpu").save(tmp_path / "encoder")  # 32 dimensions
    vectors = np.eye(16, dtype=np.float32)
    path = build_faiss_index([([f"d{i}" for i in range(16)], vectors)], tmp_path / "ix", dim=16,
                             encoder_dir=tmp_path / "encoder", progress=False)
    with pytest.raises(HeronError, match="query encoder gives 32 dimensions, the index holds 16"):
        DenseIndexRetriever(path, device="cpu")


def test_pooling_by_hand():
    from heron.retrieval.encoders.dense import pool

    hidden = torch.tensor([[[1.0, 2.0], [3.0, 6.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(pool(hidden, mask, "mean"), torch.tensor([[2.0, 4.0]]))
    torch.testing.assert_close(pool(hidden, mask, "max"), torch.tensor([[3.0, 6.0]]))
    torch.testing.assert_close(pool(hidden, mask, "cls"), torch.tensor([[1.0, 2.0]]))
    torch.testing.assert_close(pool(hidden, mask, "lasttoken"), torch.tensor([[3.0, 6.0]]))
    torch.testing.assert_close(pool(hidden, mask, "mean_sqrt_len"), torch.tensor([[4.0, 8.0]]) / 2 ** 0.5)
