"""The jitted train step: sharded == single device, frozen weights untouched, adapters train."""

import functools

import jax
import numpy as np
import pytest

from lm_jax import sharding
from lm_jax.train.step import LossConfig, latent_memory_losses, make_optimizer, make_train_step

from .conftest import make_batch, to_jnp


def _step_fn(model, accum=1):
    loss_fn = functools.partial(latent_memory_losses, model, LossConfig(), 1, 2)
    tx, _ = make_optimizer(1e-3, 10)
    return make_train_step(loss_fn, tx, accum), tx


def _run(model, trainable, frozen, batch, steps, accum=1, mesh=None):
    step, tx = _step_fn(model, accum)
    if mesh is None:
        jitted = jax.jit(step)
        opt_state = tx.init(trainable)
        b = to_jnp(batch)
    else:
        abstract = jax.eval_shape(model.init, jax.random.key(0))
        with sharding.use_mesh(mesh):
            sh = sharding.logical_to_sharding(abstract, mesh)
        t_sh, f_sh = model.split(sh)
        trainable = sharding.shard_tree(trainable, t_sh)
        frozen = sharding.shard_tree(frozen, f_sh)
        opt_state = jax.jit(tx.init)(trainable)
        b = sharding.make_global_batch(batch, mesh)
        jitted = jax.jit(step, donate_argnums=(0, 1))
        with sharding.use_mesh(mesh):
            jitted = jitted.lower(trainable, opt_state, frozen, b, jax.random.key(0)).compile()
    metrics = []
    for i in range(steps):
        trainable, opt_state, m = jitted(trainable, opt_state, frozen, b, jax.random.key(i))
        metrics.append({k: float(v) for k, v in m.items()})
    return trainable, frozen, metrics


def test_sharded_step_matches_single_device(tiny_model_and_params):
    assert jax.device_count() == 8, "tests/conftest.py should fake 8 CPU devices"
    model, params = tiny_model_and_params
    trainable, frozen = model.split(params)
    batch = make_batch(b=4)
    t1, _, m1 = _run(model, trainable, frozen, batch, steps=1)
    mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
    # The sharded run donates its inputs: give it its own copies.
    t8, _, m8 = _run(model, jax.tree.map(np.array, trainable), jax.tree.map(np.array, frozen),
                     batch, steps=1, mesh=mesh)
    for k in ("loss", "loss_recon", "loss_contrast", "loss_distill"):
        assert m8[0][k] == pytest.approx(m1[0][k], rel=1e-5, abs=1e-6), k
    flat1 = jax.tree_util.tree_leaves_with_path(t1)
    flat8 = dict(jax.tree_util.tree_leaves_with_path(t8))
    for path, leaf in flat1:
        np.testing.assert_allclose(np.asarray(flat8[path]), np.asarray(leaf), atol=1e-5,
                                   err_msg=jax.tree_util.keystr(path))


def test_frozen_bit_identical_and_trainable_changes(tiny_model_and_params):
    model, params = tiny_model_and_params
    trainable, frozen = model.split(params)
    before_frozen = jax.tree.map(np.array, frozen)
    before_train = jax.tree.map(np.array, trainable)
    new_train, new_frozen, metrics = _run(model, trainable, frozen, make_batch(), steps=3)
    for a, b in zip(jax.tree.leaves(before_frozen), jax.tree.leaves(new_frozen)):
        assert np.array_equal(a, np.asarray(b))
    changed = {jax.tree_util.keystr(p): not np.array_equal(np.asarray(x), y)
               for (p, x), y in zip(jax.tree_util.tree_leaves_with_path(new_train),
                                    jax.tree.leaves(before_train))}
    # Every adapter of every kind, and every head, moved.
    for name in ("lora_compress_a", "lora_query_b", "lora_decode_b", "mem_embedding",
                 "retrieval_proj", "cross_proj"):
        assert any(v for k, v in changed.items() if name in k), name
    assert all(np.isfinite(m["loss"]) for m in metrics)


def test_accumulation_averages_microbatch_gradients(tiny_model_and_params):
    """accum=2 over [A; B] takes the same update as the mean of the two micro-batch grads."""
    model, params = tiny_model_and_params
    trainable, frozen = model.split(params)
    batch = make_batch(b=4)
    loss_fn = functools.partial(latent_memory_losses, model, LossConfig(), 1, 2)
    # Micro-batch i takes rows i, i+2 (every A-th row, keeping dim 0's sharding).
    micro = [{k: v[i::2] for k, v in batch.items()} for i in range(2)]
    rng = jax.random.key(0)
    grads = [jax.grad(loss_fn, has_aux=True)(trainable, frozen, to_jnp(m),
                                             jax.random.fold_in(rng, i))[0]
             for i, m in enumerate(micro)]
    mean_grad = jax.tree.map(lambda a, b: (a + b) / 2, *grads)
    import optax
    tx = optax.sgd(1.0)
    step = jax.jit(make_train_step(loss_fn, tx, accum_steps=2))
    new, _, _ = step(trainable, tx.init(trainable), frozen, to_jnp(batch), rng)
    for (p, n), o, g in zip(jax.tree_util.tree_leaves_with_path(new), jax.tree.leaves(trainable),
                            jax.tree.leaves(mean_grad)):
        np.testing.assert_allclose(np.asarray(n), np.asarray(o - g), rtol=1e-5, atol=1e-6,
                                   err_msg=jax.tree_util.keystr(p))
