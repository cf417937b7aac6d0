"""HF checkpoint import/export: round trips, sharded files, dtypes, shardings and bad input."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from lm_jax import sharding  # noqa: E402
from lm_jax.hf import checkpoint, testing  # noqa: E402
from lm_jax.hf.checkpoint import (  # noqa: E402
    CheckpointError,
    ConfigFileError,
    CorruptFileError,
    MissingTensorError,
    MissingWeightsError,
    ModelNotFoundError,
    TensorShapeError,
    UnexpectedTensorError,
    UnsupportedArchitectureError,
)
from lm_jax.models.config import UnsupportedModelError  # noqa: E402
from lm_jax.models.decoder import Decoder  # noqa: E402

IDS = np.random.default_rng(0).integers(3, 128, (2, 11)).astype(np.int32)
MASK = np.array([[1] * 11, [0] * 3 + [1] * 8], np.int32)


def _hf_logits(model_dir, dtype=torch.float32):
    model = transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, attn_implementation="eager", dtype=dtype).eval()
    with torch.no_grad():
        return model(input_ids=torch.as_tensor(IDS, dtype=torch.long),
                     attention_mask=torch.as_tensor(MASK, dtype=torch.long)).logits.float().numpy()


def _our_logits(config, params):
    return np.asarray(Decoder(config).apply({"params": params}, IDS, attention_mask=MASK).logits)


def _close(a, b, tol=1e-4):
    real = MASK.astype(bool)
    np.testing.assert_array_less(np.abs(a - b)[real], tol)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """variant -> checkpoint directory (never modified by tests; copy before corrupting)."""
    return {v: testing.make_tiny_checkpoint(str(tmp_path_factory.mktemp(v)), v)
            for v in ("llama", "qwen2_tied", "mistral")}


def _copy(src, tmp_path, name="ckpt"):
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return str(dst)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("variant", ["llama", "qwen2_tied", "mistral"])
def test_import_export_round_trip(ckpts, tmp_path, variant):
    src = ckpts[variant]
    config = checkpoint.load_hf_config(src)
    params = checkpoint.load_params(src, config)
    ours = _our_logits(config, params)
    ref = _hf_logits(src)
    _close(ours, ref)
    out = checkpoint.save_params(params, config, str(tmp_path / "export"))
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors"]
    # transformers rebuilds the same model: identical weights, identical logits.
    np.testing.assert_array_equal(_hf_logits(out), ref)
    original, exported = load_file(os.path.join(src, "model.safetensors")), \
        load_file(os.path.join(out, "model.safetensors"))
    assert sorted(exported) == sorted(original)
    for name, value in original.items():
        np.testing.assert_array_equal(exported[name], value)
    # And lm_jax re-imports its own export.
    again = checkpoint.load_params(out, checkpoint.load_hf_config(out))
    jax.tree.map(np.testing.assert_array_equal, again, params)


def test_sharded_index_checkpoint_equals_single_file(ckpts, tmp_path):
    src = ckpts["llama"]
    model = transformers.AutoModelForCausalLM.from_pretrained(src)
    sharded = str(tmp_path / "sharded")
    model.save_pretrained(sharded, max_shard_size="20KB")
    files = [f for f in os.listdir(sharded) if f.endswith(".safetensors")]
    assert len(files) > 1 and os.path.exists(os.path.join(sharded, checkpoint.INDEX_FILE))
    config = checkpoint.load_hf_config(sharded)
    single = checkpoint.load_params(src, config)
    jax.tree.map(np.testing.assert_array_equal, checkpoint.load_params(sharded, config), single)


def test_bfloat16_checkpoint_loads_as_float32_or_bfloat16(tmp_path):
    src = testing.make_tiny_checkpoint(str(tmp_path / "bf16"), "qwen2", dtype="bfloat16")
    config = checkpoint.load_hf_config(src)
    f32 = checkpoint.load_params(src, config)
    assert f32["embed_tokens"]["embedding"].dtype == jnp.float32
    bf16 = checkpoint.load_params(src, config, dtype="bfloat16")
    assert bf16["layers_0"]["attn"]["q_proj"]["kernel"].dtype == jnp.bfloat16
    # bf16 -> f32 is exact, so the f32 import is the bf16 model computed in f32.
    _close(_our_logits(config, f32), _hf_logits(src, dtype=torch.float32))


def test_tied_checkpoint_with_identical_lm_head_is_accepted(ckpts, tmp_path):
    d = _copy(ckpts["qwen2_tied"], tmp_path)
    path = os.path.join(d, "model.safetensors")
    tensors = load_file(path)
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].copy()
    save_file(tensors, path, metadata={"format": "pt"})
    config = checkpoint.load_hf_config(d)
    params = checkpoint.load_params(d, config)
    assert "lm_head" not in params
    # A head that differs is not "tied": refusing beats silently dropping it.
    tensors["lm_head.weight"] = tensors["lm_head.weight"] + 1.0
    save_file(tensors, path, metadata={"format": "pt"})
    with pytest.raises(UnexpectedTensorError, match="lm_head.weight") as e:
        checkpoint.load_params(d, config)
    assert path in str(e.value)


def test_load_with_shardings_places_each_tensor(ckpts, tmp_path):
    src = ckpts["llama"]
    config = checkpoint.load_hf_config(src)
    mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
    shardings = sharding.param_shardings_for(config, mesh)
    params = checkpoint.load_params(src, config, shardings=shardings)
    q = params["layers_0"]["attn"]["q_proj"]["kernel"]
    assert q.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
    assert q.addressable_shards[0].data.shape == (config.hidden_size // 2, 32)
    plain = checkpoint.load_params(src, config)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
                 params, plain)
    assert all(jax.tree.leaves(jax.tree.map(lambda s, x: s == x.sharding, shardings, params)))
    # Export gathers sharded arrays.
    out = checkpoint.save_params(params, config, str(tmp_path / "export"))
    exported, original = (load_file(os.path.join(d, "model.safetensors")) for d in (out, src))
    for name, value in original.items():
        np.testing.assert_array_equal(exported[name], value)


# --------------------------------------------------------------------------- bad input


def _rewrite(d, fn):
    path = os.path.join(d, "model.safetensors")
    tensors = load_file(path)
    fn(tensors)
    save_file(tensors, path, metadata={"format": "pt"})
    return path


def test_unsupported_model_type_names_config_file(ckpts, tmp_path):
    d = _copy(ckpts["llama"], tmp_path)
    cfg_path = os.path.join(d, "config.json")
    with open(cfg_path) as f:
        hf = json.load(f)
    hf["model_type"] = "gpt2"
    with open(cfg_path, "w") as f:
        json.dump(hf, f)
    with pytest.raises(UnsupportedArchitectureError, match="gpt2") as e:
        checkpoint.load_hf_config(d)
    assert cfg_path in str(e.value)
    assert isinstance(e.value, UnsupportedModelError) and isinstance(e.value, CheckpointError)


def test_missing_config_and_missing_weights(ckpts, tmp_path):
    with pytest.raises(ConfigFileError, match="config.json"):
        checkpoint.load_hf_config(str(tmp_path))
    d = _copy(ckpts["llama"], tmp_path)
    config = checkpoint.load_hf_config(d)
    os.remove(os.path.join(d, "model.safetensors"))
    with pytest.raises(MissingWeightsError, match="model.safetensors"):
        checkpoint.load_params(d, config)


def test_missing_tensor_names_tensor(ckpts, tmp_path):
    d = _copy(ckpts["llama"], tmp_path)
    _rewrite(d, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(MissingTensorError, match=r"model\.layers\.1\.mlp\.up_proj\.weight") as e:
        checkpoint.load_params(d, checkpoint.load_hf_config(d))
    assert d in str(e.value)


def test_wrong_shape_names_file_tensor_and_shapes(ckpts, tmp_path):
    d = _copy(ckpts["llama"], tmp_path)
    name = "model.layers.0.self_attn.k_proj.weight"
    path = _rewrite(d, lambda t: t.__setitem__(name, np.zeros((16, 48), np.float32)))
    with pytest.raises(TensorShapeError) as e:
        checkpoint.load_params(d, checkpoint.load_hf_config(d))
    msg = str(e.value)
    assert path in msg and name in msg and "[16, 48]" in msg and "[32, 48]" in msg


def test_unexpected_tensor_is_refused(ckpts, tmp_path):
    d = _copy(ckpts["llama"], tmp_path)
    path = _rewrite(d, lambda t: t.__setitem__("model.layers.0.self_attn.q_norm.weight",
                                               np.ones(16, np.float32)))
    with pytest.raises(UnexpectedTensorError, match=r"q_norm\.weight") as e:
        checkpoint.load_params(d, checkpoint.load_hf_config(d))
    assert path in str(e.value)


def test_truncated_file_names_file(ckpts, tmp_path):
    d = _copy(ckpts["llama"], tmp_path)
    path = os.path.join(d, "model.safetensors")
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size - 1000)
    with pytest.raises(CorruptFileError, match="truncated") as e:
        checkpoint.load_params(d, checkpoint.load_hf_config(d))
    assert path in str(e.value)


def test_resolve_model_dir(ckpts, tmp_path, monkeypatch):
    assert checkpoint.resolve_model_dir(ckpts["llama"]) == ckpts["llama"]
    with pytest.raises(ModelNotFoundError, match="--base_model=/no/such/dir"):
        checkpoint.resolve_model_dir("/no/such/dir", flag_name="--base_model")
    # An id that is not in the (empty) local cache, offline: no network, a pointer to the flag.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    with pytest.raises(ModelNotFoundError) as e:
        checkpoint.resolve_model_dir("someone/not-a-model", flag_name="--base_model",
                                     local_files_only=True)
    assert "pass a local directory" in str(e.value) and "--base_model" in str(e.value)


def test_save_refuses_unmerged_adapters(ckpts, tmp_path):
    src = ckpts["llama"]
    config = checkpoint.load_hf_config(src)
    params = checkpoint.load_params(src, config)
    params["layers_0"]["attn"]["q_proj"]["lora_x_a"] = jnp.zeros((48, 2))
    with pytest.raises(ValueError, match="merge_adapter"):
        checkpoint.save_params(params, config, str(tmp_path / "out"))
