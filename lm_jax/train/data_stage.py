"""Stage `data`: the prepared dataset (and, for the demo, the synthetic world and its tokenizer).

For `config.data.synthetic` the train and test worlds are generated into WORKDIR/data/raw in the
official HotpotQA format, so the same TFDS builder reads them as it reads the real files; the
demo's tokenizer is trained on the train world only (with every name word of the "words" style
primed as one token; the "syllables" style cuts names into shared syllables), so test-world texts
use only tokens the models saw in training.
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax

from lm_jax.data.records import QAExample, load_examples


@dataclasses.dataclass
class DataBundle:
    train: list[QAExample]
    eval: list[QAExample]
    tokenizer_dir: str | None
    report: dict


def data_dir(config, workdir: str) -> str:
    return config.data.data_dir or os.path.join(workdir, "data", "tfds")


def load(config, workdir: str) -> DataBundle:
    """Prepares (once) and loads the train and eval splits."""
    from lm_jax.data.prepare import prepare_dataset

    d = config.data
    tfds_dir = data_dir(config, workdir)
    tokenizer_dir = None
    manual = d.manual_dir or None
    report = None
    # Multi-process: process 0 builds while the others wait, then they take the prepared
    # dataset's fast reuse path (building it in parallel in a shared directory races on the
    # final rename; on a directory of their own they build their own copy).
    if d.synthetic:
        from lm_jax.data.tokenizer_train import name_style_options, train_tokenizer

        manual = os.path.join(workdir, "data", "raw")
        tokenizer_dir = os.path.join(workdir, "tokenizer")
        if jax.process_index() == 0:
            write_synthetic(manual, d.num_train_questions, d.num_eval_questions,
                            d.synthetic_train_worlds, config.seed, d.synthetic_names)
            # Synthetic data is valid by construction: no record may be dropped.
            report = prepare_dataset(d.dataset, manual_dir=manual, data_dir=tfds_dir,
                                     max_drop_fraction=0.0)
            if not os.path.exists(os.path.join(tokenizer_dir, "tokenizer_config.json")):
                with open(os.path.join(manual, "hotpot_train_v1.1.json")) as f:
                    records = json.load(f)
                train_tokenizer(_tokenizer_corpus(records), tokenizer_dir,
                                **name_style_options(d.synthetic_names))
    elif jax.process_index() == 0:
        report = prepare_dataset(d.dataset, manual_dir=manual, data_dir=tfds_dir,
                                 max_drop_fraction=d.max_drop_fraction)
    _sync("data prepared by process 0")
    if report is None:
        report = prepare_dataset(d.dataset, manual_dir=manual, data_dir=tfds_dir,
                                 max_drop_fraction=d.max_drop_fraction)
    _sync("dataset prepared")
    train = load_examples(tfds_dir, d.dataset, d.train_split)
    evaluation = load_examples(tfds_dir, d.dataset, d.eval_split)
    return DataBundle(train, evaluation, tokenizer_dir, report)


def write_synthetic(manual_dir: str, num_train: int, num_eval: int, train_worlds: int,
                    seed: int, names: str = "syllables") -> None:
    """The synthetic splits under the official file names (rewritten only when they change).

    Training questions come from `train_worlds` independent worlds (all from the train half of
    the names, in style `names`): with one world, its few hundred facts recur in every epoch and
    a small reader learns to answer from memory instead of from the evidence. Evaluation uses
    one test world whose entities never occur in training.
    """
    from lm_jax.data import synthetic

    os.makedirs(manual_dir, exist_ok=True)
    per_world = -(-num_train // train_worlds)
    train = []
    for w in range(train_worlds):
        train += synthetic.generate(min(per_world, num_train - len(train)),
                                    seed * 100_003 + w, "train", names=names)
    for fname, records in (("hotpot_train_v1.1.json", train),
                           ("hotpot_dev_distractor_v1.json",
                            synthetic.generate(num_eval, seed, "test", names=names))):
        path = os.path.join(manual_dir, fname)
        if not os.path.isfile(path) or open(path).read() != synthetic.dumps(records):
            synthetic.write(path, records)


def _tokenizer_corpus(records):
    """The texts the demo models read: the data, and the generator's prompt frame around each
    question (every prompt carries the system text, so it should not cost dozens of tokens)."""
    from lm_jax.data.tokenizer_train import corpus_texts
    from lm_jax.models.prompts import SYSTEM_PROMPT

    yield from corpus_texts(records)
    for i, r in enumerate(records):
        yield (f"{SYSTEM_PROMPT}\nContext {i % 9 + 1}: Latent context {i % 9 + 1}: "
               f"Question: {r['question']}")


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
