"""The Latent Memory train step: one pure function, jitted once with explicit shardings.

`step(trainable, opt_state, frozen, batch, rng) -> (trainable, opt_state, metrics)`.
All three losses come from one forward of each model inside it; gradient accumulation is a scan
over micro-batches inside the same jitted function, followed by one optimizer update.

Batch (global arrays; B examples, P positives, N hard negatives, D distillation positions):
  question_ids, question_mask      [B, Lq]
  pos_ids, pos_mask                [B, P, Le]    pos_valid [B, P]
  neg_ids, neg_mask                [B, N, Le]    neg_valid [B, N]
  student_ids, student_mask, student_slot_item, student_slot_tok   [B, Ss]
  student_out_pos                  [B, D]   positions whose next-token distribution is compared
  teacher_ids, teacher_mask        [B, St]  teacher_out_pos [B, D]
  distill_mask                     [B, D]   float, 0 after the teacher's EOS
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from lm_jax.models.latent_memory import LatentMemory
from lm_jax.train import losses


@dataclasses.dataclass(frozen=True)
class LossConfig:
    recon_weight: float = 0.5
    contrast_weight: float = 0.2
    distill_weight: float = 1.0
    temperature: float = 0.07


def make_optimizer(learning_rate: float, total_steps: int, end_learning_rate: float = 1e-6,
                   warmup_steps: int = 0, weight_decay: float = 0.0, grad_clip: float = 1.0):
    """AdamW on a cosine schedule (optional linear warm-up) after global-norm clipping.

    Returns (optimizer, schedule).
    """
    decay_steps = max(total_steps - warmup_steps, 1)
    cosine = optax.cosine_decay_schedule(learning_rate, decay_steps,
                                         alpha=end_learning_rate / learning_rate)
    if warmup_steps:
        schedule = optax.join_schedules(
            [optax.linear_schedule(0.0, learning_rate, warmup_steps), cosine], [warmup_steps])
    else:
        schedule = cosine
    tx = optax.chain(optax.clip_by_global_norm(grad_clip),
                     optax.adamw(schedule, weight_decay=weight_decay))
    return tx, schedule


def latent_memory_losses(model: LatentMemory, loss_cfg: LossConfig, bos_id, eos_id,
                         trainable, frozen, batch, rng, deterministic=False):
    """Total loss and metrics for one (micro-)batch. Shapes as in the module docstring."""
    b, p, le = batch["pos_ids"].shape
    n = batch["neg_ids"].shape[1]
    k = p + n
    ev_ids = jnp.concatenate([batch["pos_ids"], batch["neg_ids"]], axis=1).reshape(b * k, le)
    ev_mask = jnp.concatenate([batch["pos_mask"], batch["neg_mask"]], axis=1).reshape(b * k, le)
    ev_valid = jnp.concatenate([batch["pos_valid"], batch["neg_valid"]], axis=1).reshape(b * k)
    r_enc, r_query, r_dec = jax.random.split(rng, 3)

    # Compressor: one forward for every positive and hard negative of the batch.
    z = model.encode_evidence(trainable, frozen, ev_ids, ev_mask, deterministic=deterministic,
                              rng=r_enc)  # [B*K, T, H]

    # L_recon on positives and hard negatives.
    logits, targets, tmask = model.reconstruction(trainable, frozen, z, ev_ids, ev_mask, bos_id,
                                                  eos_id, deterministic=deterministic, rng=r_dec)
    tmask = tmask * ev_valid[:, None].astype(jnp.float32)
    loss_recon, recon_acc = losses.token_cross_entropy(logits, targets, tmask)

    # L_contrast: keys are every valid item of the global batch.
    q = model.encode_query(trainable, frozen, batch["question_ids"], batch["question_mask"],
                           deterministic=deterministic, rng=r_query)  # [B, R]
    keys = model.retrieval_keys(trainable, z)  # [B*K, R]
    owner = jnp.where(jnp.arange(k)[None, :] < p, jnp.arange(b)[:, None], -1).reshape(b * k)
    loss_contrast = losses.multi_positive_infonce(q, keys, owner, ev_valid, loss_cfg.temperature)

    # L_distill: student reads latents, teacher (no gradient) reads the raw positives.
    z_items = z.reshape(b, k, *z.shape[1:])
    embeds, emask = model.latent_prompt_embeds(trainable, z_items, batch["student_slot_item"],
                                               batch["student_slot_tok"])
    student = model.generator_logits_at(frozen, batch["student_ids"], batch["student_mask"],
                                        batch["student_out_pos"], embeds, emask)
    teacher = jax.lax.stop_gradient(model.generator_logits_at(
        frozen, batch["teacher_ids"], batch["teacher_mask"], batch["teacher_out_pos"]))
    loss_distill = losses.distillation_kl(teacher, student, batch["distill_mask"])

    total = (loss_cfg.recon_weight * loss_recon + loss_cfg.contrast_weight * loss_contrast
             + loss_cfg.distill_weight * loss_distill)
    metrics = dict(loss=total, loss_recon=loss_recon, loss_contrast=loss_contrast,
                   loss_distill=loss_distill, recon_acc=recon_acc)
    return total, metrics


def _microbatches(batch: dict, accum_steps: int) -> dict:
    """[B, ...] -> [A, B/A, ...], taking every A-th row so dim 0's sharding is kept."""
    def split(x):
        x = x.reshape(x.shape[0] // accum_steps, accum_steps, *x.shape[1:])
        return jnp.moveaxis(x, 1, 0)
    return jax.tree.map(split, batch)


def make_train_step(loss_fn: Callable, optimizer: optax.GradientTransformation,
                    accum_steps: int = 1):
    """Wraps `loss_fn(trainable, frozen, batch, rng) -> (loss, metrics)` into the train step."""
    grad_fn = jax.grad(loss_fn, has_aux=True)

    def step(trainable, opt_state, frozen, batch, rng):
        if accum_steps == 1:
            grads, metrics = grad_fn(trainable, frozen, batch, rng)
        else:
            def body(acc, xs):
                mb, i = xs
                g, m = grad_fn(trainable, frozen, mb, jax.random.fold_in(rng, i))
                return jax.tree.map(jnp.add, acc, (g, m)), None

            zeros = jax.tree.map(jnp.zeros_like, trainable)
            _, m_shape = jax.eval_shape(grad_fn, trainable, frozen,
                                        jax.tree.map(lambda x: x[0], _microbatches(batch, 1)),
                                        rng)
            init = (zeros, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), m_shape))
            (grads, metrics), _ = jax.lax.scan(
                body, init, (_microbatches(batch, accum_steps), jnp.arange(accum_steps)))
            grads = jax.tree.map(lambda g: g / accum_steps, grads)
            metrics = jax.tree.map(lambda m: m / accum_steps, metrics)
        updates, opt_state = optimizer.update(grads, opt_state, trainable)
        trainable = optax.apply_updates(trainable, updates)
        metrics = dict(metrics, grad_norm=optax.tree.norm(grads))
        return trainable, opt_state, metrics

    return step
