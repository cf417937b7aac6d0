"""The demo's compressor stage: trains a separate base on reconstruction, saves it, is reused."""

import os

import jax
import numpy as np
import pytest

from lm_jax.hf.checkpoint import load_hf_config, load_params
from lm_jax.train import build as build_lib
from lm_jax.train.loop import prepare
from lm_jax.train.metrics_log import read_metrics
from lm_jax.train.pretrain import MEM_EMBEDDING_FILE

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
