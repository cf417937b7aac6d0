"""Decoder configuration, read from and written to Hugging Face `config.json` dictionaries."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "mistral")


class UnsupportedModelError(ValueError):
    """A checkpoint's `model_type` or option that lm_jax's decoder does not implement."""


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    """Architecture of one decoder LM (Llama 3.x, Qwen2/2.5 or Mistral).

    Hashable, so it can be a static argument of jitted functions.
    """

    model_type: str = "llama"
    vocab_size: int = 256
    hidden_size: int = 64
    intermediate_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int = 16
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    # Hashable form of HF's `rope_scaling` dict: a sorted tuple of (key, value) pairs, or None.
    rope_scaling: tuple[tuple[str, Any], ...] | None = None
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    sliding_window: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    # Numerics (not part of the HF config): parameters stored in `param_dtype`, math in `dtype`.
    dtype: str = "float32"
    param_dtype: str = "float32"
    remat: bool = False

    def __post_init__(self):
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise UnsupportedModelError(f"model_type {self.model_type!r} is not supported; "
                                        f"supported: {SUPPORTED_MODEL_TYPES}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads={self.num_heads} is not a multiple of num_kv_heads={self.num_kv_heads}"
            )

    @property
    def jnp_dtype(self):
        return jnp.dtype(self.dtype)

    @property
    def jnp_param_dtype(self):
        return jnp.dtype(self.param_dtype)

    @property
    def rope_scaling_dict(self) -> dict[str, Any] | None:
        return dict(self.rope_scaling) if self.rope_scaling else None

    def replace(self, **kwargs) -> DecoderConfig:
        return dataclasses.replace(self, **kwargs)

    def num_params(self, include_embeddings: bool = True) -> int:
        """Parameter count (no LoRA), as used by the FLOP formulas of the benchmarks."""
        d, f, v = self.hidden_size, self.intermediate_size, self.vocab_size
        q = self.num_heads * self.head_dim
        kv = self.num_kv_heads * self.head_dim
        attn = d * q + 2 * d * kv + q * d
        attn += (q + 2 * kv) * self.qkv_bias + d * self.o_bias
        mlp = 3 * d * f + (2 * f + d) * self.mlp_bias
        per_layer = attn + mlp + 2 * d
        total = self.num_layers * per_layer + d
        if include_embeddings:
            total += v * d * (1 if self.tie_word_embeddings else 2)
        return total

    # ---------------------------------------------------------------- HF interop
    @classmethod
    def from_hf_dict(cls, hf: dict[str, Any], **overrides) -> DecoderConfig:
        """Builds a config from a parsed Hugging Face `config.json`.

        Raises:
          UnsupportedModelError: for a model_type or rope scaling lm_jax does not implement.
        """
        model_type = hf.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise UnsupportedModelError(
                f"model_type {model_type!r} is not supported; supported: {SUPPORTED_MODEL_TYPES}"
            )
        # transformers >= 5 moves rope settings into `rope_parameters`.
        rope = hf.get("rope_scaling") or None
        rope_params = hf.get("rope_parameters") or {}
        rope_theta = hf.get("rope_theta", rope_params.get("rope_theta", 10000.0))
        if rope is None and rope_params.get("rope_type", "default") != "default":
            rope = {k: v for k, v in rope_params.items() if k != "rope_theta"}
        if rope is not None:
            rope_type = rope.get("rope_type", rope.get("type", "default"))
            if rope_type not in ("default", "llama3"):
                raise UnsupportedModelError(f"rope scaling type {rope_type!r} is not supported")
            rope = None if rope_type == "default" else {**rope, "rope_type": rope_type}
        hidden = hf["hidden_size"]
        heads = hf["num_attention_heads"]
        head_dim = hf.get("head_dim") or hidden // heads
        sliding = None
        if model_type == "mistral":
            sliding = hf.get("sliding_window")
        elif model_type == "qwen2" and hf.get("use_sliding_window"):
            raise UnsupportedModelError("qwen2 with use_sliding_window=true is not supported")
        eos = hf.get("eos_token_id")
        if isinstance(eos, list):
            eos = eos[0]
        kwargs = dict(
            model_type=model_type,
            vocab_size=hf["vocab_size"],
            hidden_size=hidden,
            intermediate_size=hf["intermediate_size"],
            num_layers=hf["num_hidden_layers"],
            num_heads=heads,
            num_kv_heads=hf.get("num_key_value_heads") or heads,
            head_dim=head_dim,
            rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
            rope_theta=float(rope_theta),
            rope_scaling=tuple(sorted(rope.items())) if rope else None,
            max_position_embeddings=hf.get("max_position_embeddings", 2048),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            qkv_bias=model_type == "qwen2" or bool(hf.get("attention_bias", False)),
            o_bias=model_type == "llama" and bool(hf.get("attention_bias", False)),
            mlp_bias=model_type == "llama" and bool(hf.get("mlp_bias", False)),
            sliding_window=sliding,
            bos_token_id=hf.get("bos_token_id"),
            eos_token_id=eos,
            pad_token_id=hf.get("pad_token_id"),
        )
        kwargs.update(overrides)
        return cls(**kwargs)

    def to_hf_dict(self) -> dict[str, Any]:
        """The `config.json` dictionary transformers needs to rebuild this architecture."""
        arch = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                "mistral": "MistralForCausalLM"}[self.model_type]
        out: dict[str, Any] = dict(
            architectures=[arch],
            model_type=self.model_type,
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads,
            head_dim=self.head_dim,
            rms_norm_eps=self.rms_norm_eps,
            rope_theta=self.rope_theta,
            rope_scaling=self.rope_scaling_dict,
            max_position_embeddings=self.max_position_embeddings,
            tie_word_embeddings=self.tie_word_embeddings,
            hidden_act="silu",
            torch_dtype=self.param_dtype,
            bos_token_id=self.bos_token_id,
            eos_token_id=self.eos_token_id,
            pad_token_id=self.pad_token_id,
        )
        if self.model_type == "llama":
            out.update(attention_bias=self.qkv_bias, mlp_bias=self.mlp_bias)
        if self.model_type == "mistral":
            out.update(sliding_window=self.sliding_window)
        if self.model_type == "qwen2":
            out.update(use_sliding_window=False, sliding_window=None)
        return out
