"""Grain input pipeline: records -> encoded examples -> static-shape batches, per process.

    source (TFDS data source or list[QAExample])
      -> (split index, record)                      map_with_index
      -> global shuffle, a new order every epoch   shuffle (seeded)
      -> epochs (finite, or None = forever)         repeat
      -> QAExample -> arrays, negatives by rng      random_map(EvidenceEncoder)
      -> truncate to whole global batches           (finite epochs only)
      -> blocks of B consecutive positions          batch (drop remainder)
      -> this process's blocks                      [shard_index::shard_count]
      -> threads (one block each), prefetch         to_iter_dataset

Determinism: the order is a function of (seed, position in the global stream) only, and the
encoder's rng is seeded from (seed, position in the global stream), not from thread timing
or the shard, so the same seed gives the same batches, and position p of the global stream
is the same example on every process count.

Sharding: with n = shard_count processes of batch B each, the j-th batch of process i holds
positions [(j n + i) B, (j n + i + 1) B). Concatenated in process order (what
`lm_jax.sharding.make_global_batch` does), the j-th batches of all processes are positions
[j n B, (j + 1) n B): exactly the j-th batch of a single process with batch n B, in the same
order. So the global batch, its split into accumulation micro-batches and hence the losses do
not depend on the number of processes. The processes together read every example exactly
once per epoch, and each reads only its own records from the source.

Checkpointing: the returned iterator has `get_state()` (a small dict) and `set_state(state)`;
a restored iterator yields exactly the batches the uninterrupted one would have. The state
counts batches, the same number on every process, so process 0's state also resumes every
other process, and a run resumed on a different number of processes continues at the same
global batch.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import grain

from lm_jax.data.examples import EvidenceEncoder
from lm_jax.data.records import QAExample, from_tfds_record


def _as_example(record: Any) -> QAExample:
    return record if isinstance(record, QAExample) else from_tfds_record(record)


def process_shard() -> tuple[int, int]:
    """(shard_index, shard_count) for this host: (jax.process_index(), jax.process_count())."""
    import jax

    return jax.process_index(), jax.process_count()


def default_read_options(batch_size: int) -> grain.ReadOptions:
    """Threads and prefetch for `make_train_dataset`, whose elements are whole batches.

    Tokenisation holds the GIL for part of the work, so a few threads suffice; the buffer
    keeps a few batches ready. `batch_size` is accepted for compatibility and not used.
    """
    del batch_size
    threads = min(4, os.cpu_count() or 1)
    return grain.ReadOptions(num_threads=threads, prefetch_buffer_size=max(4, 2 * threads))


def make_train_dataset(
    source: Sequence[Any],
    encoder: EvidenceEncoder,
    batch_size: int,
    seed: int,
    shard_index: int = 0,
    shard_count: int = 1,
    num_epochs: int | None = None,
    shuffle: bool = True,
    read_options: grain.ReadOptions | None = None,
) -> grain.IterDataset:
    """The pipeline of the module doc as a Grain IterDataset (iterate it, or see below).

    Args:
      source: random-access records: a TFDS data source (`tfds.builder(...)
        .as_data_source(split)`, records decoded with `from_tfds_record`) or a list of
        QAExample.
      encoder: the EvidenceEncoder (tokenizer and maximum lengths).
      batch_size: per-process batch size B; every batch has exactly B examples.
      seed: the one seed of shuffling and negative sampling (0 <= seed < 2**32).
      shard_index, shard_count: this process and the number of processes (see
        `process_shard()`); all processes must use the same seed and batch size.
      num_epochs: None repeats forever; otherwise the stream of num_epochs epochs is cut to
        whole global batches (B * shard_count), so every process yields the same number of
        batches (multi-host steps stay in lockstep).
      shuffle: shuffle globally (a different permutation per epoch).
      read_options: Grain threads and prefetch, counted in batches (default:
        `default_read_options`).
    Returns:
      an IterDataset of dicts of arrays with a leading batch axis [B, ...] (shapes in
      `encoder.output_spec()`).
    """
    n = len(source)
    if n == 0:
        raise ValueError("make_train_dataset: the source is empty")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"need 0 <= shard_index < shard_count, got {shard_index}/{shard_count}")
    if num_epochs is not None and num_epochs <= 0:
        raise ValueError(f"num_epochs must be positive or None, got {num_epochs}")
    ds = grain.MapDataset.source(source).seed(seed)
    # Positions past the end of the source (later epochs) wrap around: index % n.
    ds = ds.map_with_index(lambda i, record: (i % n, record))
    if shuffle:
        ds = ds.shuffle()
    ds = ds.repeat(num_epochs)
    ds = ds.map(lambda item: (item[0], _as_example(item[1])))
    # Before sharding, so an example's negatives depend on its global position only.
    ds = ds.random_map(encoder)
    if num_epochs is not None:
        global_batch = batch_size * shard_count
        usable = len(ds) // global_batch * global_batch
        if usable == 0:
            raise ValueError(
                f"{n} examples x {num_epochs} epochs is less than one global batch "
                f"({batch_size} x {shard_count} processes)"
            )
        ds = ds[:usable]
    # Blocks of B consecutive positions, dealt round-robin to the processes (module doc:
    # the global batch is the same for every process count).
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds[shard_index::shard_count]
    return ds.to_iter_dataset(read_options or default_read_options(batch_size))


def make_train_iterator(
    source: Sequence[Any],
    encoder: EvidenceEncoder,
    batch_size: int,
    seed: int,
    shard_index: int = 0,
    shard_count: int = 1,
    num_epochs: int | None = None,
    shuffle: bool = True,
    read_options: grain.ReadOptions | None = None,
) -> grain.DatasetIterator:
    """An iterator over `make_train_dataset(...)` batches, with get_state()/set_state().

    Each batch: {"index": [B] int64, "question_ids": [B, Lq] int32, ..., "pos_ids":
    [B, P, Le] int32, ...} (per-example shapes in examples.py). Same arguments -> same
    batches; `it.set_state(saved)` continues exactly where `saved = it.get_state()` was.
    """
    return iter(
        make_train_dataset(
            source,
            encoder,
            batch_size,
            seed,
            shard_index=shard_index,
            shard_count=shard_count,
            num_epochs=num_epochs,
            shuffle=shuffle,
            read_options=read_options,
        )
    )


def measure_throughput(iterator, num_batches: int, warmup: int = 2) -> dict[str, float]:
    """Examples/s of `iterator` over `num_batches` batches after `warmup` batches."""
    for _ in range(warmup):
        next(iterator)
    start, examples = time.perf_counter(), 0
    for _ in range(num_batches):
        batch = next(iterator)
        examples += len(batch["index"])
    seconds = time.perf_counter() - start
    return {
        "examples": examples,
        "seconds": round(seconds, 3),
        "examples_per_s": round(examples / seconds, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Measure the input pipeline's examples/s.")
    parser.add_argument("--tokenizer", required=True, help="HF tokenizer directory")
    parser.add_argument("--data_dir", help="TFDS data_dir with a prepared dataset")
    parser.add_argument("--dataset", default="hotpot_qa/distractor")
    parser.add_argument("--split", default="validation")
    parser.add_argument(
        "--synthetic", type=int, default=0, help="use N in-memory synthetic questions instead"
    )
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--num_batches", type=int, default=50)
    parser.add_argument("--num_threads", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    if args.synthetic:
        from lm_jax.data import synthetic
        from lm_jax.data.records import from_hotpot_json

        source: Sequence[Any] = [
            from_hotpot_json(r) for r in synthetic.generate(args.synthetic, args.seed)
        ]
        name = f"synthetic:{args.synthetic}"
    else:
        import tensorflow_datasets as tfds

        import lm_jax.data.builders  # noqa: F401

        builder = tfds.builder(args.dataset, data_dir=args.data_dir)
        source = builder.as_data_source(split=args.split)
        name = f"{args.dataset}:{args.split}"
    options = grain.ReadOptions(
        num_threads=args.num_threads, prefetch_buffer_size=max(4, 2 * args.num_threads)
    )
    it = make_train_iterator(
        source, EvidenceEncoder(tokenizer), args.batch_size, args.seed, read_options=options
    )
    result = measure_throughput(it, args.num_batches)
    result.update(
        source=name,
        batch_size=args.batch_size,
        num_threads=args.num_threads,
        cpu_count=os.cpu_count(),
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()


__all__ = [
    "make_train_dataset",
    "make_train_iterator",
    "measure_throughput",
    "process_shard",
    "default_read_options",
]
