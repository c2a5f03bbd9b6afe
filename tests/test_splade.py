"""SPLADE encoder: parity with sentence-transformers, pooling, batching, pruning, IDF queries, persistence."""

from __future__ import annotations

import inspect
import json
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from heron.errors import HeronError
from heron.indexing.shards import SparseShardWriter, iter_shards, read_manifest
from heron.retrieval.encoders.idf import IDFQueryEncoder, document_frequencies, document_frequencies_from_shards
from heron.retrieval.encoders.splade import SpladeEncoder, encode_to_shards

WORDS = ("the cat dog sat on mat protein cell fever virus brain white matter gene cancer drug trial study "
         "result patient blood heart lung effect risk human mouse model data water light play run fast slow "
         "red blue green big small new old good bad first last high low").split()
TEXTS = [
    "The cat sat on the mat.",
    "Protein misfolding in brain cells; a study of human and mouse models. " * 6,
    "fever",
    "A randomised drug trial: blood, heart and lung effects on patients with cancer risk.",
    "Green light, red light",
    "big small new old good bad first last high low water data run play fast slow gene " * 3,
    "virus",
    "White matter of the human brain develops fast in the first study year",
]


def _vocab() -> list[str]:
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    return (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(".,;:!?'-") + letters
            + [f"##{c}" for c in letters] + WORDS)


def _tiny_model(directory, arch: str = "bert", seed: int = 0):
    """A randomly initialised masked LM with a small WordPiece vocabulary, saved with its tokenizer."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast, DistilBertConfig, DistilBertForMaskedLM

    directory.mkdir(parents=True, exist_ok=True)
    vocab = _vocab()
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # transformers 5 names the argument ``vocab``, transformers 4 ``vocab_file``
    arg = "vocab" if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters else "vocab_file"
    tokenizer = BertTokenizerFast(**{arg: str(directory / "vocab.txt")}, do_lower_case=True, model_max_length=128)
    assert tokenizer.tokenize("cat fever") == ["cat", "fever"]
    torch.manual_seed(seed)
    if arch == "bert":
        config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=128, initializer_range=0.2)
        model = BertForMaskedLM(config)
    else:
        config = DistilBertConfig(vocab_size=len(vocab), dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                  max_position_embeddings=128, initializer_range=0.2)
        model = DistilBertForMaskedLM(config)
    model.eval()
    model.save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return _tiny_model(tmp_path_factory.mktemp("tiny") / "bert", "bert")


@pytest.fixture(scope="module")
def tiny_distilbert(tmp_path_factory):
    return _tiny_model(tmp_path_factory.mktemp("tiny") / "distilbert", "distilbert", seed=1)


@pytest.fixture(scope="module")
def tiny_encoder(tiny_bert):
    return SpladeEncoder(tiny_bert, batch_size=3, device="cpu")


@pytest.fixture(scope="module")
def splade_tiny_path():
    from heron.models import resolve_model

    try:
        return resolve_model("splade-tiny")
    except Exception as exc:  # the weights cannot be had here: only then skip
        pytest.skip(f"splade-tiny unavailable: {exc}")


def _naive(model_dir, texts, max_length, activation="relu"):
    """w_j = max_i log(1 + ReLU(logit_ij)) over non-padding tokens, straight from the definition."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForMaskedLM.from_pretrained(str(model_dir)).eval()
    batch = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt",
                return_token_type_ids=False)
    with torch.inference_mode():
        logits = model(**batch).logits
    act = torch.log1p(torch.relu(logits))
    if activation == "log1p_relu":
        act = torch.log1p(act)
    act = act * batch["attention_mask"].unsqueeze(-1)
    return act.max(dim=1).values.numpy()


# -- (1) parity with sentence-transformers ------------------------------------------------------------
def test_parity_with_sentence_transformers(splade_tiny_path, tmp_path):
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SparseEncoder
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.sparse_encoder.modules import SpladePooling

    transformer = Transformer(str(splade_tiny_path), transformer_task="fill-mask", max_seq_length=48)
    st = SparseEncoder(modules=[transformer, SpladePooling("max", activation_function="relu")], device="cpu")
    expected = st.encode(TEXTS, convert_to_tensor=True).to_dense().numpy()

    enc = SpladeEncoder(splade_tiny_path, doc_max_length=48, batch_size=3, device="cpu")
    got = enc.encode_documents(TEXTS)
    assert isinstance(got, sp.csr_matrix) and got.dtype == np.float32
    assert got.shape == (len(TEXTS), 30522) == expected.shape
    assert len(enc.vocabulary) == 30522 and enc.vocabulary[101] == "[CLS]"
    np.testing.assert_allclose(got.toarray(), expected, atol=1e-4, rtol=0)
    assert got.nnz == int((expected > 0).sum())  # only non-zeros stored, none lost
    # special-token columns are whatever the model gives, as in sentence-transformers
    for col in (101, 102):
        np.testing.assert_allclose(got[:, col].toarray().ravel(), expected[:, col], atol=1e-4)

    # the saved sentence-transformers folder: max_seq_length comes from it
    st.save(str(tmp_path / "st"))
    from_folder = SpladeEncoder(tmp_path / "st", device="cpu")
    assert from_folder.doc_max_length == 48
    np.testing.assert_allclose(from_folder.encode_queries(TEXTS).toarray(), expected, atol=1e-4, rtol=0)


def test_router_with_static_query_embedding(tiny_bert, tmp_path):
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SparseEncoder
    from sentence_transformers.base.modules import Router, Transformer
    from sentence_transformers.sparse_encoder.modules import SparseStaticEmbedding, SpladePooling

    transformer = Transformer(str(tiny_bert), transformer_task="fill-mask", max_seq_length=32)
    weight = torch.rand(len(_vocab())) * 3
    static = SparseStaticEmbedding(tokenizer=transformer.tokenizer, weight=weight, frozen=True)
    router = Router.for_query_document(query_modules=[static], document_modules=[transformer, SpladePooling("max")])
    st = SparseEncoder(modules=[router], device="cpu")
    st.save(str(tmp_path / "router"))
    queries = ["cat fever", "the brain of a mouse", "green light"]  # no special tokens: ST weights them too
    expected_q = st.encode_query(queries, convert_to_tensor=True).to_dense().numpy()
    expected_d = st.encode_document(TEXTS[:3], convert_to_tensor=True).to_dense().numpy()

    enc = SpladeEncoder(tmp_path / "router", device="cpu")
    assert enc.query_mode == "idf" and enc.doc_max_length == 32
    np.testing.assert_allclose(enc.encode_queries(queries).toarray(), expected_q, atol=1e-6)
    np.testing.assert_allclose(enc.encode_documents(TEXTS[:3]).toarray(), expected_d, atol=1e-5)


# -- (2) max before activation == the formula -----------------------------------------------------------
@pytest.mark.parametrize("arch", ["bert", "distilbert"])
@pytest.mark.parametrize("path", ["per-document head", "batched head", "model head"])
def test_max_before_activation_matches_naive(arch, path, tiny_bert, tiny_distilbert, monkeypatch):
    from heron.retrieval.encoders import splade

    folder = tiny_bert if arch == "bert" else tiny_distilbert
    if path == "model head":  # the generic path: the model's own logits, masked max
        monkeypatch.setattr(splade._MLMSide, "_split_head", lambda self, model: None)
    enc = SpladeEncoder(folder, doc_max_length=40, batch_size=4, device="cpu")
    side = enc._doc
    assert (side.head is None) == (path == "model head")  # else heron's projection matched the model's head
    if path == "batched head":  # what runs on CUDA, here on CPU
        weight_t, bias = side.head
        side.head, side.per_document_head = (weight_t.t().contiguous(), bias), False
    expected = _naive(folder, TEXTS, 40)
    got = enc.encode_documents(TEXTS).toarray()
    assert (expected > 0).mean() > 0.2  # a random model: plenty of non-zeros to compare
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_sum_pooling_matches_naive(tiny_bert):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    enc = SpladeEncoder(tiny_bert, pooling="sum", device="cpu", batch_size=3)
    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    model = AutoModelForMaskedLM.from_pretrained(str(tiny_bert)).eval()
    batch = tok(TEXTS, padding=True, truncation=True, max_length=enc.doc_max_length, return_tensors="pt",
                return_token_type_ids=False)
    with torch.inference_mode():
        act = torch.log1p(torch.relu(model(**batch).logits)) * batch["attention_mask"].unsqueeze(-1)
    np.testing.assert_allclose(enc.encode_documents(TEXTS).toarray(), act.sum(dim=1).numpy(), atol=1e-4, rtol=1e-5)


def test_legacy_st_folder_with_log1p_relu(tiny_bert, tmp_path):
    import shutil

    folder = tmp_path / "legacy"
    shutil.copytree(tiny_bert, folder)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.sparse_encoder.models.MLMTransformer"},
        {"idx": 1, "name": "1", "path": "1_SpladePooling",
         "type": "sentence_transformers.sparse_encoder.models.SpladePooling"}]))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 24, "do_lower_case": False}))
    (folder / "1_SpladePooling").mkdir()
    (folder / "1_SpladePooling" / "config.json").write_text(
        json.dumps({"pooling_strategy": "max", "activation_function": "log1p_relu"}))
    enc = SpladeEncoder(folder, device="cpu")
    assert enc.doc_max_length == 24 and enc.describe()["activation"] == "log1p_relu"
    np.testing.assert_allclose(enc.encode_documents(TEXTS).toarray(), _naive(tiny_bert, TEXTS, 24, "log1p_relu"),
                               atol=1e-5, rtol=1e-5)
    enc.save(tmp_path / "saved")  # the copy is a plain masked-LM folder; the settings travel in heron_encoder.json
    assert not (tmp_path / "saved" / "model" / "modules.json").exists()
    loaded = SpladeEncoder.load(tmp_path / "saved", device="cpu")
    assert loaded.describe() == enc.describe()
    assert (loaded.encode_queries(TEXTS) != enc.encode_queries(TEXTS)).nnz == 0


# -- (3) length-sorted batches == one at a time --------------------------------------------------------
def test_sorted_batches_equal_batch_size_one(tiny_bert):
    batched = SpladeEncoder(tiny_bert, batch_size=3, device="cpu").encode_documents(TEXTS)
    enc = SpladeEncoder(tiny_bert, batch_size=1, device="cpu")
    single = enc.encode_documents(TEXTS)
    assert batched.shape == single.shape
    np.testing.assert_allclose(batched.toarray(), single.toarray(), atol=1e-5, rtol=1e-5)
    # and the order is the input order: row i is text i encoded alone
    for i in (0, 1, 5):
        np.testing.assert_allclose(batched[i].toarray(), enc.encode_documents([TEXTS[i]]).toarray(), atol=1e-5)


# -- (4) top-k pruning ---------------------------------------------------------------------------------
def test_top_k_keeps_the_largest(tiny_bert, tiny_encoder):
    full = tiny_encoder.encode_documents(TEXTS).toarray()
    pruned = SpladeEncoder(tiny_bert, doc_top_k=5, query_top_k=3, device="cpu")
    docs = pruned.encode_documents(TEXTS)
    queries = pruned.encode_queries(TEXTS)
    for k, matrix in ((5, docs), (3, queries)):
        assert matrix.has_sorted_indices
        for i in range(len(TEXTS)):
            row = matrix[i]
            assert row.nnz == min(k, int((full[i] > 0).sum()))
            np.testing.assert_allclose(np.sort(row.data)[::-1], np.sort(full[i])[::-1][: row.nnz], atol=1e-6)
            np.testing.assert_allclose(row.data, full[i, row.indices], atol=1e-6)


# -- (5) inference-free IDF queries --------------------------------------------------------------------
def test_idf_query_weights_by_hand(tiny_bert, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    vocab = tok.get_vocab()
    df = np.zeros(len(vocab), dtype=np.int64)
    df[vocab["cat"]], df[vocab["fever"]], df[vocab["the"]] = 1, 4, 10
    enc = IDFQueryEncoder.fit(tok, df, num_docs=10)
    q = enc.encode(["The cat CAT fever [CLS] zzzqx", "dog"])
    assert q.shape == (2, len(vocab)) and q.dtype == np.float32
    row = dict(zip(q[0].indices.tolist(), q[0].data.tolist()))
    expected = {vocab["cat"]: math.log(10 / 2), vocab["fever"]: math.log(10 / 5),  # each distinct token once
                vocab["z"]: math.log(10), vocab["##z"]: math.log(10), vocab["##q"]: math.log(10),
                vocab["##x"]: math.log(10)}
    # "the": log(10/11) < 0 → 0 (dropped); [CLS] (special) → 0
    assert row.keys() == expected.keys()
    for col, weight in expected.items():
        assert row[col] == pytest.approx(weight, rel=1e-6)
    assert dict(zip(q[1].indices.tolist(), q[1].data.tolist())) == pytest.approx({vocab["dog"]: math.log(10)})

    bm25 = IDFQueryEncoder.fit(tok, df, num_docs=10, formula="bm25").encode(["fever"])
    assert bm25[0, vocab["fever"]] == pytest.approx(math.log1p((10 - 4 + 0.5) / 4.5), rel=1e-6)

    enc.save(tmp_path / "idf")
    assert not list((tmp_path / "idf").glob("*.pkl"))
    again = IDFQueryEncoder.load(tmp_path / "idf")
    assert (again.encode(["The cat fever"]) != enc.encode(["The cat fever"])).nnz == 0
    np.testing.assert_array_equal(again.df, df)


def test_fit_idf_queries_from_encoded_corpus(tiny_bert):
    enc = SpladeEncoder(tiny_bert, device="cpu")
    docs = enc.encode_documents(TEXTS)
    df = document_frequencies(docs)
    assert df.shape == (enc.vocab_size,) and df.max() <= len(TEXTS)
    enc.fit_idf_queries(df, len(TEXTS))
    assert enc.query_mode == "idf" and enc.describe()["idf"]["num_docs"] == len(TEXTS)
    q = enc.encode_queries(["cat fever"])
    vocab = enc.tokenizer.get_vocab()
    for word in ("cat", "fever"):
        expected = max(0.0, math.log(len(TEXTS) / (1 + df[vocab[word]])))
        assert q[0, vocab[word]] == pytest.approx(expected, rel=1e-6, abs=1e-7)


# -- (6) blank queries ----------------------------------------------------------------------------------
def test_empty_and_whitespace_queries(tiny_encoder, tiny_bert):
    q = tiny_encoder.encode_queries(["", "   \t\n", "cat", ""])
    assert q.shape == (4, tiny_encoder.vocab_size)
    assert q.getnnz(axis=1).tolist()[:2] == [0, 0] and q[2].nnz > 0 and q[3].nnz == 0
    assert tiny_encoder.encode_queries([]).shape == (0, tiny_encoder.vocab_size)
    assert tiny_encoder.encode_queries(["", " "]).nnz == 0
    assert tiny_encoder.encode_documents([" "]).nnz == 0
    idf = IDFQueryEncoder.fit(tiny_bert, np.zeros(tiny_encoder.vocab_size, dtype=np.int64), num_docs=3)
    assert idf.encode(["", "  "]).shape == (2, tiny_encoder.vocab_size) and idf.encode([" "]).nnz == 0


# -- (7) save / load ------------------------------------------------------------------------------------
def test_save_load_round_trip(tiny_bert, tiny_distilbert, tmp_path):
    queries = ["cat on the mat", "", "protein study"]
    shared = SpladeEncoder(tiny_bert, query_max_length=16, query_top_k=8, device="cpu")
    shared.save(tmp_path / "shared")
    assert not [p for p in (tmp_path / "shared").rglob("*") if p.suffix in (".bin", ".pt", ".pkl")]
    loaded = SpladeEncoder.load(tmp_path / "shared", device="cpu")
    assert loaded.describe() == shared.describe()
    assert (loaded.encode_queries(queries) != shared.encode_queries(queries)).nnz == 0
    assert (loaded.encode_documents(TEXTS) != shared.encode_documents(TEXTS)).nnz == 0

    # efficient SPLADE: a separate query model (same vocabulary)
    split = SpladeEncoder(tiny_bert, tiny_distilbert, device="cpu")
    assert split.query_mode == "model"
    split.save(tmp_path / "split")
    query_only = SpladeEncoder.load(tmp_path / "split", device="cpu")
    assert not query_only.has_documents and query_only.describe() == split.describe()
    np.testing.assert_array_equal(query_only.encode_queries(queries).toarray(), split.encode_queries(queries).toarray())
    with pytest.raises(HeronError):
        query_only.encode_documents(["x"])
    split.save(tmp_path / "split-full", include_documents=True)
    full = SpladeEncoder.load(tmp_path / "split-full", device="cpu")
    assert (full.encode_documents(TEXTS) != split.encode_documents(TEXTS)).nnz == 0

    # inference-free: tokenizer + idf only
    free = SpladeEncoder(tiny_bert, device="cpu")
    free.fit_idf_queries(document_frequencies(free.encode_documents(TEXTS)), len(TEXTS))
    free.save(tmp_path / "free")
    assert not list((tmp_path / "free").rglob("*.safetensors"))
    again = SpladeEncoder.load(tmp_path / "free", device="cpu")
    assert again.describe() == free.describe() and again.query_mode == "idf"
    assert (again.encode_queries(queries) != free.encode_queries(queries)).nnz == 0
    json.dumps(again.describe())


def test_saved_encoder_config_errors(tiny_bert, tiny_encoder, tmp_path):
    """heron_encoder.json and idf_query.json are read by heron.storage.read_versioned_json: one wording."""
    from heron.retrieval.encoders.dense import DenseEncoder

    folder = tiny_encoder.save(tmp_path / "enc")
    path = folder / "heron_encoder.json"
    config = json.loads(path.read_text())
    with pytest.raises(HeronError, match="not a saved heron dense encoder \\(type 'splade'\\)"):
        DenseEncoder.load(folder)
    path.write_text(json.dumps({**config, "version": 99}))
    with pytest.raises(HeronError, match="saved heron SPLADE encoder format version 99 is not supported"):
        SpladeEncoder.load(folder)
    path.unlink()
    with pytest.raises(HeronError, match="heron_encoder.json: missing"):
        SpladeEncoder.load(folder)
    idf = IDFQueryEncoder.fit(tiny_bert, np.zeros(tiny_encoder.vocab_size, dtype=np.int64), num_docs=3)
    idf.save(tmp_path / "idf")
    idf_config = tmp_path / "idf" / "idf_query.json"
    idf_config.write_text(json.dumps({**json.loads(idf_config.read_text()), "version": 2}))
    with pytest.raises(HeronError, match="heron IDF query encoder format version 2 is not supported"):
        IDFQueryEncoder.load(tmp_path / "idf")


# -- (8) streaming to shards ----------------------------------------------------------------------------
def test_encode_to_shards_equals_encode_documents(tiny_encoder, tmp_path):
    docs = [(f"d{i}", text) for i, text in enumerate(TEXTS)]
    expected = tiny_encoder.encode_documents(TEXTS)
    writer = SparseShardWriter(tmp_path / "a", vocab_size=tiny_encoder.vocab_size, meta=tiny_encoder.describe())
    stats = encode_to_shards(tiny_encoder, iter(docs), writer, chunk_size=3, progress=False)
    assert stats == {"num_docs": 8, "written": 8, "skipped": 0, "nnz": expected.nnz}
    manifest = read_manifest(tmp_path / "a")
    assert manifest["complete"] and [s["num_docs"] for s in manifest["shards"]] == [3, 3, 2]
    ids, mats = zip(*iter_shards(tmp_path / "a"))
    assert sum(ids, []) == [d for d, _ in docs]
    got = sp.vstack(mats, format="csr")
    np.testing.assert_allclose(got.toarray(), expected.toarray(), atol=1e-5, rtol=1e-5)
    df, n = document_frequencies_from_shards(tmp_path / "a")
    assert n == 8 and np.array_equal(df, document_frequencies(expected))

    # resume: an interrupted run (5 docs written, not closed) continues after them
    first = SparseShardWriter.resume(tmp_path / "b", tiny_encoder.vocab_size, meta=tiny_encoder.describe())
    encode_to_shards(tiny_encoder, docs[:5], first, chunk_size=5, progress=False, close=False)
    assert not read_manifest(tmp_path / "b")["complete"]
    stats = encode_to_shards(tiny_encoder, docs, tmp_path / "b", chunk_size=4, progress=False)
    assert stats["skipped"] == 5 and stats["written"] == 3 and stats["num_docs"] == 8
    got = sp.vstack([m for _, m in iter_shards(tmp_path / "b")], format="csr")
    np.testing.assert_allclose(got.toarray(), expected.toarray(), atol=1e-5, rtol=1e-5)
    # a different input than the one on disk is refused
    open_again = SparseShardWriter.resume(tmp_path / "b", tiny_encoder.vocab_size, meta=tiny_encoder.describe())
    with pytest.raises(HeronError, match="input changed"):
        encode_to_shards(tiny_encoder, [("x", "cat")] * 9, open_again, progress=False)


# -- the torch-free query encoder ------------------------------------------------------------------------
def _numpy_vs_torch(encoder: SpladeEncoder, folder, texts: list[str]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    from heron.retrieval.encoders.bert_numpy import NumpySpladeQueries

    encoder.save(folder)
    numpy_encoder = NumpySpladeQueries.load(folder)
    assert numpy_encoder is not None
    return numpy_encoder.encode_queries(texts), SpladeEncoder.load(folder, device="cpu").encode_queries(texts)


def test_numpy_queries_equal_torch_on_every_test_query(splade_tiny_path, tmp_path):
    """splade-tiny on every SciFact and NFCorpus test query (and a blank one): the same non-zero terms, the
    same weights within float32 rounding, whichever runtime encodes."""
    from heron.eval import load_dataset

    texts = [""]
    for name in ("scifact", "nfcorpus"):
        texts += list(load_dataset(name).queries("test").values())
    encoder = SpladeEncoder(splade_tiny_path, device="cpu", query_max_length=64)
    got, want = _numpy_vs_torch(encoder, tmp_path / "enc", texts)
    assert len(texts) > 600 and want.nnz > 10_000 and want[0].nnz == 0
    assert ((got != 0) != (want != 0)).nnz == 0
    assert abs(got - want).max() < 2e-5


@pytest.mark.parametrize("overrides", [{"query_top_k": 5}, {"activation": "log1p_relu", "query_max_length": 8}])
def test_numpy_queries_follow_the_saved_settings(tiny_bert, tmp_path, overrides):
    """A random BERT (gelu, lower-casing tokenizer) with top-k, the double log1p and truncation."""
    encoder = SpladeEncoder(tiny_bert, device="cpu", **overrides)
    got, want = _numpy_vs_torch(encoder, tmp_path / "enc", TEXTS + ["FEVER Virus"])
    assert ((got != 0) != (want != 0)).nnz == 0
    assert abs(got - want).max() < 2e-5
    if "query_top_k" in overrides:
        assert np.diff(got.indptr).max() == 5


def test_query_encoder_runtime_choice(tiny_bert, tiny_distilbert, tmp_path, monkeypatch):
    """numpy for BERT masked-LMs on a CPU machine; torch when asked, or for another architecture."""
    from heron.retrieval.encoders import load_query_encoder
    from heron.retrieval.encoders.bert_numpy import NumpySpladeQueries

    bert, distil = tmp_path / "bert", tmp_path / "distil"
    SpladeEncoder(tiny_bert, device="cpu").save(bert)
    SpladeEncoder(tiny_distilbert, device="cpu").save(distil)
    info = {"type": "splade"}
    monkeypatch.setenv("HERON_QUERY_ENCODER", "numpy")
    assert isinstance(load_query_encoder(info, bert), NumpySpladeQueries)
    assert isinstance(load_query_encoder(info, distil), SpladeEncoder)
    monkeypatch.setenv("HERON_QUERY_ENCODER", "torch")
    assert isinstance(load_query_encoder(info, bert), SpladeEncoder)
    monkeypatch.setenv("HERON_QUERY_ENCODER", "cuda")
    with pytest.raises(HeronError, match="HERON_QUERY_ENCODER"):
        load_query_encoder(info, bert)
