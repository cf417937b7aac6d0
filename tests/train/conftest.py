"""Tiny Latent Memory models and random step batches for the train tests."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm_jax.models.config import DecoderConfig
from lm_jax.models.latent_memory import LatentMemory, LatentMemoryConfig, paper_adapters

TINY = DecoderConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=2,
                     num_heads=4, num_kv_heads=2, head_dim=8)


def make_model(share_base=False, num_latent_tokens=1):
    cfg = LatentMemoryConfig(TINY, TINY, paper_adapters(4, 8.0, 0.0),
                             num_latent_tokens=num_latent_tokens, retrieval_dim=16,
                             share_base=share_base)
    return LatentMemory(cfg)


def make_batch(seed=0, b=4, p=2, n=3, length=8, s=20, d=4, t=1):
    """A random step batch (shapes as documented in lm_jax/train/step.py)."""
    r = np.random.RandomState(seed)

    def ids(*shape):
        return r.randint(3, 64, shape).astype(np.int32)

    def mask(*shape):
        lens = r.randint(3, shape[-1] + 1, shape[:-1])
        return (np.arange(shape[-1]) < lens[..., None]).astype(np.int32)

    slot_item = np.full((b, s), -1, np.int32)
    slot_tok = np.full((b, s), -1, np.int32)
    for j, (pos, item) in enumerate([(4, 0), (8, 1), (12, p)]):
        slot_item[:, pos:pos + t] = item
        slot_tok[:, pos:pos + t] = np.arange(t)
        del j
    neg_valid = r.rand(b, n) > 0.3
    neg_valid[:, 0] = True
    return dict(
        question_ids=ids(b, length), question_mask=mask(b, length),
        pos_ids=ids(b, p, length), pos_mask=mask(b, p, length), pos_valid=np.ones((b, p), bool),
        neg_ids=ids(b, n, length), neg_mask=mask(b, n, length), neg_valid=neg_valid,
        student_ids=ids(b, s), student_mask=np.ones((b, s), np.int32),
        student_slot_item=slot_item, student_slot_tok=slot_tok,
        student_out_pos=np.tile(np.arange(s - d, s, dtype=np.int32), (b, 1)),
        teacher_ids=ids(b, s + 6), teacher_mask=np.ones((b, s + 6), np.int32),
        teacher_out_pos=np.tile(np.arange(s + 6 - d, s + 6, dtype=np.int32), (b, 1)),
        distill_mask=np.ones((b, d), np.float32),
    )


@pytest.fixture
def tiny_model_and_params():
    model = make_model()
    params = nn.unbox(model.init(jax.random.key(0)))
    # Nonzero LoRA B so adapters change outputs (B = 0 at init is the identity).
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: x + 0.05 if "lora_" in jax.tree_util.keystr(path) and
        jax.tree_util.keystr(path).endswith("_b']") else x, params)
    return model, params


def to_jnp(batch):
    return {k: jnp.asarray(v) for k, v in batch.items()}
