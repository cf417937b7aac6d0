"""The demo's compressor stage: trains a separate base on reconstruction, saves it, is reused."""

import os

import jax
import ml_collections
import numpy as np
import pytest

from lm_jax.data.records import EvidenceItem, QAExample
from lm_jax.data.tokenizer_train import train_tokenizer
from lm_jax.hf.checkpoint import load_hf_config, load_params
from lm_jax.train import build as build_lib
from lm_jax.train.loop import prepare
from lm_jax.train.metrics_log import read_metrics
from lm_jax.train.pretrain import MEM_EMBEDDING_FILE, compressor_texts

from .test_loop import tiny_config  # noqa: F401  (also puts configs/ and tests/ on the path)


def _stage_config(data_dir, **overrides):
    return tiny_config(
        data_dir, **{"model.init": "hf", "model.share_base": False,
                     "pretrain_generator.enabled": True, "pretrain_generator.total_steps": 2,
                     "pretrain_generator.max_len": 96,
                     "pretrain_compressor.enabled": True, "pretrain_compressor.total_steps": 40,
                     "pretrain_compressor.batch_size": 16,
                     "pretrain_compressor.learning_rate": 3e-3,
                     "log_every": 10, **overrides})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


def test_compressor_stage_learns_saves_and_is_not_rerun(tmp_path, data_dir):
    config = _stage_config(data_dir)
    workdir = str(tmp_path / "w")
    prepare(config, workdir)

    rows = read_metrics(workdir, "compressor")
    assert [r["step"] for r in rows] == [10, 20, 30, 40]
    assert rows[-1]["loss"] < 0.8 * rows[0]["loss"]
    comp_dir = os.path.join(workdir, "compressor")
    assert os.path.exists(os.path.join(comp_dir, "config.json"))
    assert not os.path.exists(comp_dir + ".tmp")

    # Rerunning the stage keeps what is there.
    stamp = os.path.getmtime(os.path.join(comp_dir, "config.json"))
    prepare(config, workdir)
    assert len(read_metrics(workdir, "compressor")) == len(rows)
    assert os.path.getmtime(os.path.join(comp_dir, "config.json")) == stamp

    # The Latent Memory model runs on it: its own base (not the reader's), its MEM vector.
    comps = build_lib.build(config, workdir)
    saved = load_params(comp_dir, build_lib.random_arch(config, len(comps.compressor_tokenizer)))
    for a, b in zip(jax.tree.leaves(comps.frozen["compressor"]), jax.tree.leaves(saved)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    gen = comps.frozen["generator"]["embed_tokens"]["embedding"]
    comp = comps.frozen["compressor"]["embed_tokens"]["embedding"]
    assert not np.allclose(np.asarray(gen), np.asarray(comp))
    np.testing.assert_array_equal(np.asarray(comps.trainable["heads"]["mem_embedding"]),
                                  np.load(os.path.join(comp_dir, MEM_EMBEDDING_FILE)))


@pytest.mark.parametrize("mode", ["fixed", "init"])
def test_compressor_stage_can_start_from_the_readers_embeddings(tmp_path, data_dir, mode):
    config = _stage_config(data_dir, **{"pretrain_compressor.reader_embeddings": mode,
                                        "pretrain_compressor.total_steps": 20})
    workdir = str(tmp_path / "w")
    prepare(config, workdir)
    reader_dir, comp_dir = os.path.join(workdir, "generator"), os.path.join(workdir, "compressor")
    reader = load_params(reader_dir, load_hf_config(reader_dir))
    comp = load_params(comp_dir, load_hf_config(comp_dir))
    same = np.array_equal(np.asarray(comp["embed_tokens"]["embedding"]),
                          np.asarray(reader["embed_tokens"]["embedding"]))
    assert same == (mode == "fixed")
    if mode == "init":  # trained from the reader's: still aligned with them (random: ~0)
        a, b = (np.asarray(p["embed_tokens"]["embedding"]).ravel() for p in (comp, reader))
        assert np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.5
    rows = read_metrics(workdir, "compressor")
    assert rows[-1]["loss"] < rows[0]["loss"]
    # The rest of the base was trained, not copied from the reader.
    assert not np.allclose(np.asarray(comp["layers_0"]["mlp"]["up_proj"]["kernel"]),
                           np.asarray(reader["layers_0"]["mlp"]["up_proj"]["kernel"]))


def test_untied_compressor_base_keeps_the_readers_embeddings_and_has_its_own_head(
        tmp_path, data_dir):
    config = _stage_config(data_dir, **{"pretrain_compressor.reader_embeddings": "fixed",
                                        "pretrain_compressor.tie_embeddings": False,
                                        "pretrain_compressor.total_steps": 20})
    workdir = str(tmp_path / "w")
    prepare(config, workdir)
    reader_dir, comp_dir = os.path.join(workdir, "generator"), os.path.join(workdir, "compressor")
    assert load_hf_config(reader_dir).tie_word_embeddings
    comp_config = load_hf_config(comp_dir)
    assert not comp_config.tie_word_embeddings
    reader = load_params(reader_dir, load_hf_config(reader_dir))
    comp = load_params(comp_dir, comp_config)
    emb = np.asarray(reader["embed_tokens"]["embedding"])
    np.testing.assert_array_equal(np.asarray(comp["embed_tokens"]["embedding"]), emb)
    head = np.asarray(comp["lm_head"]["kernel"])  # [H, V]
    assert head.shape == emb.T.shape and not np.allclose(head, emb.T)

    # The Latent Memory stage builds the compressor as that untied architecture.
    comps = build_lib.build(config, workdir)
    np.testing.assert_array_equal(np.asarray(comps.frozen["compressor"]["lm_head"]["kernel"]),
                                  head)
    assert "lm_head" not in comps.frozen["generator"]


def test_compressor_texts_are_the_distinct_evidence_and_optionally_the_questions(tmp_path):
    shared = EvidenceItem("Ada", "Ada was born in Oslo.", True)
    long = EvidenceItem("Bo", "Bo works at a very large bank in the town.", False)
    examples = [
        QAExample("a", "Where was Ada born?", "Oslo", "bridge", "easy",
                  [shared, long]),
        QAExample("b", "Where was Ada born?", "Oslo", "bridge", "easy",
                  [shared, EvidenceItem("Cy", "Cy is a pilot.", True)]),
    ]
    tok = train_tokenizer([e.render() for x in examples for e in x.evidence]
                          + [examples[0].question], tmp_path / "tok", vocab_size=300)
    data = ml_collections.ConfigDict(dict(max_evidence_len=6, max_question_len=9))

    ids, mask = compressor_texts(examples, tok, data, questions=False)
    assert ids.shape == mask.shape == (3, 6)  # three distinct items, truncated to 6 tokens
    assert mask.sum(1).max() == 6

    ids_q, mask_q = compressor_texts(examples, tok, data, questions=True)
    assert ids_q.shape == mask_q.shape == (4, 9)  # + one distinct question, width 9
    assert not mask_q[:3, 6:].any()  # evidence rows are still cut at 6 tokens
    np.testing.assert_array_equal(ids_q[:3, :6], ids)
    question = tok(examples[0].question, add_special_tokens=True)["input_ids"][:9]
    np.testing.assert_array_equal(ids_q[3, :len(question)], question)
    assert mask_q[3].sum() == len(question)


@pytest.mark.parametrize("key,value,needle", [
    ("model.share_base", True, "needs model.share_base=False"),
    ("pretrain_generator.enabled", False, "needs pretrain_generator.enabled"),
    ("pretrain_compressor.total_steps", 0, "pretrain_compressor.total_steps"),
    ("pretrain_compressor.reader_embeddings", "frozen", "reader_embeddings: must be one of"),
])
def test_compressor_stage_config_errors(tmp_path, data_dir, key, value, needle):
    with pytest.raises(build_lib.ConfigError, match=needle):
        prepare(_stage_config(data_dir, **{key: value}), str(tmp_path / "w"))
    assert not os.path.exists(tmp_path / "w" / "compressor")
