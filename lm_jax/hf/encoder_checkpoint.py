"""Hugging Face BERT / XLM-RoBERTa checkpoints (config.json + safetensors) -> lm_jax.models.encoder.

Reads BertModel / BertForTokenClassification / XLMRobertaModel /
XLMRobertaForTokenClassification directories (e.g. sentence-transformers/all-MiniLM-L6-v2,
microsoft/llmlingua-2-xlm-roberta-large-meetingbank). Tensor names may carry the task models'
`bert.` / `roberta.` prefix; the pooler (unused by mean pooling and token classification) and
position-id buffers are ignored. Every tensor the config implies must be present with its
shape, or the import fails naming it.
"""

from __future__ import annotations

import json
import os
import re

import jax.numpy as jnp
import numpy as np
from safetensors import safe_open

from lm_jax.hf.checkpoint import (
    ConfigFileError,
    MissingTensorError,
    MissingWeightsError,
    TensorShapeError,
    UnsupportedArchitectureError,
)
from lm_jax.models.encoder import EncoderConfig

_PREFIXES = ("bert.", "roberta.")
_IGNORED = re.compile(r"^(pooler\.|embeddings\.position_ids$|lm_head\.|cls\.)")
# (HF name regex, lm_jax path template, transpose)
_KEYS = (
    (r"embeddings\.word_embeddings\.weight", "word/embedding", False),
    (r"embeddings\.position_embeddings\.weight", "position/embedding", False),
    (r"embeddings\.token_type_embeddings\.weight", "token_type/embedding", False),
    (r"embeddings\.LayerNorm\.weight", "embed_norm/scale", False),
    (r"embeddings\.LayerNorm\.bias", "embed_norm/bias", False),
    (r"encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.weight", "layer_{0}/{1}/kernel",
     True),
    (r"encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.bias", "layer_{0}/{1}/bias",
     False),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.weight", "layer_{0}/out/kernel", True),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.bias", "layer_{0}/out/bias", False),
    (r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.weight", "layer_{0}/attn_norm/scale",
     False),
    (r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.bias", "layer_{0}/attn_norm/bias",
     False),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.weight", "layer_{0}/up/kernel", True),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.bias", "layer_{0}/up/bias", False),
    (r"encoder\.layer\.(\d+)\.output\.dense\.weight", "layer_{0}/down/kernel", True),
    (r"encoder\.layer\.(\d+)\.output\.dense\.bias", "layer_{0}/down/bias", False),
    (r"encoder\.layer\.(\d+)\.output\.LayerNorm\.weight", "layer_{0}/mlp_norm/scale", False),
    (r"encoder\.layer\.(\d+)\.output\.LayerNorm\.bias", "layer_{0}/mlp_norm/bias", False),
    (r"classifier\.weight", "classifier/kernel", True),
    (r"classifier\.bias", "classifier/bias", False),
)
_COMPILED = tuple((re.compile(p + "$"), t, tr) for p, t, tr in _KEYS)


def load_encoder_config(model_dir: str) -> EncoderConfig:
    """EncoderConfig from model_dir/config.json (token-classification models get num_labels)."""
    path = os.path.join(model_dir, "config.json")
    try:
        with open(path) as f:
            cfg = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigFileError(f"{path}: cannot read config.json ({e})") from None
    model_type = cfg.get("model_type")
    if model_type not in ("bert", "xlm-roberta", "roberta"):
        raise UnsupportedArchitectureError(
            f"{path}: model_type {model_type!r} is not an encoder lm_jax implements "
            "(bert, xlm-roberta, roberta)")
    archs = cfg.get("architectures") or []
    num_labels = 0
    if any(a.endswith("ForTokenClassification") for a in archs):
        num_labels = len(cfg["id2label"]) if "id2label" in cfg else int(cfg.get("num_labels", 2))
    return EncoderConfig(
        model_type=model_type,
        vocab_size=cfg["vocab_size"],
        hidden_size=cfg["hidden_size"],
        num_layers=cfg["num_hidden_layers"],
        num_heads=cfg["num_attention_heads"],
        intermediate_size=cfg["intermediate_size"],
        max_position_embeddings=cfg["max_position_embeddings"],
        type_vocab_size=cfg.get("type_vocab_size", 2),
        layer_norm_eps=cfg.get("layer_norm_eps", 1e-12),
        hidden_act=cfg.get("hidden_act", "gelu"),
        pad_token_id=cfg.get("pad_token_id", 0 if model_type == "bert" else 1),
        num_labels=num_labels,
    )


def _shapes(c: EncoderConfig) -> dict[str, tuple[int, ...]]:
    h, f = c.hidden_size, c.intermediate_size
    out = {
        "word/embedding": (c.vocab_size, h),
        "position/embedding": (c.max_position_embeddings, h),
        "token_type/embedding": (c.type_vocab_size, h),
        "embed_norm/scale": (h,),
        "embed_norm/bias": (h,),
    }
    for i in range(c.num_layers):
        for p in ("query", "key", "value", "out"):
            out[f"layer_{i}/{p}/kernel"], out[f"layer_{i}/{p}/bias"] = (h, h), (h,)
        out[f"layer_{i}/up/kernel"], out[f"layer_{i}/up/bias"] = (h, f), (f,)
        out[f"layer_{i}/down/kernel"], out[f"layer_{i}/down/bias"] = (f, h), (h,)
        for n in ("attn_norm", "mlp_norm"):
            out[f"layer_{i}/{n}/scale"], out[f"layer_{i}/{n}/bias"] = (h,), (h,)
    if c.num_labels:
        out["classifier/kernel"], out["classifier/bias"] = (h, c.num_labels), (c.num_labels,)
    return out


def _files(model_dir: str) -> list[str]:
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            names = sorted(set(json.load(f)["weight_map"].values()))
        return [os.path.join(model_dir, n) for n in names]
    single = os.path.join(model_dir, "model.safetensors")
    if os.path.isfile(single):
        return [single]
    raise MissingWeightsError(f"{model_dir}: no model.safetensors (only safetensors checkpoints "
                              "are supported)")


def load_encoder_params(model_dir: str, config: EncoderConfig | None = None, dtype=jnp.float32):
    """The Flax parameter tree of lm_jax.models.encoder.Encoder from an HF directory."""
    config = config or load_encoder_config(model_dir)
    want = _shapes(config)
    flat: dict[str, np.ndarray] = {}
    for path in _files(model_dir):
        with safe_open(path, framework="numpy") as f:
            for name in f.keys():  # noqa: SIM118  (safe_open has no __iter__)
                key = name
                for p in _PREFIXES:
                    if key.startswith(p):
                        key = key[len(p):]
                if _IGNORED.match(key):
                    continue
                for rx, template, transpose in _COMPILED:
                    m = rx.match(key)
                    if m:
                        target = template.format(*m.groups())
                        if target not in want:
                            continue  # e.g. a layer beyond num_hidden_layers: checked below
                        t = f.get_tensor(name)
                        t = t.T if transpose else t
                        if t.shape != want[target]:
                            raise TensorShapeError(
                                f"{path}: tensor {name!r} has shape {tuple(t.shape)}, config.json "
                                f"implies {want[target]}")
                        flat[target] = t
                        break
    missing = sorted(set(want) - set(flat))
    if missing:
        raise MissingTensorError(f"{model_dir}: missing tensors for {missing[:5]}"
                                 f"{' ...' if len(missing) > 5 else ''}")
    params: dict = {}
    for target, t in flat.items():
        node = params
        *parents, leaf = target.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = jnp.asarray(t, dtype)
    return params
