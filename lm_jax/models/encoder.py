"""Bidirectional transformer encoders (BERT, XLM-RoBERTa) in Flax Linen, for the text baselines.

Two Hugging Face architectures share one post-LayerNorm encoder:

  * BERT, e.g. sentence-transformers/all-MiniLM-L6-v2 (dense retrieval): positions 0..T-1;
    sentence embedding = mean of the last hidden states over real tokens, L2-normalised
    (sentence-transformers' Pooling(mean) + Normalize: `mean_pool_normalize`).
  * XLM-RoBERTa, e.g. LLMLingua-2's token classifier: positions count real (non-pad) tokens
    from padding_idx + 1, as `create_position_ids_from_input_ids` does; a linear classifier
    on every token (`num_labels` > 0).

Parameter tree (HF tensor names in lm_jax/hf/encoder_checkpoint.py):
  {word,position,token_type}/embedding, embed_norm/{scale,bias}
  layer_{i}/{query,key,value,out}/{kernel,bias}, layer_{i}/attn_norm/{scale,bias}
  layer_{i}/{up,down}/{kernel,bias},                 layer_{i}/mlp_norm/{scale,bias}
  classifier/{kernel,bias}                            (token classification only)
Dropout is not modelled: these encoders are only run for inference here.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Architecture of a BERT-family encoder (fields as in the HF config.json).

    model_type: "bert" or "xlm-roberta" (decides the position ids).
    num_labels: > 0 adds a token-classification head (LLMLingua-2: 2 labels, 1 = keep).
    """

    model_type: str = "bert"
    vocab_size: int = 30522
    hidden_size: int = 384
    num_layers: int = 6
    num_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    pad_token_id: int = 0
    num_labels: int = 0

    def __post_init__(self):
        if self.model_type not in ("bert", "xlm-roberta", "roberta"):
            raise ValueError(f"EncoderConfig.model_type {self.model_type!r}: expected bert or "
                             "xlm-roberta")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of "
                             f"num_heads {self.num_heads}")
        if self.hidden_act not in _ACTIVATIONS:
            raise NotImplementedError(f"hidden_act {self.hidden_act!r}; supported: "
                                      f"{sorted(_ACTIVATIONS)}")

    @property
    def max_tokens(self) -> int:
        """Longest input: XLM-R's positions start at pad_token_id + 1."""
        if self.model_type == "bert":
            return self.max_position_embeddings
        return self.max_position_embeddings - self.pad_token_id - 1


_ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
}


def position_ids(config: EncoderConfig, input_ids: jax.Array) -> jax.Array:
    """[B, T] int32: 0..T-1 for BERT; for (XLM-)RoBERTa, pad_id + running count of non-pad
    tokens (pads get pad_id), as transformers' create_position_ids_from_input_ids."""
    b, t = input_ids.shape
    if config.model_type == "bert":
        return jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
    real = (input_ids != config.pad_token_id).astype(jnp.int32)
    return jnp.cumsum(real, axis=1) * real + config.pad_token_id


class EncoderLayer(nn.Module):
    config: EncoderConfig

    @nn.compact
    def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
        c = self.config
        hd = c.hidden_size // c.num_heads
        b, t, _ = x.shape

        def proj(name):
            return nn.Dense(c.hidden_size, name=name)(x).reshape(b, t, c.num_heads, hd)

        q, k, v = proj("query"), proj("key"), proj("value")
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(jnp.float32(hd)) + bias
        probs = jax.nn.softmax(scores, axis=-1)
        ctx = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, t, c.hidden_size)
        attn = nn.Dense(c.hidden_size, name="out")(ctx)
        x = nn.LayerNorm(epsilon=c.layer_norm_eps, name="attn_norm")(x + attn)
        h = _ACTIVATIONS[c.hidden_act](nn.Dense(c.intermediate_size, name="up")(x))
        h = nn.Dense(c.hidden_size, name="down")(h)
        return nn.LayerNorm(epsilon=c.layer_norm_eps, name="mlp_norm")(x + h)


class Encoder(nn.Module):
    """input_ids [B, T], attention_mask [B, T] (1 = real) -> hidden states [B, T, H]
    (or, with num_labels > 0 and `classify=True`, token logits [B, T, num_labels])."""

    config: EncoderConfig

    @nn.compact
    def __call__(self, input_ids: jax.Array, attention_mask: jax.Array | None = None,
                 token_type_ids: jax.Array | None = None, classify: bool = True) -> jax.Array:
        c = self.config
        if attention_mask is None:
            attention_mask = jnp.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        word = nn.Embed(c.vocab_size, c.hidden_size, name="word")
        pos = nn.Embed(c.max_position_embeddings, c.hidden_size, name="position")
        typ = nn.Embed(c.type_vocab_size, c.hidden_size, name="token_type")
        x = word(input_ids) + pos(position_ids(c, input_ids)) + typ(token_type_ids)
        x = nn.LayerNorm(epsilon=c.layer_norm_eps, name="embed_norm")(x)
        # Padding keys get the most negative float, as transformers does.
        bias = jnp.where(attention_mask[:, None, None, :] > 0, 0.0,
                         jnp.finfo(jnp.float32).min).astype(jnp.float32)
        for i in range(c.num_layers):
            x = EncoderLayer(c, name=f"layer_{i}")(x, bias)
        if c.num_labels and classify:
            return nn.Dense(c.num_labels, name="classifier")(x)
        return x


def mean_pool_normalize(hidden: jax.Array, attention_mask: jax.Array) -> jax.Array:
    """Sentence-transformers' Pooling(mean) + Normalize: [B, T, H], [B, T] -> [B, H] unit rows.

    mean = sum_t h_t m_t / max(sum_t m_t, 1e-9); out = mean / max(||mean||, 1e-12).
    """
    m = attention_mask.astype(hidden.dtype)[..., None]
    mean = (hidden * m).sum(1) / jnp.maximum(m.sum(1), 1e-9)
    return mean / jnp.maximum(jnp.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)


def init_params(config: EncoderConfig, rng: jax.Array):
    """Random parameters (for tests and shapes)."""
    ids = jnp.zeros((1, 4), jnp.int32)
    return Encoder(config).init(rng, ids)["params"]
