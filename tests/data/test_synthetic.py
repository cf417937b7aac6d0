"""The synthetic world: valid HotpotQA records, answers in supporting facts, disjoint worlds."""

from __future__ import annotations

import collections
import json
import re

import pytest

from lm_jax.data import synthetic
from lm_jax.data.builders import validation
from lm_jax.data.records import from_hotpot_json


@pytest.fixture(scope="module")
def worlds():
    return synthetic.generate(600, seed=3, split_world="train"), synthetic.generate(
        300, seed=3, split_world="test"
    )


def test_records_are_valid_hotpotqa(worlds):
    for records in worlds:
        assert len({r["_id"] for r in records}) == len(records)
        for r in records:
            assert list(r) == [
                "_id",
                "answer",
                "question",
                "supporting_facts",
                "context",
                "type",
                "level",
            ]
            assert len(r["context"]) == 10  # 2 gold + 8 distractors
            assert len({t for t, _ in r["context"]}) == 10
            paragraphs = dict((t, s) for t, s in r["context"])
            for title, idx in r["supporting_facts"]:
                assert title in paragraphs and 0 <= idx < len(paragraphs[title])
            for _, sents in r["context"]:
                assert 3 <= len(sents) <= 4
                assert all(6 <= len(s.split()) <= 14 for s in sents)
                assert all(s.startswith(" ") for s in sents[1:])  # official layout
            # The shared validator accepts every record, with at least 2 positives.
            rec = validation.QARecord(
                r["_id"], r["question"], r["answer"], r["type"], r["level"],
                [(t, s) for t, s in r["context"]], [(t, i) for t, i in r["supporting_facts"]],
            )  # fmt: skip
            validation.check_content(rec, strict_supporting=True, notes=lambda *a: None)
            assert validation.count_positives(rec) == 2


def test_answers_are_in_supporting_sentences(worlds):
    for records in worlds:
        for r in records:
            ex = from_hotpot_json(r)
            if r["answer"] in ("yes", "no"):
                assert r["type"] == "comparison"
                continue
            assert any(r["answer"] in e.text for e in ex.positives), r
            # The question names the entity of its first supporting sentence.
            first_title = r["supporting_facts"][0][0]
            assert first_title in r["question"]


def test_question_mix(worlds):
    train, _ = worlds
    types = collections.Counter(r["type"] for r in train)
    assert types["bridge"] > 0.4 * len(train) and types["comparison"] > 0.25 * len(train)
    yes_no = collections.Counter(r["answer"] for r in train if r["answer"] in ("yes", "no"))
    assert yes_no["yes"] > 20 and yes_no["no"] > 20
    assert len({r["question"] for r in train}) == len(train)
    # Distractors are similar entities: mostly the gold paragraphs' kinds.
    world = synthetic.build_world(3, "train", synthetic.world_sizes(600))
    r = next(x for x in train if x["type"] == "bridge")
    gold_kinds = {world.kind(t) for t, _ in r["supporting_facts"]}
    assert all(world.kind(t) in gold_kinds for t, _ in r["context"])


def _name_words(records):
    words = set()
    for r in records:
        for title, sents in r["context"]:
            words.update(w for w in re.findall(r"[A-Z][a-z]+", title + " " + " ".join(sents)))
    return words


def test_train_and_test_worlds_are_disjoint(worlds):
    train, test = worlds
    titles = [{t for r in recs for t, _ in r["context"]} for recs in (train, test)]
    assert not titles[0] & titles[1]
    shared = _name_words(train) & _name_words(test)
    # Only template and kind words are shared, never a name word.
    allowed = {"The", "River", *(k for k, _ in synthetic.ORG_KINDS)}
    assert shared <= allowed, shared - allowed
    assert all(
        synthetic.word_world(w) == "train"
        for w in _name_words(train) - allowed
        if re.fullmatch("(" + "|".join(synthetic.SYLLABLES) + ")+", w.lower())
    )


def test_cli_is_byte_identical_for_the_same_arguments(tmp_path, capsys):
    args = ["--num_questions=50", "--seed=7", "--split_world=test"]
    synthetic.main([f"--out={tmp_path / 'a.json'}", *args])
    synthetic.main([f"--out={tmp_path / 'b.json'}", *args])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["questions"] == 50
    a, b = (tmp_path / "a.json").read_bytes(), (tmp_path / "b.json").read_bytes()
    assert a == b and a.startswith(b'[{"_id":"syn-test-7-000000","answer":')
    synthetic.main([f"--out={tmp_path / 'c.json'}", "--num_questions=50", "--seed=8"])
    assert (tmp_path / "c.json").read_bytes() != a
    assert len(json.loads(a)) == 50


def test_prepare_synthetic_builds_without_drops(tmp_path):
    from lm_jax.data.prepare import prepare_synthetic
    from lm_jax.data.records import load_examples

    report = prepare_synthetic(tmp_path / "data", tmp_path / "manual", 120, 40, seed=1)
    assert {s: (v["read"], v["kept"]) for s, v in report["splits"].items()} == {
        "train": (120, 120),
        "validation": (40, 40),
    }
    examples = load_examples(tmp_path / "data", "hotpot_qa/distractor", "validation")
    assert [e.id for e in examples[:2]] == ["syn-test-1-000000", "syn-test-1-000001"]
    # Same arguments again: files unchanged, dataset reused.
    assert prepare_synthetic(tmp_path / "data", tmp_path / "manual", 120, 40, seed=1) == report
