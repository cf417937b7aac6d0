r"""Checks that lm_jax reproduces a Hugging Face checkpoint's logits.

    python -m lm_jax.tools.check_hf_parity --hf_dir=DIR [--dtype=float32] \
        [--batch=2 --seq_len=16 --tol=1e-4 --seed=0]

Runs one random batch (rows left- and right-padded) through transformers (PyTorch, CPU) and
through lm_jax, and prints one JSON line:

    {"arch": "llama", "max_abs_logit_diff": 2.9e-06, "max_kl": 1.2e-12, "ok": true, ...}

Both are measured on real (non-padding) tokens only. Exit status: 0 within --tol, 1 above it,
2 for bad input (missing directory, unsupported model, bad tensor), with one line on stderr.
Needs PyTorch (`pip install torch`).
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags, logging

_HF_DIR = flags.DEFINE_string("hf_dir", None, "Hugging Face model directory (config.json + "
                              "*.safetensors).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"],
                           "Compute and parameter dtype of both implementations.")
_BATCH = flags.DEFINE_integer("batch", 2, "Rows in the random batch.")
_SEQ_LEN = flags.DEFINE_integer("seq_len", 16, "Tokens per row (including padding).")
_TOL = flags.DEFINE_float("tol", 1e-4, "Largest acceptable absolute logit difference.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the random batch.")


class ParityInputError(ValueError):
    """Bad arguments to the parity check (reported as one line, exit status 2)."""


def padded_batch(batch: int, seq_len: int, vocab_size: int, seed: int = 0):
    """Random ids [B, T] int32 and mask [B, T] int32: row 0 full, then alternately left- and
    right-padded rows with growing amounts of padding (each row keeps at least one token)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab_size, (batch, seq_len), dtype=np.int32)
    mask = np.ones((batch, seq_len), np.int32)
    for b in range(1, batch):
        pad = min(seq_len - 1, max(1, b * seq_len // (2 * batch)))
        if b % 2:
            mask[b, :pad] = 0
        else:
            mask[b, seq_len - pad:] = 0
    return ids, mask


def check_parity(hf_dir: str, dtype: str = "float32", batch: int = 2, seq_len: int = 16,
                 seed: int = 0) -> dict:
    """Compares transformers' and lm_jax's logits on one random padded batch.

    Returns:
      {"arch", "hf_dir", "dtype", "batch", "seq_len", "max_abs_logit_diff", "max_kl"}; KL is
      KL(p_transformers || p_lm_jax) per real token, maximized.

    Raises:
      ParityInputError, or lm_jax.hf.checkpoint.CheckpointError subclasses for a bad checkpoint.
    """
    if not hf_dir:
        raise ParityInputError("--hf_dir is required")
    if not os.path.isdir(hf_dir):
        raise ParityInputError(f"--hf_dir={hf_dir}: no such directory")
    if batch < 1 or seq_len < 1:
        raise ParityInputError(f"--batch and --seq_len must be positive, got {batch}, {seq_len}")
    import jax
    import jax.numpy as jnp
    import numpy as np

    from lm_jax.hf import checkpoint
    from lm_jax.models.decoder import Decoder

    config = checkpoint.load_hf_config(hf_dir, dtype=dtype, param_dtype=dtype)
    params = checkpoint.load_params(hf_dir, config)
    ids, mask = padded_batch(batch, seq_len, config.vocab_size, seed)

    try:
        import torch
        import transformers
    except ImportError as e:
        raise ParityInputError(f"the parity check needs PyTorch and transformers ({e})") from None
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        hf_dir, dtype=getattr(torch, dtype), attn_implementation="eager").eval()
    with torch.no_grad():
        ref = model(input_ids=torch.as_tensor(ids, dtype=torch.long),
                    attention_mask=torch.as_tensor(mask, dtype=torch.long)).logits
    ref = ref.float().numpy()

    fwd = jax.jit(lambda p, i, m: Decoder(config).apply({"params": p}, i, attention_mask=m).logits)
    # TPUs and GPUs default to reduced-precision fp32 matmuls, which alone exceed 1e-4.
    with jax.default_matmul_precision("highest"):
        ours = np.asarray(fwd(params, jnp.asarray(ids), jnp.asarray(mask)), np.float32)

    real = mask.astype(bool)
    diff = float(np.abs(ours - ref)[real].max())
    ours, ref = ours.astype(np.float64), ref.astype(np.float64)  # KL of near-equal rows: cancels
    log_p = ref - _logsumexp(ref)
    log_q = ours - _logsumexp(ours)
    kl = (np.exp(log_p) * (log_p - log_q)).sum(-1)
    return dict(arch=config.model_type, hf_dir=hf_dir, dtype=dtype, batch=batch, seq_len=seq_len,
                max_abs_logit_diff=diff, max_kl=float(max(kl[real].max(), 0.0)))


def _logsumexp(x):
    import numpy as np

    m = x.max(-1, keepdims=True)
    return m + np.log(np.exp(x - m).sum(-1, keepdims=True))


def main(argv):
    # Keep stderr to the one error line (JAX logs backend probing at INFO).
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
        return 2
    from lm_jax.hf.checkpoint import CheckpointError

    try:
        result = check_parity(_HF_DIR.value, _DTYPE.value, _BATCH.value, _SEQ_LEN.value,
                              _SEED.value)
    except (ParityInputError, CheckpointError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result["tol"] = _TOL.value
    result["ok"] = result["max_abs_logit_diff"] <= _TOL.value
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    app.run(main)
