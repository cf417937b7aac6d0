"""Device mesh, logical-axis sharding rules, global batches and multi-host start-up.

Every parameter and the activations that matter carry logical axis names (see the parameter tree
in `lm_jax.models.decoder`); `DEFAULT_RULES` maps them to the mesh axes `data`, `fsdp`, `tensor`.
The same code runs on one CPU, on 8 fake CPU devices in tests, and on multi-host TPU pods:

    mesh = make_mesh(data=-1, fsdp=2, tensor=1)
    shardings = param_shardings_for(config, mesh, adapters)
    params = shard_tree(params, shardings)          # or hf.checkpoint.load_params(..., shardings)
    with use_mesh(mesh):                            # jax.set_mesh + flax logical_axis_rules
        step = jax.jit(train_step, in_shardings=..., out_shardings=...)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from flax.core import meta
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# (logical name, mesh axes), in priority order: when two dims of one array want the same mesh
# axis, the earlier rule wins and the later dim stays replicated. That is why an activation
# [batch, length, embed] is split over (data, fsdp) on batch only, while a kernel [embed, mlp]
# splits embed over fsdp (FSDP/ZeRO-3 style) and mlp over tensor (Megatron style).
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", BATCH_AXES),
    ("length", None),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", "tensor"),
    ("vocab", "tensor"),
    ("norm", None),
)

Rules = Sequence[tuple[str, Any]]


class MeshError(ValueError):
    """A mesh shape that does not fit the available devices, or a batch that does not fit it."""


# --------------------------------------------------------------------------- mesh


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 3-axis mesh ('data', 'fsdp', 'tensor') over `devices` (default: all global devices).

    At most one size may be -1: it takes all devices the others leave.

    Raises:
      MeshError: when the sizes do not multiply to the device count.
    """
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    sizes = {"data": data, "fsdp": fsdp, "tensor": tensor}
    free = [k for k, v in sizes.items() if v == -1]
    if len(free) > 1:
        raise MeshError(f"at most one mesh axis may be -1, got {sizes}")
    bad = [k for k, v in sizes.items() if v != -1 and v < 1]
    if bad:
        raise MeshError(f"mesh axis sizes must be positive or -1, got {sizes}")
    fixed = math.prod(v for v in sizes.values() if v != -1)
    if free:
        if n % fixed:
            raise MeshError(f"mesh {sizes}: {n} devices are not divisible by the fixed axes' "
                            f"product {fixed}")
        sizes[free[0]] = n // fixed
    if math.prod(sizes.values()) != n:
        raise MeshError(f"mesh {sizes} needs {math.prod(sizes.values())} devices, "
                        f"but {n} are available")
    shape = tuple(sizes[a] for a in MESH_AXES)
    # Auto axes: the compiler (GSPMD/Shardy) propagates shardings from the in/out shardings of
    # jit and from Flax's `with_logical_constraint` hints. Explicit axes would make sharding part
    # of every array's type and require annotating each ambiguous op, which Flax Linen's logical
    # constraints are not written for.
    axis_types = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
    return jax.make_mesh(shape, MESH_AXES, axis_types=axis_types, devices=devices)


@contextlib.contextmanager
def use_mesh(mesh: Mesh, rules: Rules = DEFAULT_RULES) -> Iterator[Mesh]:
    """Context in which jit traces with `mesh` set and Flax logical names resolved by `rules`."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        yield mesh


# --------------------------------------------------------------------------- logical -> mesh


def logical_to_pspec(names: Sequence[str | None], shape: Sequence[int], mesh: Mesh,
                     rules: Rules = DEFAULT_RULES) -> PartitionSpec:
    """Mesh PartitionSpec for one array with logical dim `names` and `shape`.

    A mesh axis that is absent from `mesh`, has size 1, or does not divide its dimension is
    dropped (that dimension stays replicated along it): an odd vocabulary size on tensor=2, or a
    tiny test model on a wide mesh, then loads instead of failing in `device_put`.
    """
    axes = nn.logical_to_mesh_axes(tuple(names), rules)
    out: list[Any] = []
    for dim, ax in zip(shape, axes):
        group = () if ax is None else ((ax,) if isinstance(ax, str) else tuple(ax))
        kept, size = [], 1
        for a in group:
            a_size = mesh.shape.get(a, 1)
            if a_size > 1 and dim % (size * a_size) == 0:
                kept.append(a)
                size *= a_size
        out.append(None if not kept else kept[0] if len(kept) == 1 else tuple(kept))
    return PartitionSpec(*out)


def _is_box(x: Any) -> bool:
    return isinstance(x, meta.AxisMetadata)


def logical_to_sharding(tree: Any, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> Any:
    """NamedSharding for every leaf of a boxed parameter tree, as an unboxed tree.

    Args:
      tree: parameters boxed in `nn.Partitioned`/`nn.LogicallyPartitioned` (from `init`), or the
        `jax.eval_shape` of such an init (boxes around ShapeDtypeStructs). Unboxed leaves are
        replicated.

    Returns:
      The same tree structure without boxes, each leaf a `NamedSharding` on `mesh`.
    """

    def one(x):
        if _is_box(x):
            value = x.value if isinstance(x, meta.Partitioned) else x.unbox()
            names = getattr(x, "names", None)
            if names is not None:
                return NamedSharding(mesh, logical_to_pspec(names, np.shape(value), mesh, rules))
        return NamedSharding(mesh, PartitionSpec())

    return jax.tree.map(one, tree, is_leaf=_is_box)


def param_shardings_for(config, mesh: Mesh, adapters: tuple = (),
                        rules: Rules = DEFAULT_RULES) -> Any:
    """Shardings for `init_params(config, rng, adapters)`'s tree (unboxed), without allocating it.

    Args:
      config: a `DecoderConfig`.
      adapters: LoRA specs, whose `lora_*` leaves get shardings too.
    """
    from lm_jax.models.decoder import init_params  # models import sharding-free code only

    abstract = jax.eval_shape(lambda r: init_params(config, r, tuple(adapters)),
                              jax.random.key(0))
    return logical_to_sharding(abstract, mesh, rules)


def shard_tree(tree: Any, shardings: Any) -> Any:
    """`jax.device_put`s each leaf of `tree` (boxed or not) with the matching sharding."""
    return jax.tree.map(jax.device_put, meta.unbox(tree), shardings)


def replicated(mesh: Mesh) -> NamedSharding:
    """A sharding that keeps a full copy on every device of `mesh`."""
    return NamedSharding(mesh, PartitionSpec())


# --------------------------------------------------------------------------- batches


def batch_sharding(mesh: Mesh, ndim_extra: int = 0) -> NamedSharding:
    """Splits dim 0 (the batch) over ('data', 'fsdp'); `ndim_extra` trailing dims replicated."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES, *([None] * ndim_extra)))


def data_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    """`batch_sharding` for an array of rank `ndim` (a scalar is replicated)."""
    if ndim == 0:
        return replicated(mesh)
    return batch_sharding(mesh, ndim - 1)


def make_global_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Assembles each process's slice of the batch into global arrays split over the batch axes.

    Args:
      local_batch: name -> array [B_local, ...] from this process's data pipeline (every process
        holds a different B_local-row slice; single-process, B_local is the global batch).

    Returns:
      name -> jax.Array [B_local * process_count, ...] with `data_sharding`.

    Raises:
      MeshError: when the global batch does not divide over data * fsdp.
    """
    shards = mesh.shape["data"] * mesh.shape["fsdp"]
    out = {}
    for key, value in local_batch.items():
        value = np.asarray(value)
        if value.ndim == 0:
            out[key] = jax.device_put(value, replicated(mesh))
            continue
        global_rows = value.shape[0] * jax.process_count()
        if global_rows % shards:
            raise MeshError(f"batch field {key!r}: global batch {global_rows} is not divisible "
                            f"by data*fsdp={shards}")
        out[key] = jax.make_array_from_process_local_data(data_sharding(mesh, value.ndim), value)
    return out


# --------------------------------------------------------------------------- multi-host


_DISTRIBUTED_STARTED = False


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None,
                           auto: bool = False) -> bool:
    """Starts JAX's multi-process runtime once; later calls do nothing.

    Explicit arguments (a multi-host GPU/CPU cluster) are passed through; `auto=True` lets JAX
    detect the cluster (Cloud TPU pods, SLURM); with neither, this is single-process and a no-op.
    Must run before any other JAX call touches devices.

    Returns:
      True if this call initialized the runtime.
    """
    global _DISTRIBUTED_STARTED
    if _DISTRIBUTED_STARTED or jax.distributed.is_initialized():
        _DISTRIBUTED_STARTED = True
        return False
    explicit = any(v is not None for v in (coordinator_address, num_processes, process_id))
    if explicit:
        jax.distributed.initialize(coordinator_address=coordinator_address,
                                   num_processes=num_processes, process_id=process_id)
    elif auto:
        jax.distributed.initialize()
    else:
        return False
    _DISTRIBUTED_STARTED = True
    return True
