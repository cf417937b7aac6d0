"""The latent bank: the exported memory artifact (shards + manifest).

A bank holds, per evidence item, its latent tokens ``z`` ([T, H]: T = 1 for Latent Memory, more for
multi-token memory), its unit retrieval key ([D], D = 512 in the paper), its id, title and text.

On disk (format version 1; see docs/memory.md)::

    <bank>/
      manifest.json                       written last, by finalize_bank
      shard-00000-of-00002/               one shard per exporting process
        shard.json                        the shard's completion record (counts, dims, checksums)
        part-00000/                       a part: up to `items_per_part` items, the unit of resume
          latents.npy                     [n, T, H] uint16 (bfloat16 bits) | int8 | float32
          scales.npy                      [n, T] float32, int8 only: symmetric absmax scale per row
          keys.npy                        [n, D] float32 unit vectors
          records.jsonl                   one {"id", "text", "title"} object per line, row order
          part.json                       counts and sha256 of the files above
        part-00001/ ...

While exporting, everything lives in ``<bank>.partial/``; `finalize_bank` writes the manifest there
and renames the directory to ``<bank>`` in one step, so ``<bank>`` either does not exist or is
complete.
A part is written under a temporary name and renamed when complete, so an interrupted export finds
only complete parts, skips them, and produces the same bytes as an uninterrupted one (given an
encoder that is deterministic and independent of batch composition: batches restart at part
boundaries so even a batch-dependent encoder sees the same batches).

Nothing here imports jax: encoders hand over numpy arrays, readers return numpy arrays.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import ml_dtypes
import numpy as np

FORMAT_NAME = "lm_jax.latent_bank"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SHARD_RECORD = "shard.json"
PART_RECORD = "part.json"
LATENT_DTYPES = ("bfloat16", "int8", "float32")
DEFAULT_ITEMS_PER_PART = 65536
# Keys are meant to be L2-normalised; a looser check would let un-normalised keys silently turn
# cosine retrieval into dot-product retrieval.
_KEY_NORM_TOL = 1e-2
_PART_RE = re.compile(r"^part-(\d{5})$")
_SHARD_RE = re.compile(r"^shard-(\d{5})-of-(\d{5})$")


class BankError(Exception):
    """A latent bank is malformed, corrupted, incomplete or inconsistent with its input."""


# ------------------------------------------------------------------ names and small helpers


def shard_name(shard_index: int, num_shards: int) -> str:
    """Directory name of one shard, e.g. ``shard-00000-of-00004``."""
    return f"shard-{shard_index:05d}-of-{num_shards:05d}"


def part_name(part_index: int) -> str:
    """Directory name of one part inside a shard, e.g. ``part-00003``."""
    return f"part-{part_index:05d}"


def staging_dir(out_dir: str | os.PathLike) -> str:
    """Where an unfinished export of ``out_dir`` lives: ``<out_dir>.partial``."""
    return os.fspath(out_dir).rstrip("/") + ".partial"


def ids_sha256(ids: Sequence[str] | np.ndarray) -> str:
    """sha256 (hex) of the bank's ids in row order: of their compact JSON list, UTF-8 encoded.

    Indexes record this digest so that an index is never used with a bank whose rows differ.
    """
    if isinstance(ids, np.ndarray):
        ids = ids.tolist()
    blob = json.dumps(list(ids), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _dumps(obj: Any) -> str:
    # One canonical JSON spelling everywhere, so that rewritten records are byte-identical.
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _write_file_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def _read_json(path: str, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as e:
        raise BankError(f"{what} not found: {path}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BankError(f"{what} is not valid JSON: {path}: {e}") from e


def _fsync_dir(path: str) -> None:
    # Makes a rename durable; not every platform lets a directory be opened.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- quantisation


def quantize_latents(latents: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Converts latents to their storage form.

    Args:
      latents: [n, T, H] float.
      dtype: ``"bfloat16"`` (stored as its uint16 bit pattern, round-to-nearest-even),
        ``"int8"`` (symmetric absmax per item row: scale [n, T] = max|z| / 127) or ``"float32"``.

    Returns:
      (stored [n, T, H], scales [n, T] float32 or None).
    """
    x = np.asarray(latents, dtype=np.float32)
    if dtype == "float32":
        return x, None
    if dtype == "bfloat16":
        return x.astype(ml_dtypes.bfloat16).view(np.uint16), None
    if dtype == "int8":
        absmax = np.max(np.abs(x), axis=-1)
        # An all-zero row would divide by zero; any positive scale reproduces it exactly.
        scales = np.where(absmax > 0, absmax / 127.0, 1.0).astype(np.float32)
        q = np.clip(np.rint(x / scales[..., None]), -127, 127).astype(np.int8)
        return q, scales
    raise BankError(f"unknown latent dtype {dtype!r}; expected one of {LATENT_DTYPES}")


def dequantize_latents(stored: np.ndarray, scales: np.ndarray | None, dtype: str) -> np.ndarray:
    """Inverse of `quantize_latents`: stored [n, T, H] (+ scales [n, T]) -> [n, T, H] float32."""
    if dtype == "float32":
        return np.asarray(stored, dtype=np.float32)
    if dtype == "bfloat16":
        return np.asarray(stored).view(ml_dtypes.bfloat16).astype(np.float32)
    if dtype == "int8":
        if scales is None:
            raise BankError("int8 latents need their scales")
        return np.asarray(stored, dtype=np.float32) * np.asarray(scales, np.float32)[..., None]
    raise BankError(f"unknown latent dtype {dtype!r}; expected one of {LATENT_DTYPES}")


def latent_bytes_per_item(dtype: str, num_latent_tokens: int, hidden_size: int) -> int:
    """Stored latent bytes of one item, int8 scales included."""
    t, h = num_latent_tokens, hidden_size
    return {"float32": 4 * t * h, "bfloat16": 2 * t * h, "int8": t * h + 4 * t}[dtype]


# --------------------------------------------------------------------------- writing


def _normalise_ids(ids: Any, n: int) -> list:
    if isinstance(ids, np.ndarray):
        if ids.dtype.kind in "iu":
            ids = [int(i) for i in ids.reshape(-1)]
        elif ids.dtype.kind in "UO":
            ids = ids.reshape(-1).tolist()
        else:
            raise BankError(f"ids must be strings or integers, got array of dtype {ids.dtype}")
    else:
        ids = list(ids)
    out = []
    for i in ids:
        if isinstance(i, (bool, np.bool_)):
            raise BankError(f"ids must be strings or integers, got {i!r}")
        if isinstance(i, (int, np.integer)):
            i = int(i)
            if not -(2**63) <= i < 2**63:
                raise BankError(f"integer id {i} does not fit in int64")
        elif not isinstance(i, str):
            raise BankError(f"ids must be strings or integers, got {type(i).__name__}: {i!r}")
        out.append(i)
    if len(out) != n:
        raise BankError(f"got {len(out)} ids for {n} latents")
    return out


def _id_type(ids: list) -> str:
    kinds = {type(i) for i in ids}
    if len(kinds) > 1:
        raise BankError("ids mix strings and integers; use one type for the whole bank")
    return "str" if str in kinds else "int64"


class ShardWriter:
    """Writes one shard of a bank, part by part; resumes a shard left by an interrupted run.

    Each process of a multi-host export owns one shard (``shard_index`` of ``num_shards``). Items
    are buffered and written as parts of ``items_per_part`` items; a part goes to a temporary
    directory that is renamed when all its files are written and fsynced, so after a crash only
    complete parts exist. On construction the writer checks existing parts (their checksums) and
    exposes their ids as `resumed_ids`; the caller skips those items and keeps adding from there.

    Usage::

        w = ShardWriter(out_dir, shard_index, num_shards, "bfloat16")
        w.add(ids, latents, keys, titles, texts)   # any number of times
        w.close()                                  # writes shard.json
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        shard_index: int = 0,
        num_shards: int = 1,
        latent_dtype: str = "bfloat16",
        items_per_part: int = DEFAULT_ITEMS_PER_PART,
    ):
        if not 0 <= shard_index < num_shards:
            raise BankError(f"shard_index={shard_index} not in [0, num_shards={num_shards})")
        if latent_dtype not in LATENT_DTYPES:
            raise BankError(
                f"unknown latent_dtype {latent_dtype!r}; expected one of {LATENT_DTYPES}"
            )
        if items_per_part < 1:
            raise BankError(f"items_per_part must be >= 1, got {items_per_part}")
        self.out_dir = os.fspath(out_dir).rstrip("/")
        if os.path.exists(os.path.join(self.out_dir, MANIFEST)):
            raise BankError(
                f"{self.out_dir} is already a finished bank; delete it or export elsewhere"
            )
        self.shard_index, self.num_shards = shard_index, num_shards
        self.latent_dtype = latent_dtype
        self.items_per_part = items_per_part
        self.root = staging_dir(self.out_dir)
        self.shard_dir = os.path.join(self.root, shard_name(shard_index, num_shards))
        os.makedirs(self.shard_dir, exist_ok=True)
        self._check_num_shards()
        self._dims: dict[str, Any] | None = None  # num_latent_tokens, hidden_size, key_dim, id_type
        self._parts: list[dict] = []
        self._buf: dict[str, list] = {k: [] for k in ("ids", "lat", "scales", "keys", "rec")}
        self._buf_n = 0
        self._closed = False
        self.resumed_ids: list = []
        self.complete = False
        self._resume()

    # -- resume

    def _check_num_shards(self) -> None:
        for name in os.listdir(self.root):
            m = _SHARD_RE.match(name)
            if m and int(m.group(2)) != self.num_shards:
                raise BankError(
                    f"{self.root} holds {name} from an export with num_shards={int(m.group(2))}, "
                    f"this one has num_shards={self.num_shards}; use the same value or a new "
                    "out_dir"
                )

    def _resume(self) -> None:
        for name in os.listdir(self.shard_dir):
            if ".tmp-" in name:  # debris of an interrupted part or record write
                p = os.path.join(self.shard_dir, name)
                shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
        record_path = os.path.join(self.shard_dir, SHARD_RECORD)
        if os.path.exists(record_path):
            record = _read_json(record_path, "shard record")
            if record.get("latent_dtype") != self.latent_dtype:
                raise BankError(
                    f"{record_path}: shard was written with latent_dtype="
                    f"{record.get('latent_dtype')!r}, this export asks for {self.latent_dtype!r}"
                )
        part_dirs = sorted(n for n in os.listdir(self.shard_dir) if _PART_RE.match(n))
        for expected, name in enumerate(part_dirs):
            path = os.path.join(self.shard_dir, name)
            if name != part_name(expected):
                raise BankError(f"{self.shard_dir}: parts are not contiguous at {name}")
            try:
                part = _read_json(os.path.join(path, PART_RECORD), "part record")
                _verify_files(path, part["files"])
            except BankError:
                # A damaged part is redone, with everything after it: order must be preserved.
                for later in part_dirs[expected:]:
                    shutil.rmtree(os.path.join(self.shard_dir, later))
                if os.path.exists(record_path):
                    os.remove(record_path)
                break
            if part["latent_dtype"] != self.latent_dtype:
                raise BankError(
                    f"{path}: part was written with latent_dtype={part['latent_dtype']!r}, "
                    f"this export asks for {self.latent_dtype!r}; use the same value or a new "
                    "out_dir"
                )
            self._set_dims(part["num_latent_tokens"], part["hidden_size"], part["key_dim"],
                           part["id_type"], where=path)
            self._parts.append(part)
            self.resumed_ids.extend(_read_records(os.path.join(path, "records.jsonl"))[0])
        self.complete = os.path.exists(record_path)

    def _set_dims(self, t: int, h: int, d: int, id_type: str, where: str) -> None:
        dims = {"num_latent_tokens": t, "hidden_size": h, "key_dim": d, "id_type": id_type}
        if self._dims is None:
            self._dims = dims
        elif self._dims != dims:
            raise BankError(f"{where}: dims/id type {dims} differ from earlier items {self._dims}")

    # -- writing

    def add(
        self,
        ids: Sequence[str] | Sequence[int] | np.ndarray,
        latents: np.ndarray,
        keys: np.ndarray,
        titles: Sequence[str],
        texts: Sequence[str],
    ) -> None:
        """Appends a batch of items.

        Args:
          ids: n unique ids, all str or all int (int64 range).
          latents: [n, T, H] float (a [n, H] array is taken as T = 1).
          keys: [n, D] float unit vectors.
          titles, texts: n strings each.
        """
        if self._closed:
            raise BankError("ShardWriter.add after close")
        latents = np.asarray(latents)
        if latents.ndim == 2:
            latents = latents[:, None, :]
        keys = np.asarray(keys, dtype=np.float32)
        if latents.ndim != 3:
            raise BankError(f"latents must be [n, T, H], got shape {latents.shape}")
        n = latents.shape[0]
        if keys.ndim != 2 or keys.shape[0] != n:
            raise BankError(f"keys must be [n={n}, D], got shape {keys.shape}")
        ids = _normalise_ids(ids, n)
        titles, texts = list(titles), list(texts)
        if len(titles) != n or len(texts) != n:
            raise BankError(f"got {len(titles)} titles and {len(texts)} texts for {n} items")
        if n == 0:
            return
        for name, arr in (("latents", latents), ("keys", keys)):
            bad = ~np.isfinite(arr.reshape(n, -1)).all(axis=1)
            if bad.any():
                first_bad = [ids[i] for i in np.flatnonzero(bad)[:5]]
                raise BankError(f"non-finite {name} for ids {first_bad}")
        norms = np.linalg.norm(keys, axis=1)
        bad = np.abs(norms - 1.0) > _KEY_NORM_TOL
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise BankError(f"keys must be unit vectors; id {ids[i]!r} has norm {norms[i]:.4f}")
        self._set_dims(latents.shape[1], latents.shape[2], keys.shape[1], _id_type(ids),
                       where="ShardWriter.add")
        stored, scales = quantize_latents(latents, self.latent_dtype)
        start = 0
        while start < n:
            take = min(n - start, self.items_per_part - self._buf_n)
            sl = slice(start, start + take)
            self._buf["ids"].extend(ids[sl])
            self._buf["lat"].append(stored[sl])
            if scales is not None:
                self._buf["scales"].append(scales[sl])
            self._buf["keys"].append(keys[sl])
            self._buf["rec"].extend(zip(ids[sl], titles[sl], texts[sl]))
            self._buf_n += take
            start += take
            if self._buf_n == self.items_per_part:
                self._flush()

    def _flush(self) -> None:
        if self._buf_n == 0:
            return
        name = part_name(len(self._parts))
        final = os.path.join(self.shard_dir, name)
        if os.path.exists(final):
            raise BankError(f"{final} already exists; is another process writing this shard?")
        tmp = f"{final}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.makedirs(tmp)
        _write_npy(os.path.join(tmp, "latents.npy"), np.concatenate(self._buf["lat"]))
        if self._buf["scales"]:
            _write_npy(os.path.join(tmp, "scales.npy"), np.concatenate(self._buf["scales"]))
        _write_npy(os.path.join(tmp, "keys.npy"), np.concatenate(self._buf["keys"]))
        lines = [
            json.dumps({"id": i, "text": x, "title": t}, ensure_ascii=False, sort_keys=True)
            for i, t, x in self._buf["rec"]
        ]
        with open(os.path.join(tmp, "records.jsonl"), "wb") as f:
            f.write(("\n".join(lines) + "\n").encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        files = {fn: _sha256_file(os.path.join(tmp, fn)) for fn in sorted(os.listdir(tmp))}
        part = {"name": name, "num_items": self._buf_n, "latent_dtype": self.latent_dtype,
                "files": files, **self._dims}
        _write_file_atomic(os.path.join(tmp, PART_RECORD), _dumps(part).encode("utf-8"))
        _fsync_dir(tmp)
        os.rename(tmp, final)
        _fsync_dir(self.shard_dir)
        self._parts.append(part)
        self._buf = {k: [] for k in self._buf}
        self._buf_n = 0

    def close(self) -> str:
        """Writes the last part and the shard record; returns the shard directory."""
        if self._closed:
            return self.shard_dir
        self._flush()
        # A shard may legitimately be empty (more processes than items); its dims are unknown.
        dims = self._dims or {"num_latent_tokens": None, "hidden_size": None, "key_dim": None,
                              "id_type": None}
        record = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "name": os.path.basename(self.shard_dir),
            "shard_index": self.shard_index,
            "num_shards": self.num_shards,
            "latent_dtype": self.latent_dtype,
            "items_per_part": self.items_per_part,
            "num_items": sum(p["num_items"] for p in self._parts),
            **dims,
            "parts": [{"name": p["name"], "num_items": p["num_items"], "files": p["files"]}
                      for p in self._parts],
        }
        _write_file_atomic(os.path.join(self.shard_dir, SHARD_RECORD), _dumps(record).encode())
        _fsync_dir(self.shard_dir)
        self._closed = True
        self.complete = True
        return self.shard_dir


def _verify_files(directory: str, files: dict[str, str]) -> None:
    for fn, digest in sorted(files.items()):
        path = os.path.join(directory, fn)
        if not os.path.isfile(path):
            raise BankError(f"missing bank file {path}")
        got = _sha256_file(path)
        if got != digest:
            raise BankError(
                f"checksum mismatch in bank file {path}: sha256 {got[:16]}..., "
                f"manifest says {digest[:16]}...; the file is corrupted, re-export its shard"
            )


def _read_records(path: str) -> tuple[list, list[str], list[str]]:
    ids, titles, texts = [], [], []
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                try:
                    r = json.loads(line)
                    ids.append(r["id"])
                    titles.append(r["title"])
                    texts.append(r["text"])
                except (json.JSONDecodeError, KeyError) as e:
                    raise BankError(f"bad record at {path}:{lineno}: {e}") from e
    except FileNotFoundError as e:
        raise BankError(f"missing bank file {path}") from e
    return ids, titles, texts


# --------------------------------------------------------------------------- finalize


def finalize_bank(
    out_dir: str | os.PathLike,
    num_shards: int | None = None,
    meta: dict | None = None,
    timeout_s: float = 0.0,
    poll_s: float = 2.0,
    verify: bool = True,
) -> str:
    """Writes manifest.json once every shard is complete and publishes the bank.

    Run by ONE process (process 0 of a multi-host job, after a barrier or with ``timeout_s`` to
    wait for the other hosts' shards). Checks that the shards agree on dims and dtypes, that ids
    are unique across the bank, and (``verify``) every file's checksum; then renames
    ``<out_dir>.partial`` to ``<out_dir>``.

    Args:
      out_dir: the bank directory to create.
      num_shards: expected shard count; None infers it from the shard directory names.
      meta: free-form JSON-serialisable metadata (config, checkpoint step, ...), stored as is.
      timeout_s: how long to wait for missing shards before raising `BankError`.
      poll_s: interval between checks while waiting.
      verify: re-hash every file (catches damage done after a shard was written).

    Returns:
      ``out_dir`` as a string.
    """
    out_dir = os.fspath(out_dir).rstrip("/")
    root = staging_dir(out_dir)
    if os.path.exists(os.path.join(out_dir, MANIFEST)):
        raise BankError(f"{out_dir} is already a finished bank")
    if not os.path.isdir(root):
        raise BankError(f"nothing to finalize: {root} does not exist (no shard was exported)")
    try:
        meta_json = json.loads(_dumps(meta or {}))
    except (TypeError, ValueError) as e:
        raise BankError(f"meta is not JSON-serialisable: {e}") from e
    if num_shards is None:
        found = {int(m.group(2)) for m in map(_SHARD_RE.match, os.listdir(root)) if m}
        if len(found) != 1:
            raise BankError(f"{root}: cannot infer num_shards from shard names (found {found})")
        num_shards = found.pop()
    names = [shard_name(i, num_shards) for i in range(num_shards)]
    deadline = time.monotonic() + timeout_s
    while True:
        missing = [n for n in names if not os.path.exists(os.path.join(root, n, SHARD_RECORD))]
        if not missing or time.monotonic() >= deadline:
            break
        time.sleep(poll_s)
    if missing:
        raise BankError(
            f"cannot finalize {out_dir}: shards not complete: {', '.join(missing)} "
            f"(each needs {SHARD_RECORD}; rerun their export)"
        )
    shards, all_ids = [], []
    first = first_name = None
    for name in names:
        rec = _read_json(os.path.join(root, name, SHARD_RECORD), "shard record")
        dims = {k: rec[k] for k in ("latent_dtype", "num_latent_tokens", "hidden_size", "key_dim",
                                    "id_type")}
        if rec["num_items"] == 0:
            if dims["latent_dtype"] != (first or dims)["latent_dtype"]:
                raise BankError(f"{name}: latent_dtype {dims['latent_dtype']!r} differs")
        elif first is None:
            first, first_name = dims, name
        elif dims != first:
            raise BankError(f"{name}: {dims} differ from {first_name}: {first}")
        for part in rec["parts"]:
            pdir = os.path.join(root, name, part["name"])
            if verify:
                _verify_files(pdir, part["files"])
            all_ids.extend(_read_records(os.path.join(pdir, "records.jsonl"))[0])
        shards.append({"name": name, "num_items": rec["num_items"], "parts": rec["parts"]})
    if len(set(all_ids)) != len(all_ids):
        seen, dup = set(), []
        for i in all_ids:
            if i in seen:
                dup.append(i)
            seen.add(i)
        raise BankError(f"duplicate ids in {out_dir}: {dup[:5]}{' ...' if len(dup) > 5 else ''}")
    if first is None:
        raise BankError(f"cannot finalize {out_dir}: every shard is empty")
    num_items = len(all_ids)
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "num_items": num_items,
        "num_latent_tokens": first["num_latent_tokens"],
        "hidden_size": first["hidden_size"],
        "key_dim": first["key_dim"],
        "latent_dtype": first["latent_dtype"],
        "key_dtype": "float32",
        "id_type": first["id_type"],
        "ids_sha256": ids_sha256(all_ids),
        "bytes_per_item": latent_bytes_per_item(
            first["latent_dtype"], first["num_latent_tokens"], first["hidden_size"]
        ) + 4 * first["key_dim"],
        "num_shards": num_shards,
        "shards": shards,
        "meta": meta_json,
    }
    _write_file_atomic(os.path.join(root, MANIFEST), _dumps(manifest).encode("utf-8"))
    _fsync_dir(root)
    os.rename(root, out_dir)
    _fsync_dir(os.path.dirname(os.path.abspath(out_dir)))
    return out_dir


# --------------------------------------------------------------------------- export


@dataclasses.dataclass
class ExportResult:
    """What `export_bank` did: the shard it wrote and, if it finalized, the bank directory."""

    shard_dir: str
    num_items: int  # items of this shard, resumed ones included
    num_resumed: int  # items found complete on disk and skipped
    bank_dir: str | None  # set when this call finalized the bank


def export_bank(
    out_dir: str | os.PathLike,
    items_iter: Iterable[tuple[Any, str, str]],
    encode_fn: Callable[[list[tuple[str, str]]], tuple[np.ndarray, np.ndarray]],
    batch_size: int,
    shard_index: int = 0,
    num_shards: int = 1,
    latent_dtype: str = "bfloat16",
    progress: bool = True,
    meta: dict | None = None,
    *,
    items_per_part: int = DEFAULT_ITEMS_PER_PART,
    items_are_sharded: bool = False,
    finalize: bool | None = None,
    finalize_timeout_s: float = 0.0,
) -> ExportResult:
    """Encodes items and writes this process's shard of a latent bank; resumes if interrupted.

    Item ``i`` (0-based position in ``items_iter``) belongs to shard ``i % num_shards``, so every
    process can iterate the same full stream; pass ``items_are_sharded=True`` if ``items_iter``
    already yields only this shard's items. Rows of the finished bank are ordered by shard, then
    by position within the shard.

    On restart with the same arguments, complete parts are kept, their items are skipped (their
    ids are checked against the stream, which must be unchanged), and encoding resumes at the
    first missing part: the bank is byte-identical to an uninterrupted export.

    Args:
      out_dir: the bank directory (created by finalize; work happens in ``<out_dir>.partial``).
      items_iter: yields (id, title, text); ids str or int, unique across the bank.
      encode_fn: list of n (title, text) -> (latents [n, T, H], keys [n, D] unit) numpy arrays.
      batch_size: items per encode_fn call (batches never cross part boundaries).
      shard_index, num_shards: this process's shard.
      latent_dtype: "bfloat16", "int8" (per-row absmax scales) or "float32".
      progress: show a tqdm bar.
      meta: JSON-serialisable metadata for the manifest (used when finalizing).
      items_per_part: items per part file set, the unit of resume.
      items_are_sharded: items_iter already yields only this shard's items.
      finalize: write the manifest and publish the bank after this shard; default: only when
        num_shards == 1. In a multi-host job let process 0 finalize (after a barrier, or with
        ``finalize_timeout_s`` to wait for the other shards).
      finalize_timeout_s: how long finalize waits for other shards.

    Returns:
      ExportResult.
    """
    if batch_size < 1:
        raise BankError(f"batch_size must be >= 1, got {batch_size}")
    writer = ShardWriter(out_dir, shard_index, num_shards, latent_dtype, items_per_part)
    resumed = writer.resumed_ids
    mine = (
        iter(items_iter)
        if items_are_sharded
        else (it for i, it in enumerate(items_iter) if i % num_shards == shard_index)
    )
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc=f"export {shard_name(shard_index, num_shards)}", unit="item",
                   initial=len(resumed))
    n_seen = 0
    batch: list[tuple[Any, str, str]] = []

    def run_batch() -> None:
        ids = [b[0] for b in batch]
        latents, keys = encode_fn([(b[1], b[2]) for b in batch])
        latents, keys = np.asarray(latents), np.asarray(keys)
        if latents.shape[0] != len(batch) or keys.shape[0] != len(batch):
            raise BankError(
                f"encode_fn returned {latents.shape[0]} latents / {keys.shape[0]} keys "
                f"for {len(batch)} items"
            )
        writer.add(ids, latents, keys, [b[1] for b in batch], [b[2] for b in batch])
        if bar is not None:
            bar.update(len(batch))
        batch.clear()

    try:
        for item in mine:
            if len(item) != 3:
                raise BankError(f"items_iter must yield (id, title, text), got {item!r:.200}")
            if n_seen < len(resumed):
                got = _normalise_ids([item[0]], 1)[0]
                if got != resumed[n_seen]:
                    raise BankError(
                        f"{writer.shard_dir}: item {n_seen} of this shard has id {got!r} but the "
                        f"interrupted export wrote {resumed[n_seen]!r}; the input changed, "
                        f"delete {staging_dir(out_dir)} to start over"
                    )
                n_seen += 1
                continue
            if writer.complete:
                raise BankError(
                    f"{writer.shard_dir} is complete with {len(resumed)} items but the input has "
                    f"more; delete {staging_dir(out_dir)} to start over"
                )
            batch.append(item)
            n_seen += 1
            # Batches restart at part boundaries so a resumed run sees the same batches.
            if len(batch) == batch_size or n_seen % items_per_part == 0:
                run_batch()
        if n_seen < len(resumed):
            raise BankError(
                f"{writer.shard_dir}: the input has {n_seen} items for this shard but the "
                f"interrupted export already wrote {len(resumed)}; the input changed"
            )
        if batch:
            run_batch()
        shard_dir = writer.close()
    finally:
        if bar is not None:
            bar.close()
    do_finalize = num_shards == 1 if finalize is None else finalize
    bank_dir = (
        finalize_bank(out_dir, num_shards, meta, timeout_s=finalize_timeout_s)
        if do_finalize else None
    )
    return ExportResult(shard_dir, n_seen, len(resumed), bank_dir)


# --------------------------------------------------------------------------- reading


class LatentBank:
    """A finished bank, read-only. Keys live in memory; latents are memory-mapped.

    Attributes:
      path: the bank directory.
      manifest: the parsed manifest.json.
      ids: list[str], or int64 array [N] for integer ids.
      keys: [N, D] float32 unit retrieval keys.
      titles, texts: list[str] of length N.
      num_items, num_latent_tokens (T), hidden_size (H), key_dim (D), latent_dtype.
      bytes_per_item: stored latent bytes + key bytes per item.
      ids_sha256: digest of ids (see `ids_sha256`), recomputed from the loaded ids.
    """

    def __init__(self, path: str, manifest: dict, ids, keys, titles, texts, parts):
        self.path = path
        self.manifest = manifest
        self.ids = ids
        self.keys = keys
        self.titles = titles
        self.texts = texts
        self._parts = parts  # list of (latents memmap, scales memmap or None)
        counts = [p[0].shape[0] for p in parts]
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.num_items = int(manifest["num_items"])
        self.num_latent_tokens = int(manifest["num_latent_tokens"])
        self.hidden_size = int(manifest["hidden_size"])
        self.key_dim = int(manifest["key_dim"])
        self.latent_dtype = manifest["latent_dtype"]
        self.bytes_per_item = int(manifest["bytes_per_item"])
        self.meta = manifest.get("meta", {})
        self.ids_sha256 = ids_sha256(ids)
        self._row_of: dict | None = None

    def __len__(self) -> int:
        return self.num_items

    def __repr__(self) -> str:
        return (f"LatentBank({self.path!r}, items={self.num_items}, T={self.num_latent_tokens}, "
                f"H={self.hidden_size}, D={self.key_dim}, dtype={self.latent_dtype})")

    @classmethod
    def load(cls, path: str | os.PathLike, verify: bool = True, mmap: bool = True) -> LatentBank:
        """Opens a bank, checking its manifest and (``verify``) every file's sha256.

        Raises:
          BankError: missing/unknown manifest, a missing or corrupted file (named in the message),
            or counts/shapes that disagree with the manifest.
        """
        path = os.fspath(path).rstrip("/")
        if not os.path.isdir(path):
            hint = " (export not finalized?)" if os.path.isdir(staging_dir(path)) else ""
            raise BankError(f"no bank at {path}{hint}")
        manifest = _read_json(os.path.join(path, MANIFEST), "bank manifest")
        if manifest.get("format") != FORMAT_NAME:
            raise BankError(
                f"{path}/{MANIFEST}: not a latent bank (format={manifest.get('format')!r})"
            )
        if manifest.get("format_version") != FORMAT_VERSION:
            raise BankError(
                f"{path}/{MANIFEST}: format_version {manifest.get('format_version')} is not "
                f"supported (this code reads {FORMAT_VERSION})"
            )
        dtype = manifest["latent_dtype"]
        t, h, d = manifest["num_latent_tokens"], manifest["hidden_size"], manifest["key_dim"]
        storage = {"float32": np.float32, "bfloat16": np.uint16, "int8": np.int8}[dtype]
        ids, titles, texts, keys, parts = [], [], [], [], []
        for shard in manifest["shards"]:
            for part in shard["parts"]:
                pdir = os.path.join(path, shard["name"], part["name"])
                if verify:
                    _verify_files(pdir, part["files"])
                n = part["num_items"]
                pid, ptitles, ptexts = _read_records(os.path.join(pdir, "records.jsonl"))
                lat = _load_npy(os.path.join(pdir, "latents.npy"), mmap, storage, (n, t, h))
                sc = (_load_npy(os.path.join(pdir, "scales.npy"), mmap, np.float32, (n, t))
                      if dtype == "int8" else None)
                k = _load_npy(os.path.join(pdir, "keys.npy"), False, np.float32, (n, d))
                if len(pid) != n:
                    raise BankError(f"{pdir}/records.jsonl has {len(pid)} records, expected {n}")
                ids.extend(pid)
                titles.extend(ptitles)
                texts.extend(ptexts)
                keys.append(k)
                parts.append((lat, sc))
        if len(ids) != manifest["num_items"]:
            raise BankError(
                f"{path}: {len(ids)} items on disk, manifest says {manifest['num_items']}"
            )
        if manifest["id_type"] == "int64":
            ids = np.asarray(ids, dtype=np.int64)
        keys = np.concatenate(keys) if keys else np.zeros((0, d), np.float32)
        bank = cls(path, manifest, ids, keys, titles, texts, parts)
        if bank.ids_sha256 != manifest["ids_sha256"]:
            raise BankError(f"{path}: ids do not match the manifest's ids_sha256")
        return bank

    def latents(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Dequantised latents of the given rows.

        Args:
          rows: int array of any shape S (e.g. [n] or search results [Q, k]), values in [0, N).

        Returns:
          [*S, T, H] float32.
        """
        rows = np.asarray(rows, dtype=np.int64)
        flat = rows.reshape(-1)
        if flat.size and (flat.min() < 0 or flat.max() >= self.num_items):
            raise IndexError(f"rows out of range [0, {self.num_items})")
        out = np.empty((flat.size, self.num_latent_tokens, self.hidden_size), np.float32)
        which = np.searchsorted(self._offsets, flat, side="right") - 1
        for p in np.unique(which):
            sel = np.flatnonzero(which == p)
            local = flat[sel] - self._offsets[p]
            lat, sc = self._parts[p]
            out[sel] = dequantize_latents(lat[local], None if sc is None else sc[local],
                                          self.latent_dtype)
        return out.reshape(rows.shape + out.shape[1:])

    def rows_of(self, ids: Sequence) -> np.ndarray:
        """Row numbers [n] int64 of the given ids (KeyError for an unknown id)."""
        if self._row_of is None:
            src = self.ids.tolist() if isinstance(self.ids, np.ndarray) else self.ids
            self._row_of = {i: r for r, i in enumerate(src)}
        return np.asarray([self._row_of[i] for i in ids], dtype=np.int64)


def _load_npy(path: str, mmap: bool, dtype, shape: tuple) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError as e:
        raise BankError(f"missing bank file {path}") from e
    except (ValueError, OSError) as e:
        raise BankError(f"unreadable bank file {path}: {e}") from e
    if arr.dtype != dtype or arr.shape != tuple(shape):
        raise BankError(
            f"{path}: array is {arr.dtype}{list(arr.shape)}, manifest implies "
            f"{np.dtype(dtype)}{list(shape)}"
        )
    return arr
