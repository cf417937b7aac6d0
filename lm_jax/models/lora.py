"""LoRA: named low-rank adapters over one frozen base, the trainable/frozen split, and merging.

Adapter parameters live in the ordinary `params` tree next to the base kernel they adapt, under
`lora_{name}_a` ([in, r]) and `lora_{name}_b` ([r, out]). Which parameters train is decided by
path patterns (`split_params`), not by flags inside modules, so the optimizer and the jitted step
only ever see the trainable subtree.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclasses.dataclass(frozen=True)
class LoraSpec:
    """One named adapter: rank r, scale alpha / r, dropout on its input, target projections."""

    name: str
    rank: int = 64
    alpha: float = 128.0
    dropout: float = 0.05
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")

    def __post_init__(self):
        bad = [t for t in self.targets if t not in PROJECTIONS]
        if bad:
            raise ValueError(f"LoRA adapter {self.name!r}: unknown target projections {bad}; "
                             f"choose from {PROJECTIONS}")
        if self.rank <= 0:
            raise ValueError(f"LoRA adapter {self.name!r}: rank must be positive, got {self.rank}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


class LoraDense(nn.Module):
    """A bias-optional dense layer whose kernel can carry several named LoRA adapters.

    Attributes:
      features: output width.
      proj_name: which projection this is (`q_proj`, ...), matched against each spec's targets.
      axes: logical axis names of the kernel (in, out).
      adapters: all adapter specs of the model; those targeting `proj_name` get parameters here.
      adapter: the adapter applied in this call (None: base only).
    """

    features: int
    proj_name: str
    axes: tuple[str | None, str | None]
    use_bias: bool = False
    adapters: tuple[LoraSpec, ...] = ()
    adapter: str | None = None
    deterministic: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: [..., in] -> [..., features]."""
        in_features = x.shape[-1]
        kernel = self.param(
            "kernel",
            nn.with_logical_partitioning(nn.initializers.normal(0.02), self.axes),
            (in_features, self.features),
            self.param_dtype,
        )
        x = x.astype(self.dtype)
        y = jnp.dot(x, kernel.astype(self.dtype))
        if self.use_bias:
            bias = self.param(
                "bias",
                nn.with_logical_partitioning(nn.initializers.zeros, (self.axes[1],)),
                (self.features,),
                self.param_dtype,
            )
            y = y + bias.astype(self.dtype)
        for spec in self.adapters:
            if self.proj_name not in spec.targets:
                continue
            # PEFT's default: A ~ kaiming-uniform, B = 0, so a fresh adapter is the identity.
            a = self.param(
                f"lora_{spec.name}_a",
                nn.with_logical_partitioning(
                    nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
                    (self.axes[0], None)),
                (in_features, spec.rank),
                self.param_dtype,
            )
            b = self.param(
                f"lora_{spec.name}_b",
                nn.with_logical_partitioning(nn.initializers.zeros, (None, self.axes[1])),
                (spec.rank, self.features),
                self.param_dtype,
            )
            if spec.name != self.adapter:
                continue
            h = nn.Dropout(spec.dropout, deterministic=self.deterministic)(x)
            y = y + spec.scale * jnp.dot(jnp.dot(h, a.astype(self.dtype)), b.astype(self.dtype))
        return y


def check_adapter(adapters: Iterable[LoraSpec], adapter: str | None) -> None:
    names = [s.name for s in adapters]
    if adapter is not None and adapter not in names:
        raise ValueError(f"adapter {adapter!r} is not defined; defined adapters: {names}")


# --------------------------------------------------------------------------- pytree split


def path_str(path: tuple[str, ...]) -> str:
    return "/".join(str(p) for p in path)


def split_params(params: Mapping, trainable_patterns: Iterable[str]) -> tuple[dict, dict]:
    """Splits a nested parameter dict into (trainable, frozen) by regex on '/'-joined paths.

    A leaf is trainable when any pattern `re.search`es its path. Both halves keep the nesting, so
    `merge_params(trainable, frozen)` rebuilds the original.
    """
    pats = [re.compile(p) for p in trainable_patterns]
    flat = traverse_util.flatten_dict(params)
    train, frozen = {}, {}
    for path, leaf in flat.items():
        (train if any(p.search(path_str(path)) for p in pats) else frozen)[path] = leaf
    return traverse_util.unflatten_dict(train), traverse_util.unflatten_dict(frozen)


def merge_params(*trees: Mapping) -> dict:
    """Deep-merges disjoint nested dicts (the inverse of `split_params`)."""
    flat: dict = {}
    for tree in trees:
        for path, leaf in traverse_util.flatten_dict(tree).items():
            if path in flat:
                raise ValueError(f"parameter {path_str(path)} appears in two trees")
            flat[path] = leaf
    return traverse_util.unflatten_dict(flat)


def merge_adapter(params: Mapping, spec: LoraSpec) -> dict:
    """Folds adapter `spec` into the base kernels and drops every adapter's parameters.

    kernel' = kernel + (alpha / r) * A @ B. The result is a plain base model tree (for export).
    """
    flat = traverse_util.flatten_dict(params)
    out = {}
    for path, leaf in flat.items():
        if path[-1].startswith("lora_"):
            continue
        if path[-1] == "kernel":
            a = flat.get(path[:-1] + (f"lora_{spec.name}_a",))
            b = flat.get(path[:-1] + (f"lora_{spec.name}_b",))
            if a is not None:
                merged = np.asarray(leaf, np.float32) + spec.scale * (
                    np.asarray(a, np.float32) @ np.asarray(b, np.float32))
                leaf = jnp.asarray(merged, dtype=jnp.asarray(leaf).dtype)
        out[path] = leaf
    return traverse_util.unflatten_dict(out)
