"""Latent Memory composition: MEM placement, reconstruction targets, slots, multi-token memory."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_jax.models.config import DecoderConfig
from lm_jax.models.decoder import Decoder
from lm_jax.models.latent_memory import LatentMemory, LatentMemoryConfig, paper_adapters
from lm_jax.models.lora import merge_params

TINY = DecoderConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2,
                     num_heads=4, num_kv_heads=2, head_dim=8)


def _model(t=1, share=False):
    m = LatentMemory(LatentMemoryConfig(TINY, TINY, paper_adapters(4, 8.0, 0.0),
                                        num_latent_tokens=t, retrieval_dim=16, share_base=share))
    params = nn.unbox(m.init(jax.random.key(0)))
    return m, *m.split(params)


def _ids(rows, length):
    ids = np.zeros((len(rows), length), np.int32)
    mask = np.zeros((len(rows), length), np.int32)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = r
        mask[i, :len(r)] = 1
    return jnp.asarray(ids), jnp.asarray(mask)


@pytest.mark.parametrize("t", [1, 3])
def test_latent_is_hidden_state_after_real_tokens_and_ignores_padding(t):
    m, tr, fr = _model(t)
    rows = [[5, 6, 7], [8, 9, 10, 11, 12]]
    z_short = m.encode_evidence(tr, fr, *_ids(rows, 6))
    z_long = m.encode_evidence(tr, fr, *_ids(rows, 11))
    assert z_short.shape == (2, t, 32)
    np.testing.assert_allclose(z_short, z_long, atol=1e-6)
    # Same as running the compressor (compress adapter) by hand on [tokens, MEM_1..MEM_t].
    params = m.compressor_params(tr, fr)
    mem = tr["heads"]["mem_embedding"]
    ids = jnp.asarray([[8, 9, 10, 11, 12] + [0] * t])
    embeds = jnp.concatenate([jnp.zeros((1, 5, 32)), mem[None]], axis=1)
    emask = jnp.arange(5 + t)[None] >= 5
    out = Decoder(TINY, m.config.adapters).apply({"params": params}, ids, embeds, emask,
                                                 adapter="compress", return_hidden=True)
    np.testing.assert_allclose(z_short[1], out.hidden[0, 5:], atol=1e-5)


def test_query_and_keys_are_unit_vectors_and_multi_token_key_is_mean():
    m, tr, fr = _model(t=2)
    ids, mask = _ids([[5, 6], [7, 8, 9]], 4)
    q = m.encode_query(tr, fr, ids, mask)
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-5)
    z = m.encode_evidence(tr, fr, ids, mask)
    keys = m.retrieval_keys(tr, z)
    mean_key = m.retrieval_keys(tr, jnp.mean(z, axis=1, keepdims=True))
    np.testing.assert_allclose(keys, mean_key, atol=1e-6)


def test_reconstruction_targets_skip_bos_and_end_with_eos():
    m, tr, fr = _model(t=2)
    ids, mask = _ids([[1, 20, 21, 22], [30, 31]], 5)  # row 0 starts with BOS=1, row 1 does not
    z = m.encode_evidence(tr, fr, ids, mask)
    logits, targets, tmask = m.reconstruction(tr, fr, z, ids, mask, bos_id=1, eos_id=2)
    assert logits.shape == (2, 6, 64)
    np.testing.assert_array_equal(np.asarray(targets[0, :5]), [1, 20, 21, 22, 2])
    np.testing.assert_array_equal(np.asarray(tmask[0]), [0, 1, 1, 1, 1, 0])
    np.testing.assert_array_equal(np.asarray(targets[1, :3]), [30, 31, 2])
    np.testing.assert_array_equal(np.asarray(tmask[1]), [1, 1, 1, 0, 0, 0])
    # Logit row j is the decoder's output at input position T-1+j of [z1, z2, t0, t1, ...].
    params = m.compressor_params(tr, fr)
    full_ids = jnp.concatenate([jnp.zeros((2, 2), jnp.int32), ids], axis=1)
    embeds = jnp.concatenate([z, jnp.zeros((2, 5, 32))], axis=1)
    emask = jnp.broadcast_to(jnp.arange(7)[None] < 2, (2, 7))
    attn = jnp.concatenate([jnp.ones((2, 2), jnp.int32), mask], axis=1)
    ref = Decoder(TINY, m.config.adapters).apply({"params": params}, full_ids, embeds, emask,
                                                 attn, adapter="decode").logits
    np.testing.assert_allclose(logits[0, :5], ref[0, 1:6], atol=1e-5)


def test_latent_prompt_embeds_place_projected_latents_at_slots():
    m, tr, fr = _model(t=2)
    z_items = jax.random.normal(jax.random.key(1), (1, 3, 2, 32))
    slot_item = jnp.asarray([[-1, 2, 2, -1, 0, 0]])
    slot_tok = jnp.asarray([[-1, 0, 1, -1, 0, 1]])
    embeds, emask = m.latent_prompt_embeds(tr, z_items, slot_item, slot_tok)
    proj = m.project_latents(tr, z_items)
    np.testing.assert_array_equal(np.asarray(emask[0]), [0, 1, 1, 0, 1, 1])
    np.testing.assert_allclose(embeds[0, 1], proj[0, 2, 0], atol=1e-6)
    np.testing.assert_allclose(embeds[0, 2], proj[0, 2, 1], atol=1e-6)
    np.testing.assert_allclose(embeds[0, 5], proj[0, 0, 1], atol=1e-6)


def test_shared_base_holds_one_copy_of_the_weights():
    m, tr, fr = _model(share=True)
    assert "compressor" not in fr and "generator" in fr
    flat = jax.tree_util.tree_leaves_with_path(tr["compressor"])
    assert flat and all("lora_" in jax.tree_util.keystr(p) for p, _ in flat)
    merged = m.compressor_params(tr, fr)
    assert merged["embed_tokens"]["embedding"] is fr["generator"]["embed_tokens"]["embedding"]
    assert merge_params(fr["generator"], tr["compressor"]).keys() == merged.keys()


@pytest.mark.parametrize("encoder_mlp", [False, True])
def test_encoder_adapters_cover_the_mlp_only_when_asked(encoder_mlp):
    m = LatentMemory(LatentMemoryConfig(TINY, TINY, paper_adapters(4, 8.0, 0.0, encoder_mlp),
                                        retrieval_dim=16))
    _, tr, fr = (m, *m.split(nn.unbox(m.init(jax.random.key(0)))))
    paths = [jax.tree_util.keystr(p) for p, _ in
             jax.tree_util.tree_leaves_with_path(tr["compressor"])]

    def modules(adapter):
        return {p.split("'")[-4] for p in paths if f"lora_{adapter}_" in p}

    attn = {"q_proj", "k_proj", "v_proj", "o_proj"}
    for adapter in ("compress", "query"):
        assert modules(adapter) == (attn | {"gate_proj", "up_proj"} if encoder_mlp else attn)
    assert modules("decode") == attn | {"gate_proj", "up_proj"}
    # The encoder runs with the MLP adapters in place.
    ids, mask = _ids([[1, 5, 7]], 4)
    z = m.encode_evidence(tr, fr, ids, mask)
    assert z.shape == (1, 1, TINY.hidden_size)
