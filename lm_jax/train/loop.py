"""`train_and_evaluate(config, workdir)`: the Latent Memory training loop.

Sections: data -> (demo) generator stage -> model -> teacher cache -> input pipeline ->
optimizer and restore -> ahead-of-time compile -> loop (log, validate, checkpoint, preemption).
A restart with the same workdir resumes from the latest checkpoint, and because the per-step rng
is `fold_in(seed, step)` and the input iterator's state is checkpointed, the resumed run is
bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import time
from collections.abc import Callable, Sequence

import jax
import numpy as np
from absl import logging

from lm_jax import sharding
from lm_jax.eval import evaluate as ev
from lm_jax.models.generate import greedy_generate
from lm_jax.models.prompts import PromptBuilder
from lm_jax.train import build as build_lib
from lm_jax.train import data_stage
from lm_jax.train.batches import LatentMemoryEncoder, TeacherCache
from lm_jax.train.checkpoint import Checkpointer, abstract_like
from lm_jax.train.metrics_log import MetricLogger
from lm_jax.train.pretrain import pretrain_compressor, pretrain_generator
from lm_jax.train.step import LossConfig, latent_memory_losses, make_optimizer, make_train_step

STAGE = "latent_memory"


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or Inf; the last good checkpoint is kept."""


class _Preemption:
    """Turns SIGTERM into a flag the loop checks between steps (save, then exit cleanly)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread (e.g. some notebook kernels): no handler
            self._previous = None
        return self

    def _handle(self, signum, frame):
        logging.warning("SIGTERM: saving a checkpoint and stopping after this step")
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _stage_done(workdir: str, name: str) -> bool:
    return os.path.exists(os.path.join(workdir, f"{name}.done"))


def _mark_done(workdir: str, name: str, info: dict) -> None:
    if jax.process_index() == 0:
        path = os.path.join(workdir, f"{name}.done")
        with open(path + ".tmp", "w") as f:
            json.dump(info, f)
        os.replace(path + ".tmp", path)


def make_runner(comps, config, trainable=None) -> ev.Runner:
    d, e = config.data, config.eval
    return ev.Runner(comps.model, comps.compressor_tokenizer, comps.generator_tokenizer,
                     comps.trainable if trainable is None else trainable, comps.frozen,
                     max_evidence_len=d.max_evidence_len, max_question_len=d.max_question_len,
                     max_new_tokens=e.max_new_tokens, batch_size=e.batch_size,
                     max_prompt_len=e.max_prompt_len, mesh=comps.mesh)


def prepare(config, workdir: str, logger: MetricLogger | None = None):
    """The stages before the model exists: data, and the demo's generator (+ compressor) stage.

    Returns (data bundle, logger).
    """
    build_lib.validate_config(config)
    if config.model.init == "hf" and not config.pretrain_generator.enabled:
        build_lib.model_dirs(config, workdir)  # a wrong model path fails before any work
    os.makedirs(workdir, exist_ok=True)
    logger = logger or MetricLogger(workdir)
    data = data_stage.load(config, workdir)
    if config.pretrain_generator.enabled:
        from lm_jax.hf.tokenizer import load_tokenizer

        tok = load_tokenizer(data.tokenizer_dir, flag_name="--config.data")
        arch = build_lib.random_arch(config, len(tok))
        pretrain_generator(config, workdir, data.train, tok, arch, logger)
        if config.pretrain_compressor.enabled:
            pretrain_compressor(config, workdir, data.train, tok, arch, logger)
        sync("generator stage")
    return data, logger


def restore_trainable(config, workdir: str, comps, best: bool = True):
    """The trained adapters and heads: the best checkpoint if any, else the latest."""
    ckpt = Checkpointer(workdir, keep=config.keep_checkpoints, async_save=False)
    try:
        use_best = best and ckpt.has_best()
        if not use_best and ckpt.latest_step() is None:
            raise FileNotFoundError(f"no checkpoint in {workdir}; run --mode=train first")
        abstract = {"trainable": abstract_like(comps.trainable)}
        if not use_best:
            tx, _ = make_optimizer(1.0, config.total_steps)
            abstract["opt_state"] = abstract_like(
                _place_opt_state(jax.jit(tx.init)(comps.trainable), comps.trainable_shardings,
                                 comps.mesh))
        state, _ = ckpt.restore(abstract, best=use_best)
        return state["trainable"]
    finally:
        ckpt.close()


def sync(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


class _SharedTeacherCache(TeacherCache):
    """Multi-process: every process generates every chunk (the jitted generate is one program
    over all devices) and process 0 writes them; the barrier before reading the chunks back
    keeps the other processes from reading before process 0 has written the last one."""

    def load(self, n: int) -> np.ndarray:
        sync("teacher cache written")
        return super().load(n)


def teacher_tokens(config, workdir: str, comps, examples) -> np.ndarray:
    """Greedy teacher answers [len(examples), D] from the cache (computed once, resumable)."""
    d = config.data
    model = comps.model
    gen_tok = comps.generator_tokenizer
    builder = PromptBuilder(gen_tok, model.config.num_latent_tokens)
    eos = gen_tok.eos_token_id
    pad = gen_tok.pad_token_id if gen_tok.pad_token_id is not None else 0

    @jax.jit
    def generate(frozen, ids, mask):
        tokens, _ = greedy_generate(model.generator, frozen["generator"], ids, mask,
                                    d.distill_tokens, eos, pad)
        return tokens

    cache = _SharedTeacherCache(os.path.join(workdir, "teacher_cache"), d.distill_tokens)
    fn = functools.partial(generate, comps.frozen)
    tokens = cache.compute(examples, fn, builder, d.max_positives, d.max_teacher_len,
                           config.eval.batch_size, pad_id=pad)
    sync("teacher cache")
    return tokens


def train_and_evaluate(config, workdir: str, *,
                       hooks: Sequence[Callable[[int, dict], None]] = ()) -> dict:
    """Trains Latent Memory (running whatever stages are not done yet) and returns final metrics.

    Args:
      config: a locked ConfigDict (see configs/hotpotqa.py).
      workdir: where checkpoints, metrics.jsonl, TensorBoard events and artifacts go.
      hooks: called as hook(step, metrics) after every step (metrics are device arrays).
    """
    from lm_jax.data.examples import EvidenceEncoder
    from lm_jax.data.pipeline import make_train_iterator

    # ------------------------------------------------------------------ set-up
    data, logger = prepare(config, workdir)
    if _stage_done(workdir, STAGE):
        logging.info("latent memory training already done in %s", workdir)
        with open(os.path.join(workdir, f"{STAGE}.done")) as f:
            return json.load(f)
    comps = build_lib.build(config, workdir)
    model, mesh, d = comps.model, comps.mesh, config.data
    teacher = teacher_tokens(config, workdir, comps, data.train)

    # ------------------------------------------------------------------ input pipeline
    comp_tok, gen_tok = comps.compressor_tokenizer, comps.generator_tokenizer
    evidence_encoder = EvidenceEncoder(comp_tok, max_positives=d.max_positives,
                                       max_negatives=d.max_negatives,
                                       max_evidence_len=d.max_evidence_len,
                                       max_question_len=d.max_question_len,
                                       max_answer_len=d.max_answer_len,
                                       negatives=d.negatives)
    encoder = LatentMemoryEncoder(
        evidence_encoder, PromptBuilder(gen_tok, model.config.num_latent_tokens), teacher,
        d.max_positives, d.max_student_len,
        d.max_teacher_len, d.max_extra_negatives, gen_tok.eos_token_id,
        gen_tok.pad_token_id if gen_tok.pad_token_id is not None else 0)
    local_batch = d.batch_size // jax.process_count()
    iterator = make_train_iterator(data.train, encoder, batch_size=local_batch, seed=config.seed,
                                   shard_index=jax.process_index(),
                                   shard_count=jax.process_count())

    # ------------------------------------------------------------------ optimizer, restore
    o = config.optim
    tx, schedule = make_optimizer(o.learning_rate, config.total_steps, o.end_learning_rate,
                                  o.warmup_steps, o.weight_decay, o.grad_clip)
    trainable, frozen = comps.trainable, comps.frozen
    opt_state = _place_opt_state(jax.jit(tx.init)(trainable), comps.trainable_shardings,
                                 comps.mesh)
    ckpt = Checkpointer(workdir, keep=config.keep_checkpoints)
    start = 0
    if ckpt.latest_step() is not None:
        state, data_state = ckpt.restore(abstract_like(
            {"trainable": trainable, "opt_state": opt_state}))
        trainable, opt_state = state["trainable"], state["opt_state"]
        iterator.set_state(data_state)
        start = ckpt.latest_step()
        logging.info("resumed from step %d", start)

    # ------------------------------------------------------------------ compile ahead of time
    loss_fn = functools.partial(latent_memory_losses, model, LossConfig(**config.loss),
                                comp_tok.bos_token_id, comp_tok.eos_token_id)
    step_fn = make_train_step(loss_fn, tx, o.accum_steps)
    first = _step_inputs(next(iterator))
    batch_sh = jax.tree.map(lambda x: sharding.data_sharding(mesh, x.ndim), first)
    opt_sh = jax.tree.map(lambda x: x.sharding, opt_state)
    repl = sharding.replicated(mesh)
    jitted = jax.jit(step_fn,
                     in_shardings=(comps.trainable_shardings, opt_sh, comps.frozen_shardings,
                                   batch_sh, repl),
                     out_shardings=(comps.trainable_shardings, opt_sh, repl),
                     donate_argnums=(0, 1))
    global_batch = sharding.make_global_batch(first, mesh)
    base_rng = jax.random.key(config.seed)
    with sharding.use_mesh(mesh):
        compiled = jitted.lower(trainable, opt_state, frozen, global_batch,
                                jax.random.fold_in(base_rng, 0)).compile()
    _log_memory(compiled)
    tokens_per_step = int(sum(np.asarray(first[k]).sum() for k in
                              ("pos_mask", "neg_mask", "question_mask", "student_mask",
                               "teacher_mask"))) * jax.process_count()

    # ------------------------------------------------------------------ loop
    runner = make_runner(comps, config, trainable)
    val_examples = data.eval[:config.eval.val_questions]
    last = {}
    pending = first
    t_last, steps_since = time.time(), 0
    with _Preemption() as preempt:
        for step in range(start + 1, config.total_steps + 1):
            batch = pending if pending is not None else _step_inputs(next(iterator))
            pending = None
            batch = sharding.make_global_batch(batch, mesh)
            rng = jax.random.fold_in(base_rng, step)
            trainable, opt_state, metrics = compiled(trainable, opt_state, frozen, batch, rng)
            steps_since += 1
            for hook in hooks:
                hook(step, metrics)
            is_last = step == config.total_steps
            save_now = step % config.ckpt_every == 0 or is_last or preempt.requested
            if step % config.log_every == 0 or save_now:
                m = {k: float(v) for k, v in jax.device_get(metrics).items()}
                if not np.isfinite(m["loss"]):
                    ckpt.close()
                    raise NonFiniteLossError(
                        f"loss is {m['loss']} at step {step}; stopping. The last good checkpoint "
                        f"(step {ckpt.latest_step()}) in {workdir}/checkpoints is kept.")
                dt = (time.time() - t_last) / steps_since
                m.update(learning_rate=float(schedule(step - 1)), step_time_s=dt,
                         tokens_per_s=tokens_per_step / dt)
                logger.write(STAGE, step, m)
                last, t_last, steps_since = m, time.time(), 0
            if val_examples and (step % config.eval_every == 0 or is_last):
                runner.trainable = trainable
                val = ev.validate(runner, val_examples, config.eval.k)
                logger.write(STAGE + "_validation", step, {
                    k: val[k] for k in ("f1", "em", "recall_at_k", "recall_at_2",
                                        "recon_token_acc")})
                ckpt.save_best(step, {"trainable": trainable}, val["f1"] or 0.0)
                last.update(val_f1=val["f1"], val_recall_at_k=val["recall_at_k"])
                t_last = time.time()
            if save_now:
                # The iterator has produced exactly `step` batches here: its state is the resume
                # point. Keyed by step so restoring step s continues with batch s + 1.
                ckpt.save(step, {"trainable": trainable, "opt_state": opt_state},
                          iterator.get_state(), force=True)
            if preempt.requested and not is_last:
                ckpt.wait()
                logging.warning("preempted at step %d; restart the same command to resume", step)
                ckpt.close()
                logger.close()
                return {"preempted_at": step, **last}
    ckpt.close()
    logger.close()
    result = {"step": config.total_steps, **last}
    _mark_done(workdir, STAGE, result)
    return result


def opt_state_shardings(opt_state, param_shardings, mesh):
    """Shardings for an optax state: moments follow their parameter (matched by dict path),
    scalars such as step counts are replicated."""
    by_path = {tuple(k.key for k in path): sh for path, sh in
               jax.tree_util.tree_leaves_with_path(param_shardings)}
    repl = sharding.replicated(mesh)

    def pick(path, x):
        keys = tuple(k.key for k in path if isinstance(k, jax.tree_util.DictKey))
        return by_path.get(keys, repl) if x.ndim else repl

    return jax.tree_util.tree_map_with_path(pick, opt_state)


def _place_opt_state(opt_state, param_shardings, mesh):
    return jax.device_put(opt_state, opt_state_shardings(opt_state, param_shardings, mesh))


def _step_inputs(batch: dict) -> dict:
    """The arrays the step reads (the pipeline also carries ids and answers for other uses)."""
    return {k: v for k, v in batch.items() if k not in ("index", "answer_ids", "answer_mask")}


def _log_memory(compiled) -> None:
    try:
        mem = compiled.memory_analysis()
    except Exception:  # not every backend implements it
        mem = None
    if mem is None:
        logging.info("compiled train step (no memory analysis on this backend)")
        return
    fields = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
              "generated_code_size_in_bytes")
    sizes = {f: getattr(mem, f, None) for f in fields}
    msg = ", ".join(f"{k.replace('_size_in_bytes', '')}={v / 2**20:.1f} MiB"
                    for k, v in sizes.items() if v is not None)
    print(f"compiled train step: {msg}", flush=True)
