"""The three Latent Memory losses (METHOD.md §3), as pure functions of arrays."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def token_cross_entropy(logits: jax.Array, targets: jax.Array, mask: jax.Array):
    """Mean token cross-entropy and accuracy over masked positions.

    Args:
      logits: [..., V] fp32; targets: [...] int; mask: [...] float (1 = counted).
    Returns:
      (loss, accuracy) scalars; both 0 when the mask is empty.
    """
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    count = jnp.maximum(jnp.sum(mask), 1.0)
    correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)
    return jnp.sum(nll * mask) / count, jnp.sum(correct * mask) / count


def multi_positive_infonce(queries: jax.Array, keys: jax.Array, key_owner: jax.Array,
                           key_valid: jax.Array, temperature: float = 0.07) -> jax.Array:
    """Multi-positive InfoNCE over every key of the (global) batch.

    For question b with positives P(b): loss_b = -mean_{p in P(b)} (s_bp / tau - logsumexp_m
    s_bm / tau), where m runs over all valid keys (every positive of every question plus every
    hard negative). The result is the mean over questions that have at least one positive.

    Args:
      queries: [B, R] unit vectors.
      keys: [M, R] unit vectors.
      key_owner: [M] int, the question a key is a positive of, or -1 (hard negative).
      key_valid: [M] bool, False for padding keys.
      temperature: tau.
    """
    scores = (queries @ keys.T).astype(jnp.float32) / temperature  # [B, M]
    scores = jnp.where(key_valid[None, :], scores, -jnp.inf)
    lse = jax.nn.logsumexp(scores, axis=-1, keepdims=True)
    is_pos = (key_owner[None, :] == jnp.arange(queries.shape[0])[:, None]) & key_valid[None, :]
    log_prob = jnp.where(is_pos, scores - lse, 0.0)
    num_pos = jnp.sum(is_pos, axis=-1)
    per_question = -jnp.sum(log_prob, axis=-1) / jnp.maximum(num_pos, 1)
    has_pos = (num_pos > 0).astype(jnp.float32)
    return jnp.sum(per_question * has_pos) / jnp.maximum(jnp.sum(has_pos), 1.0)


def distillation_kl(teacher_logits: jax.Array, student_logits: jax.Array,
                    mask: jax.Array) -> jax.Array:
    """KL(teacher || student) at temperature 1, summed over masked positions / their count.

    Args:
      teacher_logits, student_logits: [B, D, V]; mask: [B, D] float.
    """
    t_logp = jax.nn.log_softmax(teacher_logits.astype(jnp.float32), axis=-1)
    s_logp = jax.nn.log_softmax(student_logits.astype(jnp.float32), axis=-1)
    kl = jnp.sum(jnp.exp(t_logp) * (t_logp - s_logp), axis=-1)  # [B, D]
    return jnp.sum(kl * mask) / jnp.maximum(jnp.sum(mask), 1.0)
