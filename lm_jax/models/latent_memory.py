"""Latent Memory: compressor (frozen base + named LoRA adapters), heads, and the frozen generator.

Parameters form one dict with three parts:
  compressor: the compressor decoder tree; its base weights are frozen, its `lora_*` leaves train.
              When `share_base` is set the compressor has no base of its own and runs on the
              generator's weights (one copy in memory; only its adapters are separate).
  heads:      mem_embedding [T, H], retrieval_proj (H -> R, LayerNorm), cross_proj
              (H -> (H+G)/2 -> GELU -> G -> LayerNorm, fp32). All trainable.
  generator:  the frozen generator decoder tree.
`split(params)` returns (trainable, frozen); every function here takes both, so the jitted step
can donate the trainable half and never the frozen one.

Functions (all pure; shapes with N items, T latent tokens per item, L tokens, H/G widths):
  encode_evidence    ids [N, L] -> z [N, T, H]        (MEM rows placed right after real tokens)
  encode_query       ids [N, L] -> unit vectors [N, R] (query adapter, retrieval_proj)
  retrieval_keys     z [N, T, H] -> unit vectors [N, R] (mean over the T tokens, retrieval_proj)
  reconstruction     z, ids -> per-token logits and targets for x1..xn, EOS
  generator_hidden   prompt ids with latent slots + latents -> generator hidden states
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm_jax.models.config import DecoderConfig
from lm_jax.models.decoder import Decoder
from lm_jax.models.lora import LoraSpec, merge_params, split_params

COMPRESS, QUERY, DECODE = "compress", "query", "decode"
TRAINABLE_PATTERNS = (r"^compressor/.*lora_", r"^heads/")


def paper_adapters(rank: int = 64, alpha: float = 128.0, dropout: float = 0.05,
                   encoder_mlp: bool = False):
    """METHOD.md §2: compress and query on q,k,v,o; decode on q,k,v,o,gate,up.

    encoder_mlp: compress and query on gate,up as well (more capacity for a tiny base).
    """
    attn = ("q_proj", "k_proj", "v_proj", "o_proj")
    mlp = ("gate_proj", "up_proj")
    encoder = attn + mlp if encoder_mlp else attn
    return (
        LoraSpec(COMPRESS, rank, alpha, dropout, encoder),
        LoraSpec(QUERY, rank, alpha, dropout, encoder),
        LoraSpec(DECODE, rank, alpha, dropout, attn + mlp),
    )


class RetrievalProj(nn.Module):
    """Linear(H -> R) + LayerNorm, then L2 normalisation: [..., H] -> unit [..., R]."""

    dim: int

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(self.dim, dtype=jnp.float32, name="dense")(x.astype(jnp.float32))
        x = nn.LayerNorm(dtype=jnp.float32, name="norm")(x)
        return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


class CrossProj(nn.Module):
    """H -> (H+G)/2 -> GELU -> G -> LayerNorm, in fp32: [..., H] -> [..., G]."""

    hidden: int
    out: int

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(self.hidden, dtype=jnp.float32, name="fc1")(x.astype(jnp.float32))
        x = nn.gelu(x, approximate=False)
        x = nn.Dense(self.out, dtype=jnp.float32, name="fc2")(x)
        return nn.LayerNorm(dtype=jnp.float32, name="norm")(x)


@dataclasses.dataclass(frozen=True)
class LatentMemoryConfig:
    compressor: DecoderConfig
    generator: DecoderConfig
    adapters: tuple[LoraSpec, ...] = dataclasses.field(default_factory=paper_adapters)
    num_latent_tokens: int = 1
    retrieval_dim: int = 512
    share_base: bool = False

    def __post_init__(self):
        if self.share_base and self.compressor != self.generator:
            raise ValueError("share_base needs identical compressor and generator configs")
        names = {s.name for s in self.adapters}
        missing = {COMPRESS, QUERY, DECODE} - names
        if missing:
            raise ValueError(f"adapters {sorted(missing)} are missing; Latent Memory needs "
                             "compress, query and decode")
        if self.num_latent_tokens < 1:
            raise ValueError(f"num_latent_tokens must be >= 1, got {self.num_latent_tokens}")


class LatentMemory:
    """The composed model. Holds static structure only; parameters are passed to every call."""

    def __init__(self, config: LatentMemoryConfig):
        self.config = config
        self.compressor = Decoder(config.compressor, config.adapters)
        self.generator = Decoder(config.generator)
        h, g = config.compressor.hidden_size, config.generator.hidden_size
        self.retrieval_proj = RetrievalProj(config.retrieval_dim)
        self.cross_proj = CrossProj((h + g) // 2, g)

    # ------------------------------------------------------------------ parameters
    def init(self, rng: jax.Array) -> dict[str, Any]:
        """Random parameters (boxed with logical-axis metadata where the decoder defines it)."""
        c = self.config
        r_comp, r_gen, r_mem, r_ret, r_cross = jax.random.split(rng, 5)
        dummy = jnp.zeros((1, 4), jnp.int32)
        h = c.compressor.hidden_size
        params = {
            "compressor": self.compressor.init(r_comp, dummy)["params"],
            "heads": {
                "mem_embedding": 0.02 * jax.random.normal(r_mem, (c.num_latent_tokens, h)),
                "retrieval_proj": self.retrieval_proj.init(r_ret, jnp.zeros((1, h)))["params"],
                "cross_proj": self.cross_proj.init(r_cross, jnp.zeros((1, h)))["params"],
            },
            "generator": self.generator.init(r_gen, dummy)["params"],
        }
        if c.share_base:
            lora_only, _ = split_params(params["compressor"], [r"lora_"])
            params["compressor"] = lora_only
        return params

    def split(self, params: dict) -> tuple[dict, dict]:
        """(trainable, frozen): adapters + heads vs. base + generator."""
        return split_params(params, TRAINABLE_PATTERNS)

    def compressor_params(self, trainable: dict, frozen: dict) -> dict:
        base = frozen["generator"] if self.config.share_base else frozen["compressor"]
        return merge_params(base, trainable["compressor"])

    # ------------------------------------------------------------------ compressor side
    def encode_evidence(self, trainable, frozen, ids, mask, *, deterministic=True, rng=None):
        """Latents of evidence items.

        Args:
          ids, mask: [N, L] right-padded token ids and mask (1 = real token).
        Returns:
          z [N, T, H]: last-layer (final-norm) hidden states at the T MEM positions, which sit
          right after each item's real tokens, so z does not depend on the batch's padding.
        """
        return self._encode(trainable, frozen, ids, mask, COMPRESS, deterministic, rng)

    def _encode(self, trainable, frozen, ids, mask, adapter, deterministic, rng):
        t = self.config.num_latent_tokens
        mem = trainable["heads"]["mem_embedding"]  # [T, H]
        n, length = ids.shape
        lengths = jnp.sum(mask, axis=1, dtype=jnp.int32)  # [N]
        pos = jnp.arange(length + t)[None, :]
        offset = pos - lengths[:, None]  # index into the MEM rows
        is_mem = (offset >= 0) & (offset < t)
        embeds = mem[jnp.clip(offset, 0, t - 1)] * is_mem[..., None]
        full_ids = jnp.pad(ids, ((0, 0), (0, t)))
        attn = (pos < (lengths + t)[:, None]).astype(jnp.int32)
        rngs = None if deterministic else {"dropout": rng}
        out = self.compressor.apply(
            {"params": self.compressor_params(trainable, frozen)}, full_ids, embeds, is_mem, attn,
            adapter=adapter, deterministic=deterministic, return_logits=False,
            return_hidden=True, rngs=rngs)
        idx = lengths[:, None] + jnp.arange(t)[None, :]  # [N, T]
        return jnp.take_along_axis(out.hidden, idx[..., None], axis=1).astype(jnp.float32)

    def encode_query(self, trainable, frozen, ids, mask, *, deterministic=True, rng=None):
        """Question ids [N, L] -> unit retrieval vectors [N, R] (query adapter)."""
        z = self._encode(trainable, frozen, ids, mask, QUERY, deterministic, rng)
        return self.retrieval_keys(trainable, z)

    def retrieval_keys(self, trainable, z):
        """Latents z [N, T, H] -> unit retrieval keys [N, R]."""
        return self.retrieval_proj.apply({"params": trainable["heads"]["retrieval_proj"]},
                                         jnp.mean(z, axis=1))

    def reconstruction(self, trainable, frozen, z, ids, mask, bos_id, eos_id, *,
                       deterministic=True, rng=None):
        """Decoder (base + decode adapter) reading [z_1..z_T, t_0..t_{n-1}].

        Position T-1+k predicts t_k, and position T-1+n predicts EOS; a leading BOS is not a
        target (it is given). z enters as input embeddings without projection.

        Args:
          z: [N, T, H]; ids, mask: [N, L] right-padded evidence tokens.
        Returns:
          logits [N, L+1, V] fp32, targets [N, L+1] int32, target_mask [N, L+1] float32.
        """
        t = self.config.num_latent_tokens
        n, length = ids.shape
        lengths = jnp.sum(mask, axis=1, dtype=jnp.int32)
        full_ids = jnp.concatenate([jnp.zeros((n, t), ids.dtype), ids], axis=1)
        embeds = jnp.concatenate([z, jnp.zeros((n, length, z.shape[-1]), z.dtype)], axis=1)
        is_z = jnp.arange(t + length)[None, :] < t
        attn = jnp.concatenate([jnp.ones((n, t), jnp.int32), mask.astype(jnp.int32)], axis=1)
        rngs = None if deterministic else {"dropout": rng}
        out = self.compressor.apply(
            {"params": self.compressor_params(trainable, frozen)}, full_ids, embeds,
            jnp.broadcast_to(is_z, (n, t + length)), attn, adapter=DECODE,
            deterministic=deterministic, return_logits=True, rngs=rngs)
        logits = out.logits[:, t - 1:]  # [N, L+1, V]
        pos = jnp.arange(length + 1)[None, :]
        targets = jnp.pad(ids, ((0, 0), (0, 1)))
        targets = jnp.where(pos == lengths[:, None], eos_id, targets).astype(jnp.int32)
        target_mask = pos <= lengths[:, None]
        if bos_id is not None:
            target_mask &= ~((pos == 0) & (ids[:, :1] == bos_id))
        return logits, targets, target_mask.astype(jnp.float32)

    # ------------------------------------------------------------------ generator side
    def project_latents(self, trainable, z):
        """z [..., H] -> generator input embeddings [..., G] (cross_proj, fp32)."""
        return self.cross_proj.apply({"params": trainable["heads"]["cross_proj"]}, z)

    def latent_prompt_embeds(self, trainable, z_items, slot_item, slot_tok):
        """Places projected latents into a prompt.

        Args:
          z_items: [B, K, T, H] latents of the K items each prompt may refer to.
          slot_item, slot_tok: [B, S] int32; where slot_item >= 0 the position holds latent
            token slot_tok of item slot_item.
        Returns:
          embeds [B, S, G] and embeds_mask [B, S] bool for `Decoder(input_embeds=...)`.
        """
        proj = self.project_latents(trainable, z_items)  # [B, K, T, G]
        b, k, t, g = proj.shape
        flat = proj.reshape(b, k * t, g)
        idx = jnp.clip(slot_item, 0) * t + jnp.clip(slot_tok, 0, t - 1)
        embeds = jnp.take_along_axis(flat, idx[..., None], axis=1)
        return embeds, slot_item >= 0

    def generator_logits_at(self, frozen, ids, mask, positions_out, embeds=None,
                            embeds_mask=None):
        """Generator logits [B, D, V] at output positions [B, D] of prompts ids/mask [B, S]."""
        out = self.generator.apply({"params": frozen["generator"]}, ids, embeds, embeds_mask, mask,
                                   return_logits=False, return_hidden=True)
        hidden = jnp.take_along_axis(out.hidden, positions_out[..., None], axis=1)
        return self.generator.apply({"params": frozen["generator"]}, hidden,
                                    method=Decoder.logits_from_hidden)
