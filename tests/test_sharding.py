"""Mesh, logical rules and a sharded forward/SGD step on 8 fake CPU devices vs one device."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from lm_jax import sharding
from lm_jax.hf.testing import random_params
from lm_jax.models.config import DecoderConfig
from lm_jax.models.decoder import Decoder, init_params
from lm_jax.models.lora import LoraSpec

CONFIG = DecoderConfig(model_type="llama", vocab_size=128, hidden_size=64, intermediate_size=128,
                       num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16)
ADAPTERS = (LoraSpec("a", rank=4, alpha=4.0, dropout=0.0),)


def test_eight_fake_devices():
    assert jax.device_count() == 8


def test_make_mesh_sizes_and_errors():
    mesh = sharding.make_mesh(data=-1, fsdp=2, tensor=2)
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert mesh.axis_names == ("data", "fsdp", "tensor")
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)
    assert dict(sharding.make_mesh(data=1, tensor=-1).shape) == {"data": 1, "fsdp": 1, "tensor": 8}
    assert dict(sharding.make_mesh(data=1, fsdp=1, tensor=1,
                                   devices=jax.devices()[:1]).shape)["data"] == 1
    with pytest.raises(sharding.MeshError, match="3 devices"):
        sharding.make_mesh(data=3, fsdp=1, tensor=1)
    with pytest.raises(sharding.MeshError, match="not divisible"):
        sharding.make_mesh(data=-1, fsdp=3)
    with pytest.raises(sharding.MeshError, match="at most one"):
        sharding.make_mesh(data=-1, fsdp=-1)


def test_default_rules():
    rules = dict(sharding.DEFAULT_RULES)
    assert rules == {"batch": ("data", "fsdp"), "length": None, "embed": "fsdp",
                     "mlp": "tensor", "heads": "tensor", "kv": "tensor", "vocab": "tensor",
                     "norm": None}


def test_param_shardings_follow_logical_names():
    mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
    shard = sharding.param_shardings_for(CONFIG, mesh, ADAPTERS)
    layer = shard["layers_0"]
    assert shard["embed_tokens"]["embedding"].spec == P("tensor", "fsdp")
    assert shard["lm_head"]["kernel"].spec == P("fsdp", "tensor")
    assert layer["attn"]["q_proj"]["kernel"].spec == P("fsdp", "tensor")
    assert layer["attn"]["o_proj"]["kernel"].spec == P("tensor", "fsdp")
    assert layer["mlp"]["down_proj"]["kernel"].spec == P("tensor", "fsdp")
    assert layer["attn"]["q_proj"]["lora_a_a"].spec == P("fsdp", None)
    assert layer["attn"]["q_proj"]["lora_a_b"].spec == P(None, "tensor")
    assert layer["input_norm"]["scale"].spec == P(None)
    # Same answer from concrete boxed params as from the abstract init.
    abstract = jax.eval_shape(lambda r: init_params(CONFIG, r, ADAPTERS), jax.random.key(0))
    boxed = jax.tree.map(lambda box, x: box.replace_boxed(x), abstract,
                         random_params(CONFIG, adapters=ADAPTERS),
                         is_leaf=lambda x: isinstance(x, nn.Partitioned))
    assert isinstance(boxed["final_norm"]["scale"], nn.Partitioned)
    concrete = sharding.logical_to_sharding(boxed, mesh)
    assert jax.tree.map(lambda s: s.spec, concrete) == jax.tree.map(lambda s: s.spec, shard)


def test_dims_a_mesh_axis_does_not_divide_stay_replicated():
    mesh = sharding.make_mesh(data=1, fsdp=1, tensor=8)
    # 2 KV heads x 16 = 32 divides by 8, but a 12-wide dim does not.
    spec = sharding.logical_to_pspec(("embed", "kv"), (64, 12), mesh)
    assert spec == P(None, None)
    assert sharding.logical_to_pspec(("batch", "length"), (8, 5), mesh) == P(None, None)
    mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
    assert sharding.logical_to_pspec(("batch", "length", "embed"), (8, 5, 64), mesh) == \
        P(("data", "fsdp"), None, None)
    assert sharding.logical_to_pspec(("batch",), (6,), mesh) == P("data")


def test_batch_sharding_and_global_batch():
    mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
    assert sharding.batch_sharding(mesh).spec == P(("data", "fsdp"))
    assert sharding.data_sharding(mesh, 3).spec == P(("data", "fsdp"), None, None)
    batch = sharding.make_global_batch({"ids": np.arange(40).reshape(8, 5),
                                        "step": np.array(3)}, mesh)
    assert batch["ids"].shape == (8, 5)
    assert batch["ids"].sharding == NamedSharding(mesh, P(("data", "fsdp"), None))
    assert batch["ids"].addressable_shards[0].data.shape == (2, 5)
    np.testing.assert_array_equal(np.asarray(batch["ids"]), np.arange(40).reshape(8, 5))
    assert int(batch["step"]) == 3
    with pytest.raises(sharding.MeshError, match="'ids'.*not divisible"):
        sharding.make_global_batch({"ids": np.zeros((6, 5))}, mesh)


def test_initialize_distributed_single_process_is_a_noop():
    assert sharding.initialize_distributed() is False
    assert sharding.initialize_distributed() is False
    assert jax.process_count() == 1


def _loss(params, batch, model, adapter):
    logits = model.apply({"params": params}, batch["ids"], attention_mask=batch["mask"],
                         adapter=adapter).logits
    logp = jax.nn.log_softmax(logits[:, :-1])
    nll = -jnp.take_along_axis(logp, batch["ids"][:, 1:, None], axis=-1)[..., 0]
    w = batch["mask"][:, 1:] * batch["mask"][:, :-1]
    return jnp.sum(nll * w) / jnp.sum(w), logits


def _sgd_step(params, batch, model, adapter=None):
    (loss, logits), grads = jax.value_and_grad(_loss, has_aux=True)(params, batch, model, adapter)
    return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), loss, logits


def test_sharded_forward_and_sgd_step_match_single_device():
    model = Decoder(CONFIG, ADAPTERS)
    params = random_params(CONFIG, seed=0, adapters=ADAPTERS)
    params = jax.tree.map(lambda x: x + 0.01 if x.ndim == 2 else x, params)  # B != 0 too
    rng = np.random.default_rng(0)
    local = {"ids": rng.integers(0, 128, (8, 12)).astype(np.int32),
             "mask": np.ones((8, 12), np.int32)}
    local["mask"][1, :3] = 0
    local["mask"][5, -4:] = 0

    step = jax.jit(lambda p, b: _sgd_step(p, b, model, "a"))
    ref_params, ref_loss, ref_logits = step(params, local)

    mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
    shardings = sharding.param_shardings_for(CONFIG, mesh, ADAPTERS)
    sharded = sharding.shard_tree(params, shardings)
    batch = sharding.make_global_batch(local, mesh)
    with sharding.use_mesh(mesh):
        assert nn.get_logical_axis_rules() == sharding.DEFAULT_RULES
        sharded_step = jax.jit(
            lambda p, b: _sgd_step(p, b, model, "a"),
            in_shardings=(shardings, sharding.batch_sharding(mesh)),
            out_shardings=(shardings, sharding.replicated(mesh),
                           sharding.batch_sharding(mesh, 2)))
        new_params, loss, logits = sharded_step(sharded, batch)
    q = new_params["layers_1"]["attn"]["q_proj"]["kernel"]
    assert q.sharding.spec == P("fsdp", "tensor")
    assert len({s.device for s in q.addressable_shards}) == 8
    np.testing.assert_allclose(float(loss), float(ref_loss), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(ref_logits), atol=1e-5, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b),
                                                         atol=1e-5, rtol=1e-5),
                 new_params, ref_params)
    # The step moved the parameters (the comparison is not between two no-ops).
    moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()),
                         ref_params, params)
    assert min(jax.tree.leaves(moved)) > 0
