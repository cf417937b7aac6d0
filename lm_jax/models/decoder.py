"""One decoder-only transformer for the Llama 3.x, Qwen2/2.5 and Mistral families (Flax Linen).

The same module serves as compressor base, reconstruction decoder and generator. Inputs may be
token ids, input embeddings, or both mixed (vectors placed at chosen positions of a token sequence:
this is how latent tokens enter a prompt). Padding is described by `attention_mask`; positions are
explicit (default: the running count of real tokens, so left and right padding both work). A
key/value cache (a plain pytree, see `init_cache`) supports incremental decoding inside jit.

Parameter tree (logical axis names in brackets):
  embed_tokens/embedding                 [vocab, embed]
  layers_{i}/input_norm/scale            [norm]
  layers_{i}/attn/{q,k,v}_proj/kernel    [embed, heads|kv]   (+ bias for Qwen2)
  layers_{i}/attn/o_proj/kernel          [heads, embed]
  layers_{i}/post_attn_norm/scale        [norm]
  layers_{i}/mlp/{gate,up}_proj/kernel   [embed, mlp]
  layers_{i}/mlp/down_proj/kernel        [mlp, embed]
  final_norm/scale                       [norm]
  lm_head/kernel                         [embed, vocab]      (absent when embeddings are tied)
LoRA adapters add `lora_{name}_a` / `lora_{name}_b` beside the kernels they adapt.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from lm_jax.models.config import DecoderConfig
from lm_jax.models.lora import LoraDense, LoraSpec, check_adapter

Cache = dict[str, Any]


# --------------------------------------------------------------------------- rotary embeddings


def rope_inv_freq(config: DecoderConfig) -> jax.Array:
    """Inverse frequencies [head_dim // 2], with Llama 3 scaling when configured."""
    dim = config.head_dim
    inv_freq = 1.0 / (config.rope_theta ** (jnp.arange(0, dim, 2, dtype=jnp.float32) / dim))
    scaling = config.rope_scaling_dict
    if scaling and scaling.get("rope_type") == "llama3":
        factor = scaling["factor"]
        low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
        old_len = scaling["original_max_position_embeddings"]
        low_wavelen, high_wavelen = old_len / low, old_len / high
        wavelen = 2 * math.pi / inv_freq
        scaled = jnp.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        inv_freq = jnp.where(medium, smoothed, scaled)
    return inv_freq


def apply_rope(x: jax.Array, positions: jax.Array, inv_freq: jax.Array) -> jax.Array:
    """Rotates x [B, T, N, Dh] by positions [B, T] (HF's rotate-half convention)."""
    angles = positions[..., None].astype(jnp.float32) * inv_freq  # [B, T, Dh/2]
    angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    return (x.astype(jnp.float32) * cos + rotated * sin).astype(x.dtype)


# --------------------------------------------------------------------------- layers


class RMSNorm(nn.Module):
    eps: float = 1e-6
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("norm",)),
                           (x.shape[-1],), self.param_dtype)
        xf = x.astype(jnp.float32)
        xf = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
        # HF casts back to the input dtype before scaling.
        return scale.astype(self.dtype) * xf.astype(self.dtype)


def attention_mask_bias(q_slots: jax.Array, kv_valid: jax.Array,
                        sliding_window: int | None) -> jax.Array:
    """Boolean mask [B, 1, T, S]: query at slot q may see key slot s.

    Args:
      q_slots: [B, T] cache slot of each query token (equals its index without a cache).
      kv_valid: [B, S] whether each key slot holds a real token.
      sliding_window: Mistral's window, in slots (None: unlimited).
    """
    s = jnp.arange(kv_valid.shape[1])[None, None, :]
    q = q_slots[:, :, None]
    allowed = (s <= q) & kv_valid[:, None, :]
    if sliding_window is not None:
        allowed &= (q - s) < sliding_window
    return allowed[:, None, :, :]


class Attention(nn.Module):
    config: DecoderConfig
    adapters: tuple[LoraSpec, ...] = ()
    adapter: str | None = None
    deterministic: bool = True

    def _proj(self, features, name, axes, bias):
        c = self.config
        return LoraDense(features, name, axes, use_bias=bias, adapters=self.adapters,
                         adapter=self.adapter, deterministic=self.deterministic,
                         dtype=c.jnp_dtype, param_dtype=c.jnp_param_dtype, name=name)

    @nn.compact
    def __call__(self, x, positions, q_slots, kv_valid, layer_cache):
        """x [B,T,D] -> ([B,T,D], new layer cache (k, v) or None)."""
        c = self.config
        b, t, _ = x.shape
        q = self._proj(c.num_heads * c.head_dim, "q_proj", ("embed", "heads"), c.qkv_bias)(x)
        k = self._proj(c.num_kv_heads * c.head_dim, "k_proj", ("embed", "kv"), c.qkv_bias)(x)
        v = self._proj(c.num_kv_heads * c.head_dim, "v_proj", ("embed", "kv"), c.qkv_bias)(x)
        q = q.reshape(b, t, c.num_heads, c.head_dim)
        k = k.reshape(b, t, c.num_kv_heads, c.head_dim)
        v = v.reshape(b, t, c.num_kv_heads, c.head_dim)
        inv_freq = rope_inv_freq(c)
        q = apply_rope(q, positions, inv_freq)
        k = apply_rope(k, positions, inv_freq)

        new_cache = None
        if layer_cache is not None:
            ck, cv, index = layer_cache
            ck = jax.lax.dynamic_update_slice_in_dim(ck, k.astype(ck.dtype), index, axis=1)
            cv = jax.lax.dynamic_update_slice_in_dim(cv, v.astype(cv.dtype), index, axis=1)
            new_cache = (ck, cv)
            k, v = ck.astype(c.jnp_dtype), cv.astype(c.jnp_dtype)

        groups = c.num_heads // c.num_kv_heads
        qg = q.reshape(b, t, c.num_kv_heads, groups, c.head_dim)
        scores = jnp.einsum("btkgd,bskd->bkgts", qg, k).astype(jnp.float32)
        scores = scores / math.sqrt(c.head_dim)
        allowed = attention_mask_bias(q_slots, kv_valid, c.sliding_window)  # [B,1,T,S]
        scores = jnp.where(allowed[:, :, None], scores, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(scores, axis=-1).astype(c.jnp_dtype)
        out = jnp.einsum("bkgts,bskd->btkgd", probs, v).reshape(b, t, c.num_heads * c.head_dim)
        out = self._proj(c.hidden_size, "o_proj", ("heads", "embed"), c.o_bias)(out)
        return out, new_cache


class MLP(nn.Module):
    config: DecoderConfig
    adapters: tuple[LoraSpec, ...] = ()
    adapter: str | None = None
    deterministic: bool = True

    @nn.compact
    def __call__(self, x):
        c = self.config
        kw = dict(use_bias=c.mlp_bias, adapters=self.adapters, adapter=self.adapter,
                  deterministic=self.deterministic, dtype=c.jnp_dtype,
                  param_dtype=c.jnp_param_dtype)
        gate = LoraDense(c.intermediate_size, "gate_proj", ("embed", "mlp"), name="gate_proj",
                         **kw)(x)
        up = LoraDense(c.intermediate_size, "up_proj", ("embed", "mlp"), name="up_proj", **kw)(x)
        h = nn.silu(gate) * up
        return LoraDense(c.hidden_size, "down_proj", ("mlp", "embed"), name="down_proj", **kw)(h)


class DecoderLayer(nn.Module):
    config: DecoderConfig
    adapters: tuple[LoraSpec, ...] = ()

    @nn.compact
    def __call__(self, x, positions, q_slots, kv_valid, layer_cache, adapter=None,
                 deterministic=True):
        c = self.config
        kw = dict(adapters=self.adapters, adapter=adapter, deterministic=deterministic)
        norm = dict(eps=c.rms_norm_eps, dtype=c.jnp_dtype, param_dtype=c.jnp_param_dtype)
        h, new_cache = Attention(c, name="attn", **kw)(
            RMSNorm(name="input_norm", **norm)(x), positions, q_slots, kv_valid, layer_cache)
        x = x + h
        x = x + MLP(c, name="mlp", **kw)(RMSNorm(name="post_attn_norm", **norm)(x))
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        return x, new_cache


@flax.struct.dataclass
class DecoderOutput:
    """logits [B,T,V] (or None), hidden [B,T,D] after the final norm (or None), cache (or None)."""

    logits: jax.Array | None
    hidden: jax.Array | None
    cache: Cache | None


class Decoder(nn.Module):
    """The decoder LM. `adapters` declares LoRA adapters; `__call__(adapter=...)` picks one."""

    config: DecoderConfig
    adapters: tuple[LoraSpec, ...] = ()

    def setup(self):
        c = self.config
        self.embed_tokens = nn.Embed(
            num_embeddings=c.vocab_size, features=c.hidden_size, dtype=c.jnp_dtype,
            param_dtype=c.jnp_param_dtype,
            embedding_init=nn.with_logical_partitioning(nn.initializers.normal(0.02),
                                                        ("vocab", "embed")))
        self.final_norm = RMSNorm(c.rms_norm_eps, c.jnp_dtype, c.jnp_param_dtype,
                                  name="final_norm")
        if not c.tie_word_embeddings:
            self.lm_head = nn.Dense(
                c.vocab_size, use_bias=False, dtype=c.jnp_dtype, param_dtype=c.jnp_param_dtype,
                name="lm_head",
                kernel_init=nn.with_logical_partitioning(nn.initializers.normal(0.02),
                                                         ("embed", "vocab")))
        layer_cls = DecoderLayer
        if c.remat:
            # Arguments 6, 7 (self counts as 0) are the adapter name and the dropout switch.
            layer_cls = nn.remat(DecoderLayer, prevent_cse=True, static_argnums=(6, 7))
        self.layers = [layer_cls(c, self.adapters, name=f"layers_{i}")
                       for i in range(c.num_layers)]

    def embed(self, input_ids: jax.Array) -> jax.Array:
        """Token embedding rows: [B, T] int -> [B, T, D]."""
        return self.embed_tokens(input_ids)

    def logits_from_hidden(self, hidden: jax.Array) -> jax.Array:
        """Final-norm hidden states [..., D] -> logits [..., V] (in fp32)."""
        if self.config.tie_word_embeddings:
            logits = self.embed_tokens.attend(hidden)
        else:
            logits = self.lm_head(hidden)
        return logits.astype(jnp.float32)

    def __call__(
        self,
        input_ids: jax.Array | None = None,
        input_embeds: jax.Array | None = None,
        embeds_mask: jax.Array | None = None,
        attention_mask: jax.Array | None = None,
        positions: jax.Array | None = None,
        cache: Cache | None = None,
        adapter: str | None = None,
        deterministic: bool = True,
        return_logits: bool = True,
        return_hidden: bool = False,
    ) -> DecoderOutput:
        """Runs the decoder.

        Args:
          input_ids: [B, T] int token ids (or None when `input_embeds` gives every position).
          input_embeds: [B, T, D] vectors; used where `embeds_mask` is True (everywhere if no ids).
          embeds_mask: [B, T] bool, True where `input_embeds` replaces the token embedding.
          attention_mask: [B, T], 1 for real tokens and 0 for padding (default all ones).
          positions: [B, T] int position ids (default: count of real tokens before each one,
            continuing from the cache).
          cache: a cache from `init_cache`; the T new tokens are written at its `index`.
          adapter: name of the LoRA adapter to apply (None: the base model).
          deterministic: False enables LoRA dropout (needs a 'dropout' rng).
          return_logits / return_hidden: which outputs to compute.

        Returns:
          DecoderOutput with logits [B, T, V] fp32, hidden [B, T, D], and the updated cache.
        """
        c = self.config
        check_adapter(self.adapters, adapter)
        if input_ids is None and input_embeds is None:
            raise ValueError("Decoder needs input_ids, input_embeds, or both")
        if input_ids is not None:
            x = self.embed_tokens(input_ids)
            if input_embeds is not None:
                if embeds_mask is None:
                    raise ValueError("mixing input_ids and input_embeds needs embeds_mask")
                x = jnp.where(embeds_mask[..., None], input_embeds.astype(x.dtype), x)
        else:
            x = input_embeds.astype(c.jnp_dtype)
        b, t = x.shape[:2]
        if attention_mask is None:
            attention_mask = jnp.ones((b, t), jnp.int32)
        valid = attention_mask.astype(bool)

        if cache is None:
            kv_valid = valid
            q_slots = jnp.broadcast_to(jnp.arange(t)[None], (b, t))
            past = jnp.zeros((b,), jnp.int32)
            index = None
        else:
            index = cache["index"]
            kv_valid = jax.lax.dynamic_update_slice_in_dim(cache["valid"], valid, index, axis=1)
            q_slots = index + jnp.broadcast_to(jnp.arange(t)[None], (b, t))
            past = jnp.sum(cache["valid"], axis=1, dtype=jnp.int32)
        if positions is None:
            positions = past[:, None] + jnp.cumsum(valid, axis=1, dtype=jnp.int32) - 1
            positions = jnp.maximum(positions, 0)

        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        new_layers = []
        for i, layer in enumerate(self.layers):
            layer_cache = None
            if cache is not None:
                ck, cv = cache["layers"][i]
                layer_cache = (ck, cv, index)
            x, nc = layer(x, positions, q_slots, kv_valid, layer_cache, adapter, deterministic)
            new_layers.append(nc)
        hidden = self.final_norm(x)
        logits = self.logits_from_hidden(hidden) if return_logits else None
        new_cache = None
        if cache is not None:
            new_cache = dict(layers=tuple(new_layers), valid=kv_valid, index=index + t)
        return DecoderOutput(logits=logits, hidden=hidden if return_hidden else None,
                             cache=new_cache)


def init_cache(config: DecoderConfig, batch: int, max_len: int, dtype=None) -> Cache:
    """An empty key/value cache with `max_len` slots.

    Returns a pytree: layers = tuple of (k, v) each [B, max_len, KVH, Dh]; valid [B, max_len] bool
    (slots holding real tokens); index int32 scalar (next slot to write).
    """
    dtype = dtype or config.jnp_dtype
    shape = (batch, max_len, config.num_kv_heads, config.head_dim)
    layers = tuple((jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))
                   for _ in range(config.num_layers))
    return dict(layers=layers, valid=jnp.zeros((batch, max_len), bool),
                index=jnp.zeros((), jnp.int32))


def init_params(config: DecoderConfig, rng: jax.Array, adapters: tuple[LoraSpec, ...] = ()):
    """Random parameters (boxed with logical partitioning metadata) for a [1, 4] dummy batch."""
    model = Decoder(config, adapters)
    return model.init(rng, jnp.zeros((1, 4), jnp.int32))["params"]
