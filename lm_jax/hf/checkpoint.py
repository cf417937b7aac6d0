"""Hugging Face checkpoints <-> lm_jax parameter trees (safetensors, streamed tensor by tensor).

Import validates the whole checkpoint from the safetensors headers (names, shapes, dtypes, file
integrity) before any tensor is read, then reads one tensor at a time and places it directly
with its target sharding, reading only the slices each device needs. A failed import therefore
never leaves a half-loaded model behind, and the model is never held twice in host memory.

Key map (identical for Llama, Qwen2 and Mistral; Linear weights [out, in] become kernels [in, out]):

  model.embed_tokens.weight                     embed_tokens/embedding
  model.layers.{i}.input_layernorm.weight       layers_{i}/input_norm/scale
  model.layers.{i}.self_attn.{q,k,v,o}_proj.*   layers_{i}/attn/{q,k,v,o}_proj/{kernel,bias}
  model.layers.{i}.post_attention_layernorm.weight  layers_{i}/post_attn_norm/scale
  model.layers.{i}.mlp.{gate,up,down}_proj.*    layers_{i}/mlp/{gate,up,down}_proj/{kernel,bias}
  model.norm.weight                             final_norm/scale
  lm_head.weight                                lm_head/kernel   (absent when embeddings are tied)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import traverse_util
from flax.core import meta
from safetensors import SafetensorError, safe_open

from lm_jax.models.config import DecoderConfig, UnsupportedModelError

CONFIG_FILE = "config.json"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


# --------------------------------------------------------------------------- errors


class CheckpointError(ValueError):
    """Base class: a checkpoint that cannot be imported or exported as asked."""


class ConfigFileError(CheckpointError):
    """config.json is missing or unreadable."""


class UnsupportedArchitectureError(CheckpointError, UnsupportedModelError):
    """config.json names a model_type (or option) the decoder does not implement."""


class MissingWeightsError(CheckpointError):
    """No safetensors weights in the directory, or the index names a file that is absent."""


class CorruptFileError(CheckpointError):
    """A safetensors file is truncated or its header is malformed."""


class MissingTensorError(CheckpointError):
    """A tensor the architecture needs is absent from the checkpoint."""


class UnexpectedTensorError(CheckpointError):
    """The checkpoint holds tensors the architecture does not use (e.g. a different variant)."""


class TensorShapeError(CheckpointError):
    """A tensor's shape differs from what config.json implies."""


class TensorDtypeError(CheckpointError):
    """A tensor is not a floating-point tensor."""


class ModelNotFoundError(CheckpointError):
    """A model name is neither a local directory nor a resolvable Hugging Face model id."""


# --------------------------------------------------------------------------- key maps

# (HF name template, lm_jax path template, transpose). `{x}` placeholders match one name part.
_DECODER_KEYS: tuple[tuple[str, str, bool], ...] = (
    ("model.embed_tokens.weight", "embed_tokens/embedding", False),
    ("model.norm.weight", "final_norm/scale", False),
    ("lm_head.weight", "lm_head/kernel", True),
    ("model.layers.{i}.input_layernorm.weight", "layers_{i}/input_norm/scale", False),
    ("model.layers.{i}.post_attention_layernorm.weight", "layers_{i}/post_attn_norm/scale", False),
    ("model.layers.{i}.self_attn.{proj}.weight", "layers_{i}/attn/{proj}/kernel", True),
    ("model.layers.{i}.self_attn.{proj}.bias", "layers_{i}/attn/{proj}/bias", False),
    ("model.layers.{i}.mlp.{proj}.weight", "layers_{i}/mlp/{proj}/kernel", True),
    ("model.layers.{i}.mlp.{proj}.bias", "layers_{i}/mlp/{proj}/bias", False),
)

KEY_MAPS: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "llama": _DECODER_KEYS,
    "qwen2": _DECODER_KEYS,
    "mistral": _DECODER_KEYS,
}

# Buffers some exporters write that carry no parameters (recomputed from the config).
_IGNORED = (re.compile(r".*\.rotary_emb\.inv_freq$"),)

_FLOAT_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64"}


def _template_regex(template: str, sep: str) -> re.Pattern:
    parts = re.split(r"(\{\w+\})", template)
    out = "".join(f"(?P<{p[1:-1]}>[^{re.escape(sep)}]+)" if p.startswith("{") else re.escape(p)
                  for p in parts)
    return re.compile(out + r"\Z")


def lm_path_to_hf(model_type: str, path: str) -> tuple[str, bool]:
    """Maps an lm_jax path ('layers_0/attn/q_proj/kernel') to (HF tensor name, transpose)."""
    for hf_t, lm_t, transpose in KEY_MAPS[model_type]:
        m = _template_regex(lm_t, "/").match(path)
        if m:
            return hf_t.format(**m.groupdict()), transpose
    raise KeyError(f"parameter {path!r} has no Hugging Face name for model_type {model_type!r}")


def hf_to_lm_path(model_type: str, name: str) -> tuple[str, bool] | None:
    """Maps an HF tensor name to (lm_jax path, transpose), or None if the map has no rule."""
    for hf_t, lm_t, transpose in KEY_MAPS[model_type]:
        m = _template_regex(hf_t, ".").match(name)
        if m:
            return lm_t.format(**m.groupdict()), transpose
    return None


def expected_tensors(config: DecoderConfig) -> dict[str, tuple[str, bool, tuple[int, ...]]]:
    """HF name -> (lm_jax path, transpose, HF shape) for every base parameter of `config`."""
    from lm_jax.models.decoder import init_params

    abstract = jax.eval_shape(lambda r: init_params(config, r), jax.random.key(0))
    flat = traverse_util.flatten_dict(meta.unbox(abstract), sep="/")
    out = {}
    for path, leaf in flat.items():
        name, transpose = lm_path_to_hf(config.model_type, path)
        shape = tuple(leaf.shape)
        out[name] = (path, transpose, shape[::-1] if transpose else shape)
    return out


# --------------------------------------------------------------------------- config


def load_hf_config(model_dir: str, **overrides) -> DecoderConfig:
    """Reads `model_dir/config.json` into a DecoderConfig (`overrides` e.g. dtype='bfloat16').

    Raises:
      ConfigFileError: config.json missing or not JSON.
      UnsupportedArchitectureError: a model_type / rope scaling the decoder does not implement.
    """
    path = os.path.join(model_dir, CONFIG_FILE)
    try:
        with open(path) as f:
            hf = json.load(f)
    except FileNotFoundError:
        raise ConfigFileError(f"{path}: no config.json; is {model_dir!r} a Hugging Face model "
                              "directory?") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigFileError(f"{path}: cannot read config: {e}") from None
    try:
        return DecoderConfig.from_hf_dict(hf, **overrides)
    except UnsupportedModelError as e:
        raise UnsupportedArchitectureError(f"{path}: {e}") from None
    except KeyError as e:
        raise ConfigFileError(f"{path}: missing key {e}") from None


# --------------------------------------------------------------------------- reading


def _weight_files(model_dir: str) -> dict[str, str]:
    """HF tensor name -> absolute safetensors path, from the index or the single file."""
    index = os.path.join(model_dir, INDEX_FILE)
    single = os.path.join(model_dir, SINGLE_FILE)
    if os.path.exists(index):
        try:
            with open(index) as f:
                weight_map = json.load(f)["weight_map"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise CorruptFileError(f"{index}: unreadable safetensors index ({e!r})") from None
        files = {name: os.path.join(model_dir, fname) for name, fname in weight_map.items()}
        for name, path in files.items():
            if not os.path.exists(path):
                raise MissingWeightsError(f"{index}: tensor {name!r} is mapped to {path}, which "
                                          "does not exist")
        return files
    if os.path.exists(single):
        return {}
    raise MissingWeightsError(f"{model_dir}: no {SINGLE_FILE} or {INDEX_FILE} (only safetensors "
                              "checkpoints are supported)")


class _Checkpoint(contextlib.ExitStack):
    """Open safetensors handles and a validated tensor table for one model directory."""

    def __init__(self, model_dir: str):
        super().__init__()
        self.model_dir = model_dir
        self.handles: dict[str, Any] = {}
        self.where: dict[str, str] = {}  # tensor name -> file path
        self.meta: dict[str, tuple[str, tuple[int, ...]]] = {}  # name -> (dtype, shape)

    def open(self) -> None:
        """Opens every file and reads the headers (call inside `with`, so handles close)."""
        indexed = _weight_files(self.model_dir)
        paths = sorted(set(indexed.values())) or [os.path.join(self.model_dir, SINGLE_FILE)]
        for path in paths:
            try:
                # safe_open checks the header and that the data section covers the file exactly,
                # which is what catches truncated downloads.
                handle = self.enter_context(safe_open(path, framework="np"))
                names = list(handle.keys())
            except (SafetensorError, OSError) as e:
                raise CorruptFileError(f"{path}: not a valid safetensors file (truncated or "
                                       f"corrupt?): {e}") from None
            self.handles[path] = handle
            for name in names:
                if indexed and indexed.get(name) != path:
                    continue  # the index decides which copy counts
                s = handle.get_slice(name)
                self.where[name] = path
                self.meta[name] = (s.get_dtype(), tuple(s.get_shape()))
        for name, path in indexed.items():
            if name not in self.where:
                raise MissingTensorError(f"{path}: tensor {name!r} is listed in {INDEX_FILE} "
                                         "but absent from the file")

    def slice(self, name: str):
        return self.handles[self.where[name]].get_slice(name)

    def read(self, name: str) -> np.ndarray:
        return self.slice(name)[:]


def _validate(ckpt: _Checkpoint, config: DecoderConfig):
    """Checks names, shapes and dtypes of every tensor; returns the load plan."""
    expected = expected_tensors(config)
    present = set(ckpt.meta)
    missing = [n for n in expected if n not in present]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise MissingTensorError(
            f"{ckpt.model_dir}: tensor {missing[0]!r}{more} is missing from the checkpoint "
            f"({config.model_type}, {config.num_layers} layers, tie_word_embeddings="
            f"{config.tie_word_embeddings})")
    extra = sorted(n for n in present - set(expected)
                   if not any(p.match(n) for p in _IGNORED))
    if config.tie_word_embeddings and "lm_head.weight" in extra:
        # Some exporters write the tied head out anyway; accept it only if it really is tied.
        head, emb = ckpt.read("lm_head.weight"), ckpt.read("model.embed_tokens.weight")
        if head.shape != emb.shape or not np.array_equal(head, emb):
            raise UnexpectedTensorError(
                f"{ckpt.where['lm_head.weight']}: tensor 'lm_head.weight' differs from "
                "'model.embed_tokens.weight' although config.json sets tie_word_embeddings=true")
        extra.remove("lm_head.weight")
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise UnexpectedTensorError(
            f"{ckpt.where[extra[0]]}: unexpected tensor {extra[0]!r}{more} for model_type "
            f"{config.model_type!r}; does config.json match the weights?")
    for name, (_, _, shape) in expected.items():
        dtype, found = ckpt.meta[name]
        if found != shape:
            raise TensorShapeError(f"{ckpt.where[name]}: tensor {name!r} has shape "
                                   f"{list(found)}, expected {list(shape)} from config.json")
        if dtype not in _FLOAT_DTYPES:
            raise TensorDtypeError(f"{ckpt.where[name]}: tensor {name!r} has dtype {dtype}; "
                                   f"expected one of {sorted(_FLOAT_DTYPES)}")
    return expected


def _place(sl, transpose: bool, shape: tuple[int, ...], dtype, sharding) -> jax.Array:
    """Builds one global array, reading from disk only the slices this process's devices need."""
    cache: dict[Any, np.ndarray] = {}

    def piece(index: tuple[slice, ...]) -> np.ndarray:
        key = tuple((s.start, s.stop, s.step) for s in index)
        if key not in cache:
            src = sl[index[::-1]].T if transpose else sl[index]
            cache[key] = np.ascontiguousarray(src.astype(dtype))
        return cache[key]

    return jax.make_array_from_callback(shape, sharding, piece)


def load_params(model_dir: str, config: DecoderConfig, shardings: Any = None,
                dtype: Any = None) -> dict:
    """Imports a Hugging Face safetensors checkpoint as an lm_jax parameter tree.

    Args:
      model_dir: directory with `model.safetensors` or `model.safetensors.index.json` + shards.
      config: the architecture (usually `load_hf_config(model_dir)`); shapes are checked against it.
      shardings: optional tree of `NamedSharding` matching the parameter tree (e.g. from
        `lm_jax.sharding.param_shardings_for`; extra `lora_*` leaves are ignored). Default: all
        on the first local device.
      dtype: storage dtype of the result (default `config.param_dtype`).

    Returns:
      Nested dict of jax.Arrays, the unboxed tree of `init_params(config, rng)`; kernels are
      [in, out] (HF Linear weights transposed), embeddings [vocab, hidden].

    Raises:
      CheckpointError subclasses, each naming the file and tensor, before anything is loaded.
    """
    dtype = np.dtype(dtype or config.param_dtype)
    flat_shardings = {}
    if shardings is not None:
        flat_shardings = traverse_util.flatten_dict(meta.unbox(shardings), sep="/")
    default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    with _Checkpoint(model_dir) as ckpt:
        ckpt.open()
        plan = _validate(ckpt, config)
        flat = {}
        for name, (path, transpose, hf_shape) in plan.items():
            shape = hf_shape[::-1] if transpose else hf_shape
            if shardings is not None and path not in flat_shardings:
                raise KeyError(f"shardings tree has no entry for parameter {path!r}")
            sharding = flat_shardings.get(path, default)
            flat[path] = _place(ckpt.slice(name), transpose, shape, dtype, sharding)
    return traverse_util.unflatten_dict(flat, sep="/")


# --------------------------------------------------------------------------- writing


def _to_host(x) -> np.ndarray:
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        x = multihost_utils.process_allgather(x, tiled=True)
    return np.asarray(jax.device_get(x))


def save_params(params: Mapping, config: DecoderConfig, out_dir: str) -> str:
    """Exports a base parameter tree as a Hugging Face checkpoint transformers can load.

    Writes `out_dir/model.safetensors` (HF names, Linear weights [out, in], dtype of the params)
    and `out_dir/config.json` (`config.to_hf_dict()`). LoRA adapters must be folded in first
    (`lm_jax.models.lora.merge_adapter`). Multi-host: every process must call this (arrays are
    gathered); only process 0 writes.

    Returns:
      out_dir.
    """
    from safetensors.numpy import save_file

    flat = traverse_util.flatten_dict(meta.unbox(dict(params)), sep="/")
    adapters = [p for p in flat if p.rsplit("/", 1)[-1].startswith("lora_")]
    if adapters:
        raise ValueError(f"parameter {adapters[0]!r} is a LoRA adapter; fold it into the base "
                         "with lm_jax.models.lora.merge_adapter before export")
    expected = expected_tensors(config)
    by_path = {path: (name, transpose, shape) for name, (path, transpose, shape)
               in expected.items()}
    missing = sorted(set(by_path) - set(flat))
    extra = sorted(set(flat) - set(by_path))
    if missing or extra:
        raise ValueError(f"parameter tree does not match the config: missing {missing[:3]}, "
                         f"unexpected {extra[:3]}")
    tensors = {}
    for path, leaf in flat.items():
        name, transpose, shape = by_path[path]
        arr = _to_host(leaf)
        want = shape[::-1] if transpose else shape
        if arr.shape != want:
            raise ValueError(f"parameter {path!r} has shape {arr.shape}, expected {want}")
        tensors[name] = np.ascontiguousarray(arr.T if transpose else arr)
    if jax.process_index() == 0:
        os.makedirs(out_dir, exist_ok=True)
        # transformers refuses safetensors files without the 'format' metadata.
        save_file(tensors, os.path.join(out_dir, SINGLE_FILE), metadata={"format": "pt"})
        hf = config.to_hf_dict()
        hf["dtype"] = hf["torch_dtype"] = str(np.dtype(next(iter(tensors.values())).dtype))
        with open(os.path.join(out_dir, CONFIG_FILE), "w") as f:
            json.dump(hf, f, indent=2)
    return out_dir


# --------------------------------------------------------------------------- resolving


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def resolve_model_dir(name_or_path: str, flag_name: str = "--model_dir",
                      local_files_only: bool | None = None) -> str:
    """A local directory as is; otherwise a Hugging Face model id resolved to its snapshot.

    Offline (`local_files_only=True`, or HF_HUB_OFFLINE set) only the local HF cache is used.

    Raises:
      ModelNotFoundError: the path is not a directory, or the id cannot be resolved; the message
        tells the caller to pass a local directory through `flag_name`.
    """
    path = os.path.expanduser(name_or_path)
    if os.path.isdir(path):
        return path
    looks_like_path = (name_or_path.startswith(("/", ".", "~")) or os.path.exists(path)
                       or name_or_path.count("/") > 1)
    if looks_like_path:
        raise ModelNotFoundError(f"{flag_name}={name_or_path}: no such directory")
    offline = _truthy(os.environ.get("HF_HUB_OFFLINE")) if local_files_only is None \
        else local_files_only
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(
            name_or_path, local_files_only=offline,
            allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt",
                            "*.jinja"])
    except Exception as e:  # the hub raises many types (offline, auth, 404, network)
        where = "the local Hugging Face cache (offline mode)" if offline else "the Hugging Face Hub"
        raise ModelNotFoundError(
            f"{flag_name}={name_or_path}: not a local directory and not found in {where} "
            f"({type(e).__name__}); pass a local directory holding config.json and *.safetensors "
            f"via {flag_name}") from None
