"""Decoder inputs: embeddings instead of / mixed with ids, and cached incremental decoding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_jax.hf.testing import random_params
from lm_jax.models.config import DecoderConfig
from lm_jax.models.decoder import Decoder, init_cache
from lm_jax.models.generate import greedy_generate

CONFIGS = {
    "llama": DecoderConfig(model_type="llama", vocab_size=128, hidden_size=32,
                           intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                           head_dim=8),
    # A window of 4 slots: incremental decoding must drop exactly the slots full recomputation
    # drops, also across padding.
    "mistral": DecoderConfig(model_type="mistral", vocab_size=128, hidden_size=32,
                             intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                             head_dim=8, sliding_window=4),
}
# Different matmul shapes (batched vs alone, cached vs full) reorder fp32 sums.
TOL = dict(atol=1e-4, rtol=1e-5)


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def setup(request):
    config = CONFIGS[request.param]
    params = random_params(config, seed=0)
    return config, Decoder(config), params


def _fwd(model):
    return jax.jit(lambda p, ids, embeds, where, mask: model.apply(
        {"params": p}, ids, embeds, where, attention_mask=mask).logits)


def _padded(b=3, t=12, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 128, (b, t)).astype(np.int32)
    mask = np.ones((b, t), np.int32)
    mask[1, :3] = 0   # left padding
    mask[2, -2:] = 0  # right padding
    return ids, mask


def _real(x, mask):
    return np.asarray(x)[mask.astype(bool)]


def test_embedding_rows_equal_ids(setup):
    config, model, params = setup
    ids, mask = _padded()
    fwd = _fwd(model)
    by_ids = fwd(params, ids, None, None, mask)
    rows = model.apply({"params": params}, jnp.asarray(ids), method=Decoder.embed)
    by_embeds = fwd(params, None, rows, None, mask)
    np.testing.assert_array_equal(_real(by_embeds, mask), _real(by_ids, mask))


def test_vectors_at_chosen_positions_with_padding(setup):
    config, model, params = setup
    ids, mask = _padded(seed=1)
    b, t = ids.shape
    vecs = np.asarray(jax.random.normal(jax.random.key(1), (b, t, config.hidden_size)))
    where = np.zeros((b, t), bool)
    where[0, [2, 5]] = True
    where[1, [3, 4]] = True   # the first real tokens of the left-padded row
    where[2, [0, 9]] = True
    fwd = _fwd(model)
    mixed = fwd(params, ids, vecs, where, mask)
    rows = np.asarray(model.apply({"params": params}, jnp.asarray(ids), method=Decoder.embed))
    full = np.where(where[..., None], vecs, rows)
    ref = fwd(params, None, full, None, mask)
    np.testing.assert_allclose(_real(mixed, mask), _real(ref, mask), **TOL)
    # Padding does not leak between rows: the padded rows alone, unpadded, agree.
    for i in (1, 2):
        keep = mask[i].astype(bool)
        alone = fwd(params, ids[i:i + 1, keep], vecs[i:i + 1, keep], where[i:i + 1, keep],
                    np.ones((1, keep.sum()), np.int32))[0]
        np.testing.assert_allclose(np.asarray(alone), np.asarray(mixed[i])[keep], **TOL)
    # The vectors really matter.
    plain = fwd(params, ids, None, None, mask)
    assert np.abs(_real(plain, mask) - _real(mixed, mask)).max() > 1e-2


def test_incremental_decoding_equals_full_recomputation(setup):
    config, model, params = setup
    ids, mask = _padded(seed=2, t=14)
    # Prompts are left-padded; the last 6 tokens are decoded one by one, after a prefill of 8.
    mask = np.ones_like(mask)
    mask[1, :3] = 0
    mask[2, :1] = 0
    full = np.asarray(_fwd(model)(params, ids, None, None, mask))
    step = jax.jit(lambda p, i, m, c: model.apply({"params": p}, i, attention_mask=m, cache=c))
    cache = init_cache(config, ids.shape[0], ids.shape[1] + 2)
    out = step(params, ids[:, :8], mask[:, :8], cache)
    got = [np.asarray(out.logits)]
    cache = out.cache
    for j in range(8, ids.shape[1]):
        out = step(params, ids[:, j:j + 1], mask[:, j:j + 1], cache)
        got.append(np.asarray(out.logits))
        cache = out.cache
    got = np.concatenate(got, axis=1)
    np.testing.assert_allclose(_real(got, mask), _real(full, mask), **TOL)
    assert int(cache["index"]) == ids.shape[1]


def test_greedy_generate_with_embeddings_equals_ids(setup):
    config, model, params = setup
    ids, mask = _padded(seed=3)
    mask = np.ones_like(mask)
    mask[1, :4] = 0
    rows = model.apply({"params": params}, jnp.asarray(ids), method=Decoder.embed)
    where = np.zeros(ids.shape, bool)
    where[:, 6:9] = True
    gen = jax.jit(lambda p, i, m, e, w: greedy_generate(model, p, i, m, 6, None, input_embeds=e,
                                                        embeds_mask=w))
    by_ids, _ = gen(params, ids, mask, None, None)
    by_embeds, _ = gen(params, ids, mask, rows, where)
    np.testing.assert_array_equal(np.asarray(by_embeds), np.asarray(by_ids))
