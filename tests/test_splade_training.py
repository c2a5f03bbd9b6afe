"""SPLADE training: the forward matches the encoder, a tiny run learns, checkpoints reload identically (heron and
transformers), seeds make runs repeatable, distillation from a run file, inference-free, and no test query leaks."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import torch

from heron.errors import HeronError
from heron.retrieval.encoders.splade import SpladeEncoder
from heron.training.splade import (
    SpladeTrainConfig,
    SpladeTrainer,
    build_training_set,
    load_config,
    splade_forward,
    train_splade,
)

WORDS = ("the of and in to a is for with protein cell brain gene cancer drug trial study patient blood risk human "
         "mouse model data effect level expression increased disease treatment").split()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A randomly initialised BERT masked LM with a small WordPiece vocabulary (letters + some words)."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    directory = tmp_path_factory.mktemp("tiny-bert") / "bert"
    directory.mkdir()
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(".,;:!?'-()") + [str(i) for i in range(10)]
             + letters + [f"##{c}" for c in letters] + [f"##{i}" for i in range(10)] + WORDS)
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    arg = "vocab" if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters else "vocab_file"
    tokenizer = BertTokenizerFast(**{arg: str(directory / "vocab.txt")}, do_lower_case=True, model_max_length=128)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, initializer_range=0.2)
    BertForMaskedLM(config).save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))
    return directory


def _config(tiny_beir, tiny_bert, **kw) -> SpladeTrainConfig:
    base = dict(datasets=[str(tiny_beir)], base=str(tiny_bert), steps=4, batch_size=4, lr=1e-3, threads=1,
                document_length=48, query_length=16, lambda_warmup=2, log_every=1)
    return SpladeTrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def tiny_data(tiny_beir, tiny_bert):
    return build_training_set(_config(tiny_beir, tiny_bert))


def _fixed_loss(trainer: SpladeTrainer, examples) -> float:
    """In-batch InfoNCE of fixed examples, dropout off (the measure a tiny run must lower)."""
    from heron.training.losses import contrastive

    trainer.model.eval()
    with torch.no_grad():
        q = trainer.encode_queries([e.query for e in examples])
        d = trainer.encode([trainer.data.texts[e.positive] for e in examples], trainer.config.document_length)
        value = float(contrastive(q @ d.t()))
    trainer.model.train()
    return value


def test_training_forward_is_the_encoders_definition(tiny_bert):
    texts = ["protein misfolding in the brain cell", "cancer drug trial", "a"]
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_bert))
    model = AutoModelForMaskedLM.from_pretrained(str(tiny_bert)).eval()
    batch = tok(texts, padding=True, truncation=True, max_length=32, return_tensors="pt", return_token_type_ids=False)
    with torch.no_grad():
        ours = splade_forward(model, batch["input_ids"], batch["attention_mask"]).numpy()
    served = SpladeEncoder(tiny_bert, device="cpu", doc_max_length=32).encode_documents(texts).toarray()
    np.testing.assert_allclose(ours, served, rtol=1e-4, atol=1e-5)


def test_training_and_serving_give_identical_document_vectors(tiny_beir, tiny_bert, tiny_data, monkeypatch):
    """The trainer and the encoder share one pooling function: with the model's full logits (no split-off
    projection) and one text per batch (no padding), their document vectors are equal to the last bit."""
    from heron.retrieval.encoders import splade

    monkeypatch.setattr(splade._MLMSide, "_split_head", lambda self, model: None)
    trainer = SpladeTrainer(_config(tiny_beir, tiny_bert), tiny_data)
    trainer.model.eval()
    length = trainer.config.document_length
    served = SpladeEncoder(tiny_bert, device="cpu", batch_size=1, doc_max_length=length)
    for text in ["protein misfolding in the brain cell", "cancer drug trial", "a", "gene " * 80]:
        with torch.no_grad():
            trained = trainer.encode([text], length).numpy()
        assert trained.any()
        np.testing.assert_array_equal(trained, served.encode_documents([text]).toarray())


def test_tiny_run_lowers_its_loss(tiny_beir, tiny_bert, tiny_data):
    config = _config(tiny_beir, tiny_bert, steps=25, batch_size=6, negatives=0, lambda_q=0, lambda_d=0, lr=3e-3)
    import dataclasses

    fixed = tiny_data.examples[:6]
    trainer = SpladeTrainer(config, dataclasses.replace(tiny_data, examples=fixed))  # train on them
    before = _fixed_loss(trainer, fixed)
    for _ in range(config.steps):
        trainer.step()
    after = _fixed_loss(trainer, fixed)
    assert after < before * 0.8, (before, after)


def test_regularisers_enter_the_loss_with_the_warmup(tiny_beir, tiny_bert, tiny_data):
    config = _config(tiny_beir, tiny_bert, steps=3, lambda_q=0.01, lambda_d=0.02, lambda_warmup=2,
                     query_regularizer="l1", flops_threshold=1)
    trainer = SpladeTrainer(config, tiny_data)
    parts = [trainer.step() for _ in range(3)]
    assert [p["l1_q_lambda"] for p in parts] == pytest.approx([0.01 / 4, 0.01, 0.01])
    assert [p["flops_d_lambda"] for p in parts] == pytest.approx([0.02 / 4, 0.02, 0.02])
    for p in parts:
        assert p["loss"] == pytest.approx(p["main"] + p["l1_q_lambda"] * p["l1_q"]
                                          + p["flops_d_lambda"] * p["flops_d"], rel=1e-5)
        assert p["l0_d"] > 0


def test_same_seed_same_history(tiny_beir, tiny_bert, tiny_data):
    def history(seed):
        trainer = SpladeTrainer(_config(tiny_beir, tiny_bert, seed=seed), tiny_data)
        return [trainer.step()["loss"] for _ in range(3)]

    first = history(7)
    assert history(7) == first
    assert history(8) != first


def test_checkpoint_reloads_and_encodes_identically(tiny_beir, tiny_bert, tiny_data, tmp_path):
    out = train_splade(_config(tiny_beir, tiny_bert, steps=3), tmp_path / "ckpt", progress=False, data=tiny_data)
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "heron_encoder.json", "training.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pkl"))]
    texts = ["protein expression in the human brain", "drug trial for cancer patients"]
    # the in-memory weights, reloaded by transformers
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model = AutoModelForMaskedLM.from_pretrained(str(out)).eval()
    tok = AutoTokenizer.from_pretrained(str(out))
    batch = tok(texts, padding=True, truncation=True, max_length=48, return_tensors="pt", return_token_type_ids=False)
    with torch.no_grad():
        expected = splade_forward(model, batch["input_ids"], batch["attention_mask"]).numpy()
    plain = SpladeEncoder(out, device="cpu", doc_max_length=48)  # a Hugging Face masked-LM folder
    saved = SpladeEncoder.load(out, device="cpu")  # heron_encoder.json: the trained lengths
    assert saved.doc_max_length == 48 and saved.query_max_length == 16 and saved.query_mode == "shared"
    for enc in (plain, saved):
        np.testing.assert_allclose(enc.encode_documents(texts).toarray(), expected, rtol=1e-4, atol=1e-5)
    # the reloaded weights are the trained ones (they moved away from the base)
    base = SpladeEncoder(tiny_bert, device="cpu", doc_max_length=48).encode_documents(texts).toarray()
    assert not np.allclose(base, expected)
    info = json.loads((out / "training.json").read_text())
    assert len(info["history"]) == 3 and info["config"]["steps"] == 3


def test_inference_free_checkpoint(tiny_beir, tiny_bert, tiny_data, tmp_path):
    config = _config(tiny_beir, tiny_bert, steps=2, inference_free=True)
    trainer = SpladeTrainer(config, tiny_data)
    assert [t.name for t in trainer.regularized.terms] == ["idf_flops_d"]  # documents only
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))
    out = train_splade(config, tmp_path / "doc", progress=False, data=tiny_data)
    enc = SpladeEncoder.load(out, device="cpu")
    assert enc.query_mode == "idf"
    q = enc.encode_queries(["the protein of a cell"])
    tok = enc.tokenizer
    ids = set(tok("the protein of a cell", add_special_tokens=False)["input_ids"])
    assert set(q.indices.tolist()) <= ids  # no expansion: only the query's own tokens, IDF-weighted
    # IDF is log(N / (1 + df)) over the training corpus: frequent "the" weighs less than rarer "protein"
    col = {t: tok.convert_tokens_to_ids(t) for t in ("the", "protein")}
    weights = dict(zip(q.indices.tolist(), q.data.tolist()))
    assert weights.get(col["the"], 0.0) < weights[col["protein"]]
    # the checkpoint folder alone (what build-index --model gets) brings its own IDF query side
    plain = SpladeEncoder(out, device="cpu")
    assert plain.query_mode == "idf"
    np.testing.assert_allclose(plain.encode_queries(["the protein of a cell"]).toarray(), q.toarray())


def test_inference_free_plain_flops_has_binary_queries(tiny_beir, tiny_bert, tiny_data, tmp_path):
    """SPLADE-doc, the baseline of IDF-aware FLOPS: query tokens weigh 1 and the penalty is plain FLOPS."""
    from heron.training.regularizers import FLOPS, IDFAwareFLOPS

    config = _config(tiny_beir, tiny_bert, steps=2, inference_free=True, doc_regularizer="flops")
    trainer = SpladeTrainer(config, tiny_data)
    (term,) = trainer.regularized.terms
    assert term.name == "flops_d" and type(term.regularizer) is FLOPS
    out = train_splade(config, tmp_path / "doc-binary", progress=False, data=tiny_data)
    q = SpladeEncoder(out, device="cpu").encode_queries(["the protein of a cell"])
    assert q.nnz > 0 and set(q.data.tolist()) == {1.0}
    idf_trainer = SpladeTrainer(_config(tiny_beir, tiny_bert, steps=2, inference_free=True), tiny_data)
    assert isinstance(idf_trainer.regularized.terms[0].regularizer, IDFAwareFLOPS)  # the default


def test_siamese_idf_aware_flops(tiny_beir, tiny_bert, tiny_data):
    """Siamese IDF-aware FLOPS: both sides weighted by (ī/idf)² from the training corpus; queries encoded."""
    from heron.training.regularizers import IDFWeightedFLOPS

    config = _config(tiny_beir, tiny_bert, steps=2, query_regularizer="idf_flops", doc_regularizer="idf_flops")
    trainer = SpladeTrainer(config, tiny_data)
    assert trainer.idf_encoder is None  # queries still go through the model
    names = [t.name for t in trainer.regularized.terms]
    assert names == ["idf_flops_q", "idf_flops_d"]
    reg = trainer.regularized.terms[1].regularizer
    assert isinstance(reg, IDFWeightedFLOPS)
    tok = trainer.tokenizer
    the, protein = (tok.convert_tokens_to_ids(t) for t in ("the", "protein"))
    assert reg.term_weights[the] > reg.term_weights[protein]  # frequent terms pay more
    assert float(reg.term_weights[tok.cls_token_id]) == pytest.approx((reg.reference / reg.floor) ** 2)
    before = trainer.step_count
    trainer.step()
    assert trainer.step_count == before + 1


def test_distillation_from_a_teacher_run(tiny_beir, tiny_bert, tmp_path):
    from heron.eval import load_dataset
    from heron.retrieval.bm25 import BM25Retriever

    ds = load_dataset(str(tiny_beir))
    run = BM25Retriever().retrieve(ds, ds.queries(None), k=10)  # test queries in the run are ignored
    path = tmp_path / "teacher.trec"
    with open(path, "w") as f:
        for qid, docs in run.items():
            for rank, (did, score) in enumerate(sorted(docs.items(), key=lambda x: -x[1]), start=1):
                f.write(f"{qid} Q0 {did} {rank} {score:.4f} bm25\n")
    for loss in ("margin_mse", "kl"):
        config = _config(tiny_beir, tiny_bert, steps=2, loss=loss, teacher_run=str(path), negatives=2)
        data = build_training_set(config)
        assert all(e.teacher is not None and e.positive in e.teacher for e in data.examples)
        assert not {e.query_key.split("/")[-1] for e in data.examples} & set(ds.qrels("test"))
        trainer = SpladeTrainer(config, data)
        parts = [trainer.step() for _ in range(2)]
        assert all(np.isfinite(p["loss"]) for p in parts)
    with pytest.raises(HeronError, match="teacher_run"):
        load_config(None, datasets=[str(tiny_beir)], loss="kl")


def test_test_qrels_never_reach_training(tiny_beir, tiny_bert, tiny_data, tmp_path):
    from heron.eval import load_dataset

    ds = load_dataset(str(tiny_beir))
    test_ids = set(ds.qrels("test"))
    assert test_ids
    train_ids = {e.query_key.split("/", 1)[1] for e in tiny_data.examples}
    assert train_ids and not train_ids & test_ids
    assert tiny_data.summaries[0]["query_ids"] == sorted(train_ids)
    with pytest.raises(HeronError, match="refusing to train"):
        build_training_set(_config(tiny_beir, tiny_bert, split="test"))
    # a train split that also holds a test query is refused
    leaky = tmp_path / "leaky"
    import shutil

    shutil.copytree(tiny_beir, leaky)
    with open(leaky / "qrels" / "train.tsv", "a") as f:
        f.write(f"{sorted(test_ids)[0]}\t{next(iter(ds.qrels('test')[sorted(test_ids)[0]]))}\t1\n")
    with pytest.raises(HeronError, match="evaluation qrels"):
        build_training_set(_config(leaky, tiny_bert))
    # triples whose query is an evaluation query are refused
    triples = tmp_path / "triples.tsv"
    queries = ds.queries("test")
    triples.write_text(f"{queries[sorted(test_ids)[0]]}\tsome positive\tsome negative\n")
    with pytest.raises(HeronError, match="evaluation query"):
        build_training_set(SpladeTrainConfig(triples=str(triples), guard_datasets=[str(tiny_beir)],
                                             base=str(tiny_bert)))


def test_triples_training(tiny_bert, tmp_path):
    triples = tmp_path / "triples.tsv"
    rows = [("cancer drug trial", "a drug trial in cancer patients", "mouse brain gene expression"),
            ("brain gene expression", "gene expression in the mouse brain", "blood risk of patients"),
            ("blood risk", "the risk of blood disease", "a cell protein model")]
    triples.write_text("".join("\t".join(r) + "\n" for r in rows))
    config = SpladeTrainConfig(triples=str(triples), base=str(tiny_bert), steps=2, batch_size=3, threads=1,
                               document_length=32, query_length=16)
    data = build_training_set(config)
    assert len(data.examples) == 3 and len(data.texts) == 6
    trainer = SpladeTrainer(config, data)
    assert np.isfinite(trainer.step()["loss"])
    bad = tmp_path / "bad.tsv"
    bad.write_text("only\ttwo\n")
    with pytest.raises(HeronError, match="bad.tsv:1: expected 3"):
        build_training_set(SpladeTrainConfig(triples=str(bad), base=str(tiny_bert)))


def test_config_files_and_errors(tmp_path):
    from pathlib import Path

    shipped = sorted((Path(__file__).resolve().parents[1] / "configs" / "train").glob("splade*.yaml"))
    assert shipped
    for path in shipped:
        assert isinstance(load_config(path, datasets=["scifact"]), SpladeTrainConfig)
    bad = tmp_path / "bad.yaml"
    for text, fragment in (("steps: 0", "steps"), ("not_a_field: 1", "not_a_field")):
        bad.write_text(f"datasets: [scifact]\n{text}\n")
        with pytest.raises(HeronError, match=fragment):
            load_config(bad)
    with pytest.raises(HeronError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_cli_train_splade(tiny_beir, tiny_bert, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    def heron(*args):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        return subprocess.run([sys.executable, "-m", "heron", "train", "splade", *args], capture_output=True,
                              text=True, env=env, timeout=600)

    config = Path(__file__).resolve().parents[1] / "configs" / "train" / "splade-idf-cpu.yaml"
    out = tmp_path / "cli-ckpt"
    proc = heron("-d", str(tiny_beir), "-c", str(config), "--base", str(tiny_bert), "--steps", "2",
                 "--batch-size", "3", "--document-length", "32", "--threads", "1", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    saved = json.loads((out / "training.json").read_text())
    assert saved["config"]["inference_free"] and saved["config"]["steps"] == 2
    assert SpladeEncoder.load(out, device="cpu").query_mode == "idf"
    for args, fragment in ((["--loss", "kl"], "teacher_run"), (["--split", "test"], "refusing to train")):
        proc = heron("-d", str(tiny_beir), "--base", str(tiny_bert), *args, "-o", str(tmp_path / "x"))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and fragment in proc.stderr, proc.stderr


def test_balanced_sampling_gives_each_source_an_equal_share(tiny_beir, tiny_bert):
    """Source a has 3 queries × 40 positives, b has 6 queries × 1: balanced batches split 50/50 by source;
    uniform-over-pairs batches are mostly a."""
    from heron.training.splade import Example, TrainingSet

    examples = [Example(f"a/q{q}", f"query a{q}", f"a/d{q}-{i}") for q in range(3) for i in range(40)]
    examples += [Example(f"b/q{q}", f"query b{q}", f"b/d{q}") for q in range(6)]
    texts = {e.positive: "protein cell" for e in examples}
    positives: dict[str, set[str]] = {}
    for e in examples:
        positives.setdefault(e.query_key, set()).add(e.positive)
    data = TrainingSet(examples, texts, positives, [])
    shares = {}
    for sampling in ("balanced", "pairs"):
        trainer = SpladeTrainer(_config(tiny_beir, tiny_bert, negatives=0, batch_size=4, sampling=sampling), data)
        picked = [b.query_key for _ in range(200) for b in trainer.sample_batch()[0]]
        assert all(len(set(b.query_key for b in trainer.sample_batch()[0])) == 4 for _ in range(20))  # distinct
        shares[sampling] = sum(k.startswith("a/") for k in picked) / len(picked)
    assert shares["balanced"] == pytest.approx(0.5)
    assert shares["pairs"] > 0.6  # a's 120 pairs crowd out b's 6 (up to 3 a-queries per batch of 4)
