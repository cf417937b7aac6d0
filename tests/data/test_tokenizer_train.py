"""The demo tokenizer: loads with AutoTokenizer, special tokens, chat template, determinism."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from lm_jax.data import synthetic
from lm_jax.data.tokenizer_train import (
    BOS,
    EOS,
    MEM,
    PAD,
    SPECIAL_TOKENS,
    corpus_texts,
    main,
    name_style_options,
    syllable_split_pattern,
    train_tokenizer,
)


def test_loads_with_special_tokens_and_chat_template(tiny_tokenizer, tmp_path):
    tok = tiny_tokenizer
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (BOS, EOS, PAD)
    assert tok.pad_token_id == 0
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    assert len(set(ids.values())) == len(SPECIAL_TOKENS)
    assert set(tok.all_special_tokens) == set(SPECIAL_TOKENS)
    # BOS in front by default; special tokens are never split.
    enc = tok("Mira Tolan was born in Quenby.")["input_ids"]
    assert enc[0] == tok.bos_token_id and tok.eos_token_id not in enc
    assert tok(f"x {MEM} y", add_special_tokens=False)["input_ids"].count(ids[MEM]) == 1
    assert tok.decode(enc, skip_special_tokens=True).strip() == "Mira Tolan was born in Quenby."

    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Where was Mira Tolan born?"},
    ]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|bos|><|system|>Answer briefly.<|end|><|user|>Where was Mira Tolan born?<|end|>"
        "<|assistant|>"
    )
    chat_ids = tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    chat_ids = chat_ids["input_ids"] if hasattr(chat_ids, "keys") else chat_ids
    assert chat_ids[0] == tok.bos_token_id and chat_ids.count(tok.bos_token_id) == 1
    assert chat_ids[-1] == ids["<|assistant|>"]
    with pytest.raises(Exception, match="unknown chat role"):
        tok.apply_chat_template([{"role": "tool", "content": "x"}], tokenize=False)


def test_names_split_into_shared_syllable_pieces(tiny_tokenizer):
    tok = tiny_tokenizer
    # A name word is cut at syllable boundaries, whatever the world.
    assert tok.tokenize("Zorvex Quenby")[:2] == ["ĠZor", "vex"]
    train = synthetic.generate(300, seed=0, split_world="train")
    test = synthetic.generate(100, seed=0, split_world="test")
    _assert_test_world_uses_seen_tokens(tok, train, test)
    # Digits one by one.
    assert tok.tokenize("in 1987")[-4:] == ["1", "9", "8", "7"]


def _assert_test_world_uses_seen_tokens(tok, train, test):
    def used(records):
        ids = set()
        for text in dict.fromkeys(corpus_texts(records)):
            ids.update(tok(text)["input_ids"])
        return ids

    # The vocabularies all worlds share (a language of 10 may be missing from 300 questions).
    shared = [{"question": " ".join([*synthetic.CONTINENTS, *synthetic.LANGUAGES,
                                     *synthetic.RIVERS]), "answer": "", "context": []}]
    unseen = used(test) - used(train) - used(shared)
    # Test-world texts use no token that training data never showed the model.
    assert not unseen, tok.convert_ids_to_tokens(sorted(unseen))


def test_name_words_become_single_tokens(tmp_path):
    # Many small worlds, as the demo's training data (one world of 300 questions leaves a few
    # inventory words unused).
    train = [r for w in range(40)
             for r in synthetic.generate(10, seed=w, split_world="train", names="words")]
    test = synthetic.generate(100, seed=0, split_world="test", names="words")
    tok = train_tokenizer(corpus_texts(train), tmp_path, **name_style_options("words"))
    assert all(len(tok.tokenize(f"at {w}")) == 2 for w in synthetic.NAME_WORDS)
    assert tok.tokenize("Mira Thorne: Mira Thorne was born in the city of Port Alder.")[:3] == [
        "ĠMira", "ĠThorne", ":"]
    _assert_test_world_uses_seen_tokens(tok, train, test)
    with pytest.raises(ValueError, match="unknown name style"):
        name_style_options("letters")


def test_training_is_deterministic_and_cli_works(tmp_path, capsys):
    records = synthetic.generate(80, seed=1, split_world="train")
    corpus = tmp_path / "corpus.json"
    corpus.write_text(synthetic.dumps(records))
    main([f"--corpus={corpus}", f"--out_dir={tmp_path / 'a'}", "--vocab_size=600"])
    main([f"--corpus={corpus}", f"--out_dir={tmp_path / 'b'}", "--vocab_size=600"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["vocab_size"] <= 600
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    tok = AutoTokenizer.from_pretrained(tmp_path / "a")
    assert tok.chat_template and tok.bos_token == BOS
    # Without syllables: a plain byte-level BPE.
    plain = train_tokenizer(["hello world", "hello there"], tmp_path / "c", vocab_size=300)
    assert plain.decode(plain("hello world")["input_ids"], skip_special_tokens=True).strip() == (
        "hello world"
    )


def test_syllable_pattern_rejects_bad_inventory():
    with pytest.raises(ValueError):
        syllable_split_pattern(["ok", "Not ok"])
