"""Tokenizer loading, the single chat-template path (incl. system folding), padded encoding."""

import numpy as np
import pytest

from lm_jax.hf import testing
from lm_jax.hf.checkpoint import ModelNotFoundError
from lm_jax.hf.tokenizer import TokenizerError, encode, load_tokenizer, render_chat

# A template that renders only user/assistant turns and silently skips everything else.
DROPS_SYSTEM = (
    "{% for m in messages %}{% if m['role'] != 'system' %}<|{{ m['role'] }}|>\n"
    "{{ m['content'] }}<|end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    out = {}
    for name, template in [("simple", testing.SIMPLE_CHAT_TEMPLATE),
                           ("raises", testing.NO_SYSTEM_CHAT_TEMPLATE),
                           ("drops", DROPS_SYSTEM), ("none", None)]:
        d = testing.make_tiny_tokenizer(str(tmp_path_factory.mktemp(name)), template)
        out[name] = load_tokenizer(d)
    return out


def test_template_with_system_role(tokenizers):
    text = render_chat(tokenizers["simple"], "Who wrote it?", system="Be brief.")
    assert text == ("<|system|>\nBe brief.<|end|>\n<|user|>\nWho wrote it?<|end|>\n"
                    "<|assistant|>\n")
    assert render_chat(tokenizers["simple"], "Hi", add_generation_prompt=False) == \
        "<|user|>\nHi<|end|>\n"


@pytest.mark.parametrize("name", ["raises", "drops"])
def test_template_without_system_role_folds_system_into_user(tokenizers, name):
    text = render_chat(tokenizers[name], "Who wrote it?", system="Be brief.")
    assert text == "<|user|>\nBe brief.\n\nWho wrote it?<|end|>\n<|assistant|>\n"


def test_no_template_uses_documented_plain_format(tokenizers):
    tok = tokenizers["none"]
    assert render_chat(tok, "Who wrote it?", system="Be brief.") == \
        "System: Be brief.\n\nUser: Who wrote it?\n\nAssistant:"
    assert render_chat(tok, "Q?", add_generation_prompt=False) == "User: Q?\n\n"


def test_encode_right_pads_and_truncates(tokenizers):
    tok = tokenizers["simple"]
    texts = ["the quick brown fox", "the", "the quick brown fox jumps over the lazy dog"]
    ids, mask = encode(tok, texts, max_len=6, add_special_tokens=False)
    assert ids.shape == mask.shape == (3, 6) and ids.dtype == mask.dtype == np.int32
    full = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    for i, row in enumerate(full):
        n = min(len(row), 6)
        np.testing.assert_array_equal(ids[i, :n], row[:n])
        assert mask[i].sum() == n and (ids[i, n:] == tok.pad_token_id).all()
        assert (mask[i, :n] == 1).all() and (mask[i, n:] == 0).all()
    assert mask[1].sum() < 6 and mask[2].sum() == 6


def test_load_errors_name_the_flag(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    with pytest.raises(ModelNotFoundError, match="--generator_tokenizer"):
        load_tokenizer("someone/not-a-model", flag_name="--generator_tokenizer")
    with pytest.raises(TokenizerError, match="--tokenizer"):
        load_tokenizer(str(tmp_path))
