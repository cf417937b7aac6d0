"""Generator prompts: text pieces become tokens, latent slots become marked positions."""

from lm_jax.hf.testing import make_tiny_tokenizer
from lm_jax.hf.tokenizer import load_tokenizer
from lm_jax.models.prompts import PromptBuilder, pad_prompts


def test_text_and_latent_prompts(tmp_path):
    tok = load_tokenizer(make_tiny_tokenizer(str(tmp_path / "tok")))
    b = PromptBuilder(tok, num_latent_tokens=2)
    text = b.text("who?", ["Ann: the dog was born in 2024.", "Bob: the fox is quick."])
    rendered = tok.decode(text.ids)
    assert "Context 2: Bob: the fox is quick." in rendered
    assert "the dog was born in 2024" in rendered
    assert "Question: who?" in rendered
    assert all(i == -1 for i in text.slot_item)
    evidence = len(tok("Ann: the dog was born in 2024.", add_special_tokens=False)["input_ids"])
    evidence += len(tok("Bob: the fox is quick.", add_special_tokens=False)["input_ids"])
    assert text.context_tokens == evidence

    lat = b.latent("who?", [3, 0])
    assert "Latent context 2:" in tok.decode([i for i, s in zip(lat.ids, lat.slot_item)
                                              if s < 0])
    slots = [(s, t) for s, t in zip(lat.slot_item, lat.slot_tok) if s >= 0]
    assert slots == [(3, 0), (3, 1), (0, 0), (0, 1)]
    assert lat.context_tokens == 4  # 2 items x 2 latent tokens

    none = b.text("who?", [])
    assert none.context_tokens == 0 and len(none) < len(text)

    arr = pad_prompts([lat, none], length=len(lat) + 3, left=True)
    assert arr["mask"][0].sum() == len(lat) and arr["mask"][1].sum() == len(none)
    assert arr["mask"][0, :3].sum() == 0  # left padding
    assert (arr["slot_item"][1] == -1).all()
