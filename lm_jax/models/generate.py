"""Greedy decoding with a key/value cache, jit-compatible (static maximum length)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lm_jax.models.decoder import Decoder, init_cache


def greedy_generate(
    model: Decoder,
    params,
    input_ids: jax.Array | None,
    attention_mask: jax.Array,
    max_new_tokens: int,
    eos_token_id: int | None,
    pad_token_id: int = 0,
    input_embeds: jax.Array | None = None,
    embeds_mask: jax.Array | None = None,
    adapter: str | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Greedily decodes `max_new_tokens` tokens after each prompt.

    Prompts may be left- or right-padded: the first new token is read at each row's last real
    token, and new tokens continue the positions from the real-token count.

    Args:
      input_ids: [B, T] prompt ids (None if `input_embeds` covers every position).
      attention_mask: [B, T] 1 for real prompt tokens.
      input_embeds / embeds_mask: [B, T, D] / [B, T] vectors placed in the prompt.

    Returns:
      tokens [B, max_new_tokens] int32 (pad after EOS) and lengths [B] (tokens before and
      including EOS).
    """
    b, t = attention_mask.shape
    config = model.config
    cache = init_cache(config, b, t + max_new_tokens)
    out = model.apply({"params": params}, input_ids, input_embeds, embeds_mask, attention_mask,
                      cache=cache, adapter=adapter, return_logits=False, return_hidden=True)
    valid = attention_mask.astype(bool)
    last = jnp.max(jnp.where(valid, jnp.arange(t)[None], -1), axis=1)
    last_hidden = jnp.take_along_axis(out.hidden, last[:, None, None], axis=1)[:, 0]
    logits = model.apply({"params": params}, last_hidden, method=Decoder.logits_from_hidden)
    first = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    eos = -1 if eos_token_id is None else eos_token_id

    def step(carry, _):
        token, done, cache = carry
        emitted = jnp.where(done, pad_token_id, token)
        done = done | (token == eos)
        o = model.apply({"params": params}, token[:, None], attention_mask=jnp.ones((b, 1)),
                        cache=cache, adapter=adapter)
        nxt = jnp.argmax(o.logits[:, -1], axis=-1).astype(jnp.int32)
        return (nxt, done, o.cache), emitted

    def final(carry):
        token, done, _ = carry
        return jnp.where(done, pad_token_id, token)

    init = (first, jnp.zeros((b,), bool), out.cache)
    if max_new_tokens > 1:
        carry, tokens = jax.lax.scan(step, init, None, length=max_new_tokens - 1)
        tokens = jnp.concatenate([tokens.T, final(carry)[:, None]], axis=1)
    else:
        tokens = final(init)[:, None]
    is_eos = tokens == eos
    first_eos = jnp.where(is_eos.any(axis=1), jnp.argmax(is_eos, axis=1) + 1, max_new_tokens)
    return tokens, first_eos.astype(jnp.int32)
