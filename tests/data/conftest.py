"""Fixtures for the data tests: small HotpotQA-format files made in tmp_path (no ../shared)."""

from __future__ import annotations

import json
import os

import pytest


def hotpot_record(i: int, **overrides):
    """A valid HotpotQA record: 3 paragraphs, 2 supporting facts in 2 of them."""
    rec = {
        "_id": f"id{i:03d}",
        "answer": f"Answer {i}",
        "question": f"Which city is linked to topic {i}?",
        "supporting_facts": [[f"Alpha {i}", 0], [f"Beta {i}", 1]],
        "context": [
            [f"Alpha {i}", [f"Alpha {i} was founded by Beta {i}.", " It is old."]],
            [f"Beta {i}", [f"Beta {i} is a person.", f" Beta {i} was born in Answer {i}."]],
            [f"Gamma {i}", ["Gamma is unrelated.", " ", " Gamma has a river."]],
        ],
        "type": "bridge",
        "level": "hard",
    }
    rec.update(overrides)
    return rec


def write_json(path, records) -> str:
    """Writes records like the official files: one compact JSON array, ASCII escapes."""
    path = os.fspath(path)
    with open(path, "w", encoding="ascii") as f:
        json.dump(records, f, separators=(",", ":"))
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    """The demo tokenizer trained on a small synthetic corpus (a few seconds, once)."""
    from lm_jax.data import synthetic
    from lm_jax.data.tokenizer_train import corpus_texts, train_tokenizer

    out = tmp_path_factory.mktemp("tok")
    records = synthetic.generate(300, seed=0, split_world="train")
    return train_tokenizer(corpus_texts(records), out, syllables=synthetic.SYLLABLES)
