"""LoRA: identity at init, gradients reach only adapters, merging, several adapters on one base."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_jax.hf.testing import random_params
from lm_jax.models.config import DecoderConfig
from lm_jax.models.decoder import Decoder
from lm_jax.models.lora import LoraSpec, merge_adapter, merge_params, split_params

CONFIG = DecoderConfig(model_type="qwen2", vocab_size=128, hidden_size=32, intermediate_size=64,
                       num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8, qkv_bias=True)
ADAPTERS = (
    LoraSpec("reader", rank=4, alpha=8.0, dropout=0.0),
    LoraSpec("writer", rank=2, alpha=2.0, dropout=0.0,
             targets=("q_proj", "v_proj", "gate_proj", "up_proj", "down_proj")),
)


@pytest.fixture(scope="module")
def base():
    params = random_params(CONFIG, 0, ADAPTERS)
    ids = np.random.default_rng(0).integers(0, 128, (2, 9)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, :2] = 0
    model = Decoder(CONFIG, ADAPTERS)
    fwd = jax.jit(lambda p, i, m, adapter=None: model.apply(
        {"params": p}, i, attention_mask=m, adapter=adapter).logits, static_argnames="adapter")
    return params, ids, mask, fwd


def _randomize_b(params, seed):
    """Gives every `lora_*_b` (zero at init) random values, so adapters change the output."""
    leaves, tree = jax.tree_util.tree_flatten_with_path(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    out = [0.1 * jax.random.normal(k, x.shape) if str(path[-1]).endswith("_b']") else x
           for k, (path, x) in zip(keys, leaves)]
    return jax.tree_util.tree_unflatten(tree, out)


def test_fresh_adapters_are_identity(base):
    params, ids, mask, fwd = base
    plain = jax.jit(lambda p: Decoder(CONFIG).apply({"params": p}, ids, attention_mask=mask))
    plain = plain(split_params(params, [r"lora_"])[1]).logits
    base_out = np.asarray(fwd(params, ids, mask, None))
    # Only fusion order differs from the adapter-free model.
    np.testing.assert_allclose(base_out, np.asarray(plain), atol=1e-6)
    for adapter in ("reader", "writer"):
        np.testing.assert_array_equal(np.asarray(fwd(params, ids, mask, adapter)), base_out)


def test_gradients_reach_only_adapter_params(base):
    params, ids, mask, fwd = base
    trainable, frozen = split_params(params, [r"lora_reader_"])
    flat_train = jax.tree_util.tree_flatten_with_path(trainable)[0]
    assert flat_train and all("lora_reader_" in jax.tree_util.keystr(p) for p, _ in flat_train)
    frozen_before = jax.tree.map(np.array, frozen)

    def loss(train, frozen):
        logits = fwd(merge_params(train, frozen), ids, mask, "reader")
        return -jnp.mean(jax.nn.log_softmax(logits)[..., 7])

    @jax.jit
    def sgd(train, frozen):
        value, grads = jax.value_and_grad(loss)(train, frozen)
        return jax.tree.map(lambda p, g: p - 0.5 * g, train, grads), grads, value

    train1, grads0, loss0 = sgd(trainable, frozen)
    # Gradients exist only for the trainable tree; B gets signal at init (A only once B != 0).
    assert jax.tree.structure(grads0) == jax.tree.structure(trainable)
    for path, g in jax.tree_util.tree_flatten_with_path(grads0)[0]:
        if jax.tree_util.keystr(path).endswith("_b']"):
            assert np.abs(np.asarray(g)).max() > 0, jax.tree_util.keystr(path)
    _, grads1, loss1 = sgd(train1, frozen)
    assert float(loss1) < float(loss0)
    for path, g in jax.tree_util.tree_flatten_with_path(grads1)[0]:
        assert np.abs(np.asarray(g)).max() > 0, jax.tree_util.keystr(path)
    jax.tree.map(np.testing.assert_array_equal, frozen, frozen_before)


def test_merge_adapter_equals_base_plus_adapter(base):
    params, ids, mask, fwd = base
    params = _randomize_b(params, 1)
    plain = jax.jit(lambda p: Decoder(CONFIG).apply({"params": p}, ids, attention_mask=mask))
    for spec in ADAPTERS:
        merged = merge_adapter(params, spec)
        assert not any("lora_" in jax.tree_util.keystr(p)
                       for p, _ in jax.tree_util.tree_flatten_with_path(merged)[0])
        out = plain(merged).logits
        np.testing.assert_allclose(np.asarray(out), np.asarray(fwd(params, ids, mask, spec.name)),
                                   atol=1e-5, rtol=1e-5)


def test_named_adapters_select_different_outputs(base):
    params, ids, mask, fwd = base
    params = _randomize_b(params, 2)
    plain, reader, writer = (np.asarray(fwd(params, ids, mask, a))
                             for a in (None, "reader", "writer"))
    assert np.abs(reader - plain).max() > 1e-3
    assert np.abs(writer - plain).max() > 1e-3
    assert np.abs(reader - writer).max() > 1e-3
    with pytest.raises(ValueError, match="adapter 'nope' is not defined"):
        fwd(params, ids, mask, "nope")
