"""The stages behind `--mode`, callable from Python and notebooks.

  train_and_evaluate(config, workdir)   data -> (demo) generator -> Latent Memory training
  export(config, workdir)               trained compressor -> WORKDIR/bank
  index(config, workdir)                bank keys -> WORKDIR/bank/index (ScaNN or exact)
  evaluate(config, workdir)             all methods -> WORKDIR/eval/report.json
  run(config, workdir, "all")           every stage that is not done yet
  ask_question(config, workdir, q)      one question answered from the bank
Each stage skips itself when its output exists, so rerunning a command resumes. In a
multi-process run every process calls the same stages, and a stage returns on every process
only when its output (written by process 0 where it is one file set) is complete.
"""

from __future__ import annotations

import time

from absl import logging

from lm_jax.train.loop import prepare, restore_trainable, sync, train_and_evaluate

MODES = ("train", "export", "index", "eval", "all")


class _Session:
    """Builds data, model and trained parameters once for the post-training stages."""

    def __init__(self, config, workdir):
        from lm_jax.train import build as build_lib
        from lm_jax.train.loop import make_runner

        self.config, self.workdir = config, workdir
        self.data, _ = prepare(config, workdir)
        self.comps = build_lib.build(config, workdir)
        trainable = restore_trainable(config, workdir, self.comps)
        self.runner = make_runner(self.comps, config, trainable)

    def eval_examples(self):
        n = self.config.eval.num_questions
        return self.data.eval[:n] if n else self.data.eval

    def export_examples(self):
        return self.data.eval if self.config.export.split == self.config.data.eval_split \
            else self.data.train


def export(config, workdir: str, session: _Session | None = None) -> str:
    from lm_jax.memory.export import export_stage

    s = session or _Session(config, workdir)
    out = export_stage(config, workdir, s.runner, s.export_examples())
    sync("bank exported")  # process 0 finalizes the bank; the next stage reads it everywhere
    return out


def index(config, workdir: str) -> str:
    from lm_jax.memory.export import index_stage

    out = index_stage(config, workdir)
    sync("index saved")  # process 0 saves it; evaluation loads it on every process
    return out


def evaluate(config, workdir: str, session: _Session | None = None) -> dict:
    import os

    from lm_jax.eval.run import eval_stage
    from lm_jax.memory.export import bank_dir, load_bank_and_index

    s = session or _Session(config, workdir)
    bank = idx = None
    if os.path.exists(os.path.join(bank_dir(workdir), "manifest.json")):
        bank, idx = load_bank_and_index(workdir)
    return eval_stage(config, workdir, s.runner, s.eval_examples(), bank, idx)


def run(config, workdir: str, mode: str = "all") -> dict | None:
    """Runs one stage, or with mode='all' every stage that is not done yet."""
    if mode not in MODES:
        raise ValueError(f"--mode={mode}: choose one of {MODES} or ask")
    t0 = time.time()
    result = None
    if mode in ("train", "all"):
        result = train_and_evaluate(config, workdir)
        if isinstance(result, dict) and "preempted_at" in result:
            return result
    session = None
    if mode in ("export", "all"):
        session = session or _Session(config, workdir)
        export(config, workdir, session)
    if mode in ("index", "all"):
        index(config, workdir)
    if mode in ("eval", "all"):
        session = session or _Session(config, workdir)
        result = evaluate(config, workdir, session)
    logging.info("mode=%s finished in %.1f s", mode, time.time() - t0)
    print(f"mode={mode} finished in {time.time() - t0:.1f} s", flush=True)
    return result


def ask_question(config, workdir: str, question: str) -> dict:
    from lm_jax.ask import ask
    from lm_jax.memory.export import load_bank_and_index

    s = _Session(config, workdir)
    bank, idx = load_bank_and_index(workdir)
    return ask(s.runner, bank, idx, question, config.eval.k)
