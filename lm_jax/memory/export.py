"""Stages `export` and `index`: the trained compressor writes the latent bank, ScaNN serves it.

The bank holds every evidence sentence of `config.export.split`, deduplicated by content (the id
is a hash of the rendered "Title: sentence", `lm_jax.eval.evaluate.evidence_id`). Every process
encodes and writes its own shards; process 0 publishes the manifest. The index is built over the
bank's retrieval keys and saved beside it (`BANK/index`).
"""

from __future__ import annotations

import os

import jax
import numpy as np
from absl import logging

from lm_jax.eval.evaluate import evidence_id
from lm_jax.memory import bank as bank_lib
from lm_jax.memory import index as index_lib


def bank_dir(workdir: str) -> str:
    return os.path.join(workdir, "bank")


def index_dir(workdir: str) -> str:
    return os.path.join(bank_dir(workdir), "index")


def corpus_items(examples) -> list[tuple[str, str, str]]:
    """(id, title, rendered text) of every distinct evidence item, in first-seen order."""
    seen, items = set(), []
    for ex in examples:
        for e in ex.evidence:
            text = e.render()
            i = evidence_id(text)
            if i not in seen:
                seen.add(i)
                items.append((i, e.title, text))
    return items


def export_stage(config, workdir: str, runner, examples) -> str:
    """Writes WORKDIR/bank (resumable; skipped when its manifest exists). Returns its path."""
    out = bank_dir(workdir)
    if os.path.exists(os.path.join(out, "manifest.json")):
        logging.info("bank already exported at %s", out)
        return out
    items = corpus_items(examples)

    def encode_fn(pairs):
        z, keys = runner.encode_items([text for _, text in pairs])
        return z, keys

    n_proc = jax.process_count()
    num_shards = max(n_proc, -(-len(items) // config.export.items_per_shard))
    num_shards = -(-num_shards // n_proc) * n_proc  # a whole number of shards per process
    meta = {"num_latent_tokens": runner.model.config.num_latent_tokens,
            "split": config.export.split, "dataset": config.data.dataset}
    for shard in range(jax.process_index(), num_shards, n_proc):
        bank_lib.export_bank(out, items, encode_fn, config.export.batch_size,
                             shard_index=shard, num_shards=num_shards,
                             latent_dtype=config.export.latent_dtype, meta=meta,
                             finalize=False, progress=jax.process_index() == 0)
    if n_proc > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("bank shards written")
    if jax.process_index() == 0:
        bank_lib.finalize_bank(out, num_shards=num_shards, meta=meta)
    return out


def index_stage(config, workdir: str) -> str:
    """Builds and saves the index over the bank's keys (exact for small banks, else ScaNN)."""
    out = index_dir(workdir)
    if os.path.exists(out):
        return out
    bank = bank_lib.LatentBank.load(bank_dir(workdir))
    keys = np.asarray(bank.keys, np.float32)
    kind = "exact" if len(keys) < config.index.exact_below else "scann"
    index = index_lib.build_index(keys, kind=kind, num_neighbors=config.index.num_neighbors)
    if jax.process_index() == 0:
        index_lib.save_index(index, out, bank)
    return out


def load_bank_and_index(workdir: str):
    bank = bank_lib.LatentBank.load(bank_dir(workdir))
    return bank, index_lib.load_index(index_dir(workdir), bank)
