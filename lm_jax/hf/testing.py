"""Tiny random Hugging Face checkpoints and tokenizers, built locally (tests, demos, the tool).

Building checkpoints needs PyTorch (a test dependency), imported only when called. Nothing here
touches the network.
"""

from __future__ import annotations

import os
from typing import Any

# Small enough for CPU tests in milliseconds, but with GQA (4 query heads over 2 KV heads) and an
# explicit head_dim different from hidden / heads, which catches reshaping mistakes.
TINY: dict[str, Any] = dict(
    vocab_size=128, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256,
    rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=0,
)

TINY_VARIANTS: dict[str, dict[str, Any]] = {
    # Llama 3 rope scaling with a short original context so the scaled band is exercised.
    "llama": dict(model_type="llama", tie_word_embeddings=False, rope_theta=500000.0,
                  rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0,
                                "original_max_position_embeddings": 32}),
    "qwen2": dict(model_type="qwen2", tie_word_embeddings=False, rope_theta=1000000.0),
    "qwen2_tied": dict(model_type="qwen2", tie_word_embeddings=True, rope_theta=1000000.0),
    # A window shorter than the test sequences, so the band mask matters.
    "mistral": dict(model_type="mistral", tie_word_embeddings=False, sliding_window=5),
}


def hf_config(variant: str, **overrides):
    """A transformers config object for one of `TINY_VARIANTS` (with `overrides`)."""
    import transformers

    kw = {**TINY, **TINY_VARIANTS[variant], **overrides}
    model_type = kw.pop("model_type")
    cls = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config,
           "mistral": transformers.MistralConfig}[model_type]
    return cls(**kw)


def make_tiny_checkpoint(out_dir: str, variant: str = "llama", seed: int = 0,
                         dtype: str = "float32", **overrides) -> str:
    """Writes a random tiny HF model (`save_pretrained`) to `out_dir` and returns `out_dir`.

    Weights get a larger random scale than transformers' init (std 0.02 makes all logits nearly
    equal, which would let wrong implementations pass a logit comparison).
    """
    import torch
    import transformers

    torch.manual_seed(seed)
    config = hf_config(variant, **overrides)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / p.shape[-1] ** 0.5)
    model = model.to(getattr(torch, dtype))
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    return out_dir


SIMPLE_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

# Like Gemma's: only user/assistant turns; a system message raises.
NO_SYSTEM_CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def make_tiny_tokenizer(out_dir: str, chat_template: str | None = SIMPLE_CHAT_TEMPLATE,
                        vocab_size: int = 128) -> str:
    """Writes a small byte-level BPE tokenizer (trained on a fixed text) to `out_dir`.

    Special tokens: <pad>=0, <s>=1, </s>=2 (matching `TINY`), plus the chat markers.
    """
    import tokenizers
    import transformers
    from tokenizers import decoders, models, pre_tokenizers, trainers

    specials = ["<pad>", "<s>", "</s>", "<|end|>"]
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  show_progress=False)
    # Only characters seen here are in the vocabulary (kept small to fit a 128-row embedding).
    text = ["the quick brown fox jumps over the lazy dog", "who wrote the book? a writer did.",
            "latent memory question answering with one token per passage, 2024.",
            "<|system|>\n<|user|>\n<|assistant|>\nYou are helpful. Q: A: ABCDEFGHIJKLMNOPQRSTUVWXYZ"
            ] * 4
    tok.train_from_iterator(text, trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    if chat_template is not None:
        fast.chat_template = chat_template
    os.makedirs(out_dir, exist_ok=True)
    fast.save_pretrained(out_dir)
    return out_dir


def random_params(config, seed: int = 0, adapters: tuple = (), scale: float = 1.0) -> dict:
    """Random unboxed parameters for `init_params(config, rng, adapters)`'s tree, made in numpy.

    Much faster than `init_params` on CPU (which compiles a random-bits kernel per parameter) and
    with larger weights: kernels ~ N(0, scale^2 / fan_in), norm scales ~ 1 + N(0, 0.01), biases
    ~ N(0, 0.01), embeddings ~ N(0, scale^2); LoRA A like kernels and B zero (identity adapters).
    """
    import jax
    import numpy as np
    from flax import traverse_util
    from flax.core import meta

    from lm_jax.models.decoder import init_params

    abstract = jax.eval_shape(lambda r: init_params(config, r, tuple(adapters)),
                              jax.random.key(0))
    flat = traverse_util.flatten_dict(meta.unbox(abstract))
    rng = np.random.default_rng(seed)
    out = {}
    for path, leaf in flat.items():
        name, shape = path[-1], leaf.shape
        if name == "scale":
            x = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name == "bias":
            x = 0.1 * rng.standard_normal(shape)
        elif name == "embedding":
            x = scale * rng.standard_normal(shape)
        elif name.startswith("lora_") and name.endswith("_b"):
            x = np.zeros(shape)
        else:
            x = scale * rng.standard_normal(shape) / np.sqrt(shape[0])
        out[path] = jax.numpy.asarray(x, leaf.dtype)
    return traverse_util.unflatten_dict(out)
