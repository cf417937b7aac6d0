"""Nearest-neighbour search over a bank's retrieval keys: exact (numpy) and ScaNN.

Keys are unit vectors and the score is their dot product (= cosine). Both index kinds share one
interface, ``index.search(queries [Q, D], k) -> (indices [Q, k] int64, scores [Q, k] float32)``,
best first; an index is built from ``bank.keys`` so its row numbers are bank rows.

An index is saved beside its bank with a small ``index.json`` that records the bank's item count
and ids digest; `load_index` refuses a bank whose ids differ (`IndexMismatchError`), because row
numbers from the index would silently point at the wrong items.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import uuid
from typing import Any, Protocol

import numpy as np

INDEX_FORMAT = "lm_jax.index"
INDEX_FORMAT_VERSION = 1
INDEX_MANIFEST = "index.json"
# Below this many items brute force is fast (a 5000 x 512 matmul per query batch) and exact, and
# ScaNN's partitioning has too few points per leaf to train well.
EXACT_MAX_ITEMS = 5000


class IndexMismatchError(Exception):
    """An index and a bank (or query batch) disagree: other ids, other item count or other dim."""


class IndexFormatError(Exception):
    """An index directory is missing, incomplete, or of an unknown format."""


class SearchIndex(Protocol):
    """What every index offers."""

    kind: str
    num_items: int
    dim: int

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


def _as_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim == 1:
        q = q[None]
    if q.ndim != 2 or q.shape[1] != dim:
        raise IndexMismatchError(f"queries must be [Q, {dim}], got shape {q.shape}")
    return np.ascontiguousarray(q)


def _sort_desc(idx: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Ties broken by lower row number, so exact results are deterministic.
    order = np.lexsort((idx, -scores), axis=-1)
    return np.take_along_axis(idx, order, -1), np.take_along_axis(scores, order, -1)


class ExactIndex:
    """Brute-force top-k by float32 BLAS matmul, blocked over queries and keys to bound memory.

    Exact (up to float32 rounding); the reference for recall and the default for small banks.
    Working memory is about ``query_block * key_block * 4`` bytes.
    """

    kind = "exact"

    def __init__(self, keys: np.ndarray, query_block: int = 256, key_block: int = 131072):
        """keys: [N, D] float (stored as contiguous float32)."""
        self.keys = np.ascontiguousarray(np.asarray(keys, dtype=np.float32))
        if self.keys.ndim != 2:
            raise ValueError(f"keys must be [N, D], got shape {self.keys.shape}")
        self.num_items, self.dim = self.keys.shape
        self.query_block, self.key_block = query_block, key_block
        self.params: dict[str, Any] = {}

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """queries [Q, D] (or [D]) -> (indices [Q, k'] int64, scores [Q, k'] float32), best first.

        k' = min(k, N).
        """
        q = _as_queries(queries, self.dim)
        k = min(int(k), self.num_items)
        if k <= 0:
            return np.zeros((q.shape[0], 0), np.int64), np.zeros((q.shape[0], 0), np.float32)
        out_i = np.empty((q.shape[0], k), np.int64)
        out_s = np.empty((q.shape[0], k), np.float32)
        for qs in range(0, q.shape[0], self.query_block):
            qb = q[qs:qs + self.query_block]
            best_i = best_s = None
            for ks in range(0, self.num_items, self.key_block):
                s = qb @ self.keys[ks:ks + self.key_block].T
                if s.shape[1] > k:
                    top = np.argpartition(s, s.shape[1] - k, axis=1)[:, -k:]
                    s_top = np.take_along_axis(s, top, 1)
                else:
                    top = np.broadcast_to(np.arange(s.shape[1]), s.shape)
                    s_top = s
                top = top + ks
                if best_i is None:
                    best_i, best_s = top, s_top
                else:
                    best_i = np.concatenate([best_i, top], 1)
                    best_s = np.concatenate([best_s, s_top], 1)
                    if best_s.shape[1] > k:
                        sel = np.argpartition(best_s, best_s.shape[1] - k, axis=1)[:, -k:]
                        best_i = np.take_along_axis(best_i, sel, 1)
                        best_s = np.take_along_axis(best_s, sel, 1)
            best_i, best_s = _sort_desc(best_i, best_s)
            out_i[qs:qs + len(qb)] = best_i
            out_s[qs:qs + len(qb)] = best_s
        return out_i, out_s


def _default_leaves_to_search(num_leaves: int) -> int:
    return int(min(num_leaves, max(16, math.ceil(0.05 * num_leaves))))


def scann_params(num_items: int, dim: int, num_neighbors: int = 10) -> dict[str, Any]:
    """Default ScaNN parameters for a bank of ``num_items`` unit keys of width ``dim``.

    - Partitioning: ~sqrt(N) leaves (ScaNN's rule of thumb), spherical k-means (the keys are unit
      vectors scored by dot product) trained on min(N, max(100k, 250 per leaf)) keys, and 5% of
      the leaves (at least 16) searched per query. On 1M clustered 512-d keys (clusters of ~100)
      the training sample mattered most: 100k samples gave recall@10 0.85 at 10% of leaves, 250k
      spherical gave 0.97 at 5% (BENCHMARKS.md). Search cost grows with the leaves searched; pass
      ``leaves_to_search`` to `ScannIndex.search` to trade speed for recall on other data.
    - Scoring: anisotropic hashing with 2 dims per 4-bit block (LUT16), threshold 0.2, the
      standard MIPS setting; then the top ``reorder_num_neighbors`` candidates are rescored with
      the exact float32 dot product, which buys back the hashing error.
    - SOAR spilling is off: it raised recall further (0.985 at 5%) but doubled the build time.
    """
    n = max(int(num_items), 1)
    num_leaves = int(min(max(round(math.sqrt(n)), 1), max(n // 10, 1)))
    leaves_to_search = _default_leaves_to_search(num_leaves)
    return {
        "num_leaves": num_leaves,
        "num_leaves_to_search": leaves_to_search,
        # k-means on a sample; fewer than ~250 points per leaf cost recall on 1M keys.
        "training_sample_size": int(min(n, max(100_000, 250 * num_leaves))),
        "min_partition_size": int(max(1, min(50, n // (4 * num_leaves)))),
        "dimensions_per_block": 2,
        "anisotropic_quantization_threshold": 0.2,
        "reorder_num_neighbors": int(max(100, 10 * num_neighbors)),
        "num_neighbors": int(num_neighbors),
        "spherical": True,
        "soar_lambda": 0.0,
    }


class ScannIndex:
    """A ScaNN searcher (partitioning + asymmetric hashing + exact float32 reordering)."""

    kind = "scann"

    def __init__(self, searcher, num_items: int, dim: int, params: dict[str, Any]):
        self.searcher = searcher
        self.num_items, self.dim = int(num_items), int(dim)
        self.params = dict(params)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        leaves_to_search: int | None = None,
        pre_reorder_num_neighbors: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """queries [Q, D] (or [D]) -> (indices [Q, k'] int64, scores [Q, k'] float32), best first.

        k' = min(k, N); ``leaves_to_search`` / ``pre_reorder_num_neighbors`` override the build
        settings for this call (more = higher recall, slower).
        """
        q = _as_queries(queries, self.dim)
        k = min(int(k), self.num_items)
        pre = pre_reorder_num_neighbors or self.params.get("reorder_num_neighbors", k)
        pre = max(int(pre), k)
        leaves = leaves_to_search or self.params.get("num_leaves_to_search")
        if q.shape[0] == 1:
            i, s = self.searcher.search(q[0], k, pre, leaves if leaves else -1)
            idx, scores = np.asarray(i)[None], np.asarray(s)[None]
        else:
            # Spread the batch over all of ScaNN's threads (its default mini-batch is 256).
            per_thread = max(1, min(256, -(-q.shape[0] // (os.cpu_count() or 1))))
            idx, scores = self.searcher.search_batched_parallel(
                q, k, pre, leaves, batch_size=per_thread
            )
        idx = np.asarray(idx, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float32)
        if idx.shape[1] < k:  # fewer candidates than k in the searched leaves
            pad = k - idx.shape[1]
            idx = np.pad(idx, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        return idx, scores

    def set_num_threads(self, n: int) -> None:
        """Threads used by batched search."""
        self.searcher.set_num_threads(int(n))


def build_scann_index(
    keys: np.ndarray,
    num_neighbors: int = 10,
    num_leaves: int | None = None,
    num_leaves_to_search: int | None = None,
    training_sample_size: int | None = None,
    reorder_num_neighbors: int | None = None,
    dimensions_per_block: int | None = None,
    anisotropic_quantization_threshold: float | None = None,
    spherical: bool | None = None,
    soar_lambda: float | None = None,
    training_threads: int = 0,
) -> ScannIndex:
    """Builds a ScaNN index over unit keys; unset parameters come from `scann_params`.

    Args:
      keys: [N, D] float unit vectors (N >= 2).
      num_neighbors: default k of the searcher.
      num_leaves, num_leaves_to_search, training_sample_size: partitioning.
      reorder_num_neighbors: candidates rescored exactly after hashing.
      dimensions_per_block, anisotropic_quantization_threshold: asymmetric hashing.
      spherical: spherical k-means for the partitioning (centroids on the unit sphere).
      soar_lambda: enables SOAR spilling (each key also stored in a second, "orthogonal" leaf)
        with this lambda; 0 disables it.
      training_threads: threads for training (0 = ScaNN's default, all cores).

    Returns:
      ScannIndex whose ``params`` record every setting and ``build_seconds``.
    """
    import scann  # heavy import, only where ScaNN is used

    keys = np.ascontiguousarray(np.asarray(keys, dtype=np.float32))
    if keys.ndim != 2 or keys.shape[0] < 2:
        raise ValueError(f"keys must be [N >= 2, D], got shape {keys.shape}")
    n, d = keys.shape
    p = scann_params(n, d, num_neighbors)
    given = {
        "num_leaves": num_leaves,
        "num_leaves_to_search": num_leaves_to_search,
        "training_sample_size": training_sample_size,
        "reorder_num_neighbors": reorder_num_neighbors,
        "dimensions_per_block": dimensions_per_block,
        "anisotropic_quantization_threshold": anisotropic_quantization_threshold,
        "spherical": spherical,
        "soar_lambda": soar_lambda,
    }
    p.update({k: v for k, v in given.items() if v is not None})
    if num_leaves is not None and num_leaves_to_search is None:
        p["num_leaves_to_search"] = _default_leaves_to_search(num_leaves)
    p["num_leaves_to_search"] = min(p["num_leaves_to_search"], p["num_leaves"])
    p["training_sample_size"] = min(p["training_sample_size"], n)
    t0 = time.perf_counter()
    searcher = (
        scann.scann_ops_pybind.builder(keys, num_neighbors, "dot_product")
        .tree(
            num_leaves=p["num_leaves"],
            num_leaves_to_search=p["num_leaves_to_search"],
            training_sample_size=p["training_sample_size"],
            min_partition_size=p["min_partition_size"],
            spherical=bool(p["spherical"]),
            soar_lambda=p["soar_lambda"] or None,
        )
        .score_ah(
            p["dimensions_per_block"],
            anisotropic_quantization_threshold=p["anisotropic_quantization_threshold"],
        )
        .reorder(p["reorder_num_neighbors"])
        .set_n_training_threads(training_threads)
        .build()
    )
    p["build_seconds"] = round(time.perf_counter() - t0, 3)
    return ScannIndex(searcher, n, d, p)


def build_index(keys: np.ndarray, kind: str = "auto", num_neighbors: int = 10, **scann_kwargs):
    """Builds an index over keys [N, D]: ``kind`` "exact", "scann", or "auto" (exact when
    N < EXACT_MAX_ITEMS, ScaNN otherwise). Extra arguments go to `build_scann_index`."""
    keys = np.asarray(keys)
    if kind == "auto":
        kind = "exact" if keys.shape[0] < EXACT_MAX_ITEMS else "scann"
    if kind == "exact":
        return ExactIndex(keys)
    if kind == "scann":
        return build_scann_index(keys, num_neighbors=num_neighbors, **scann_kwargs)
    raise ValueError(f"unknown index kind {kind!r}; expected 'auto', 'exact' or 'scann'")


# --------------------------------------------------------------------------- save / load


def _bank_identity(bank_or_manifest) -> dict[str, Any]:
    if isinstance(bank_or_manifest, dict):
        m = bank_or_manifest
        try:
            return {"num_items": int(m["num_items"]), "ids_sha256": m["ids_sha256"],
                    "key_dim": int(m["key_dim"]), "path": None}
        except KeyError as e:
            raise IndexMismatchError(f"bank manifest lacks {e}; pass a LatentBank") from e
    b = bank_or_manifest
    return {"num_items": int(b.num_items), "ids_sha256": b.ids_sha256, "key_dim": int(b.key_dim),
            "path": getattr(b, "path", None)}


def save_index(index, index_dir: str | os.PathLike, bank_manifest, overwrite: bool = False) -> str:
    """Serialises ``index`` to ``index_dir`` (atomically) with an ``index.json`` naming its bank.

    Args:
      index: ExactIndex or ScannIndex built from the bank's keys (rows = bank rows).
      index_dir: target directory, conventionally ``<bank>/index`` or ``<bank>.index``.
      bank_manifest: the LatentBank, or its manifest dict (needs num_items, ids_sha256, key_dim).
      overwrite: replace an existing index directory.

    Returns:
      index_dir as a string.
    """
    ident = _bank_identity(bank_manifest)
    if index.num_items != ident["num_items"] or index.dim != ident["key_dim"]:
        raise IndexMismatchError(
            f"index has {index.num_items} items of dim {index.dim}; the bank has "
            f"{ident['num_items']} of dim {ident['key_dim']}"
        )
    index_dir = os.fspath(index_dir).rstrip("/")
    if os.path.exists(index_dir) and not overwrite:
        raise IndexFormatError(f"{index_dir} exists; pass overwrite=True to replace it")
    tmp = f"{index_dir}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.makedirs(tmp)
    try:
        if index.kind == "scann":
            os.makedirs(os.path.join(tmp, "scann"))
            index.searcher.serialize(os.path.join(tmp, "scann"), relative_path=True)
        record = {
            "format": INDEX_FORMAT,
            "format_version": INDEX_FORMAT_VERSION,
            "kind": index.kind,
            "num_items": index.num_items,
            "dim": index.dim,
            "ids_sha256": ident["ids_sha256"],
            "bank_path": os.path.abspath(ident["path"]) if ident["path"] else None,
            "params": index.params,
        }
        with open(os.path.join(tmp, INDEX_MANIFEST), "w", encoding="utf-8") as f:
            f.write(json.dumps(record, indent=2, sort_keys=True) + "\n")
        if os.path.exists(index_dir):
            old = f"{index_dir}.old-{uuid.uuid4().hex[:8]}"
            os.rename(index_dir, old)
            os.rename(tmp, index_dir)
            shutil.rmtree(old)
        else:
            os.rename(tmp, index_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return index_dir


def read_index_manifest(index_dir: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``index.json`` of an index directory (IndexFormatError if absent/invalid)."""
    path = os.path.join(os.fspath(index_dir), INDEX_MANIFEST)
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except FileNotFoundError as e:
        raise IndexFormatError(f"no index at {index_dir}: {INDEX_MANIFEST} missing") from e
    except json.JSONDecodeError as e:
        raise IndexFormatError(f"{path} is not valid JSON: {e}") from e
    if record.get("format") != INDEX_FORMAT or record.get("format_version") != INDEX_FORMAT_VERSION:
        raise IndexFormatError(
            f"{path}: format {record.get('format')!r} v{record.get('format_version')} is not "
            f"{INDEX_FORMAT!r} v{INDEX_FORMAT_VERSION}"
        )
    return record


def load_index(index_dir: str | os.PathLike, bank):
    """Loads an index saved by `save_index` and checks that it belongs to ``bank``.

    Args:
      index_dir: directory written by save_index.
      bank: the LatentBank to search (its keys are used directly by an exact index).

    Raises:
      IndexMismatchError: the bank's ids (digest), item count or key dim differ from those the
        index was built on. Rebuild the index for this bank.
      IndexFormatError: missing or unreadable index files.
    """
    index_dir = os.fspath(index_dir).rstrip("/")
    record = read_index_manifest(index_dir)
    ident = _bank_identity(bank)
    problems = []
    if record["num_items"] != ident["num_items"]:
        problems.append(f"item count {record['num_items']} vs {ident['num_items']}")
    if record["ids_sha256"] != ident["ids_sha256"]:
        problems.append(
            f"ids sha256 {record['ids_sha256'][:12]}... vs {ident['ids_sha256'][:12]}..."
        )
    if record["dim"] != ident["key_dim"]:
        problems.append(f"key dim {record['dim']} vs {ident['key_dim']}")
    if problems:
        where = ident["path"] or "the given bank"
        raise IndexMismatchError(
            f"index {index_dir} was built for another bank than {where}: "
            + "; ".join(problems) + " (index vs bank); rebuild the index for this bank"
        )
    if record["kind"] == "exact":
        if not hasattr(bank, "keys"):
            raise IndexMismatchError("an exact index needs the LatentBank itself (its keys)")
        return ExactIndex(bank.keys)
    if record["kind"] == "scann":
        import scann

        sdir = os.path.join(index_dir, "scann")
        if not os.path.isdir(sdir):
            raise IndexFormatError(f"{sdir} missing")
        try:
            searcher = scann.scann_ops_pybind.load_searcher(sdir, assets_backcompat_shim=False)
        except Exception as e:  # ScaNN raises plain RuntimeError/ValueError from C++
            raise IndexFormatError(f"cannot load ScaNN searcher from {sdir}: {e}") from e
        return ScannIndex(searcher, record["num_items"], record["dim"], record["params"])
    raise IndexFormatError(f"{index_dir}: unknown index kind {record['kind']!r}")
