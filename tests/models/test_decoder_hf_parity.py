"""lm_jax's decoder against transformers (PyTorch) on tiny random checkpoints built here."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from lm_jax.hf import checkpoint, testing  # noqa: E402
from lm_jax.models.decoder import Decoder  # noqa: E402
from lm_jax.models.generate import greedy_generate  # noqa: E402

VARIANTS = ("llama", "qwen2", "qwen2_tied", "mistral")
TOL = 1e-4


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """variant -> (DecoderConfig, lm_jax params, transformers model)."""
    out = {}
    for variant in VARIANTS:
        d = testing.make_tiny_checkpoint(str(tmp_path_factory.mktemp(variant)), variant)
        config = checkpoint.load_hf_config(d)
        params = checkpoint.load_params(d, config)
        hf = transformers.AutoModelForCausalLM.from_pretrained(
            d, attn_implementation="eager").eval()
        out[variant] = (config, params, hf)
    return out


def _batch(seed=0, b=3, t=14, vocab=128):
    """Row 0 full, row 1 left-padded by 5, row 2 right-padded by 4."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, vocab, (b, t)).astype(np.int32)
    mask = np.ones((b, t), np.int32)
    mask[1, :5] = 0
    mask[2, t - 4:] = 0
    return ids, mask


def _logits(config, params, ids, mask):
    fwd = jax.jit(lambda p, i, m: Decoder(config).apply({"params": p}, i, attention_mask=m).logits)
    return np.asarray(fwd(params, ids, mask))


def _hf_logits(hf, ids, mask):
    with torch.no_grad():
        return hf(input_ids=torch.as_tensor(ids, dtype=torch.long),
                  attention_mask=torch.as_tensor(mask, dtype=torch.long)).logits.numpy()


@pytest.mark.parametrize("variant", VARIANTS)
def test_logits_match_transformers_with_padding(models, variant):
    config, params, hf = models[variant]
    ids, mask = _batch()
    ref = _hf_logits(hf, ids, mask)
    out = _logits(config, params, ids, mask)
    real = mask.astype(bool)
    np.testing.assert_array_less(np.abs(out - ref)[real], TOL)
    # The comparison must be able to fail: logits vary a lot across the vocabulary.
    assert np.std(ref[real]) > 0.3


def test_variants_exercise_their_features(models):
    llama = models["llama"][0]
    assert llama.num_kv_heads < llama.num_heads
    assert llama.head_dim * llama.num_heads != llama.hidden_size
    assert llama.rope_scaling_dict["rope_type"] == "llama3"
    assert models["qwen2"][0].qkv_bias and "lm_head" in models["qwen2"][1]
    assert models["qwen2_tied"][0].tie_word_embeddings and "lm_head" not in models["qwen2_tied"][1]
    # Mistral's window is shorter than the sequence, so dropping it must change the logits.
    config, params, _ = models["mistral"]
    assert config.sliding_window < 14
    ids, mask = _batch()
    windowed = _logits(config, params, ids, mask)
    full = _logits(config.replace(sliding_window=None), params, ids, mask)
    assert np.abs(windowed - full).max() > 1e-2


@pytest.mark.parametrize("variant", VARIANTS)
def test_greedy_generate_matches_transformers_left_padded(models, variant):
    config, params, hf = models[variant]
    rng = np.random.default_rng(1)
    ids = rng.integers(3, 128, (2, 10)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, :4] = 0
    ids[1, :4] = 0
    with torch.no_grad():
        ref = hf.generate(input_ids=torch.as_tensor(ids, dtype=torch.long),
                          attention_mask=torch.as_tensor(mask, dtype=torch.long),
                          max_new_tokens=20, min_new_tokens=20, do_sample=False,
                          eos_token_id=None, pad_token_id=0).numpy()[:, ids.shape[1]:]
    model = Decoder(config)
    gen = jax.jit(lambda p, i, m: greedy_generate(model, p, i, m, 20, None))
    tokens, lengths = gen(params, jnp.asarray(ids), jnp.asarray(mask))
    np.testing.assert_array_equal(np.asarray(tokens), ref)
    np.testing.assert_array_equal(np.asarray(lengths), [20, 20])
