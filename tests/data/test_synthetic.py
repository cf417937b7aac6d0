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
    assert types["bridge"] > 0.7 * len(train) and types["comparison"] > 0.12 * len(train)
    yes_no = collections.Counter(r["answer"] for r in train if r["answer"] in ("yes", "no"))
    assert yes_no["yes"] > 10 and yes_no["no"] > 10
    assert len({r["question"] for r in train}) == len(train)
    world = synthetic.build_world(3, "train", synthetic.world_sizes(600))
    for r in train:
        (first, _), (second, fact) = r["supporting_facts"]
        kinds = collections.Counter(world.kind(t) for t, _ in r["context"])
        if r["type"] == "comparison":  # distractors: the compared entities' kind
            assert kinds == {world.kind(first): 10}
            continue
        # Bridge: 9 paragraphs of the question entity's kind; the bridge paragraph is the only
        # one of its kind, so its fact is the only sentence of that relation in the context.
        assert kinds == {world.kind(first): 9, world.kind(second): 1}, r["question"]
        # The relation: the fact sentence without its subject, up to the answer.
        relation = world.paragraph(second)[fact].replace(second, "").split(r["answer"])[0]
        matches = [s for t, sents in r["context"] for s in sents
                   if s.replace(t, "").strip().startswith(relation.strip())]
        assert len(matches) == 1, (relation, r["question"])


def test_bridge_answers_come_from_shared_vocabularies_unless_names_are_asked_for(worlds):
    shared = {*synthetic.PROFESSIONS, *(i for _, i in synthetic.ORG_KINDS), *synthetic.RIVERS,
              *synthetic.CONTINENTS, *synthetic.LANGUAGES}
    for records in worlds:
        answers = collections.Counter(r["answer"] for r in records if r["type"] == "bridge")
        assert set(answers) <= shared and len(answers) > 20
    with_names = synthetic.generate(300, seed=3, split_world="test", name_answers=True)
    names = [r for r in with_names if r["type"] == "bridge" and r["answer"] not in shared]
    assert len(names) > 100  # cities, countries, founders, capitals, years


# Capitalised words of templates and shared vocabularies (every world uses them).
TEMPLATE_WORDS = {"The", "River", *(k for k, _ in synthetic.ORG_KINDS), *synthetic.CONTINENTS,
                  *synthetic.LANGUAGES, *(r.split()[0] for r in synthetic.RIVERS)}


def _name_words(records):
    words = set()
    for r in records:
        for title, sents in r["context"]:
            words.update(w for w in re.findall(r"[A-Z][a-z]+", title + " " + " ".join(sents)))
    return words


def test_train_and_test_worlds_are_disjoint(worlds):
    # Style "syllables" (the default): no title and no name word is shared.
    train, test = worlds
    titles = [{t for r in recs for t, _ in r["context"]} for recs in (train, test)]
    assert not titles[0] & titles[1]
    shared = _name_words(train) & _name_words(test)
    # Only template and kind words are shared, never a name word.
    allowed = TEMPLATE_WORDS
    assert shared <= allowed, shared - allowed
    assert all(
        synthetic.word_world(w) == "train"
        for w in _name_words(train) - allowed
        if re.fullmatch("(" + "|".join(synthetic.SYLLABLES) + ")+", w.lower())
    )


def test_word_style_worlds_share_words_but_no_title():
    train, test = (synthetic.generate(300, seed=3, split_world=w, names="words")
                   for w in synthetic.WORLDS)
    titles = [{t for r in recs for t, _ in r["context"]} for recs in (train, test)]
    assert not titles[0] & titles[1]
    assert all(synthetic.word_world(t) == "train" for t in titles[0])
    template = TEMPLATE_WORDS
    for recs in (train, test):
        assert _name_words(recs) - template <= set(synthetic.NAME_WORDS)
    assert len(_name_words(train) & _name_words(test) & set(synthetic.NAME_WORDS)) > 100
    # Everything else holds as in the default style.
    for r in test:
        if r["answer"] not in ("yes", "no"):
            assert any(r["answer"] in e.text for e in from_hotpot_json(r).positives)


def test_name_inventories_are_distinct_and_a_full_world_fails_clearly():
    words = synthetic.NAME_WORDS
    assert len(set(words)) == len(words)
    template = TEMPLATE_WORDS
    assert not set(words) & template
    assert len(synthetic.generate(6000, seed=1, split_world="train", names="words")) == 6000
    with pytest.raises(ValueError, match="at most about 7,000 questions per world"):
        synthetic.generate(12_000, seed=1, split_world="train", names="words")
    with pytest.raises(ValueError, match="names must be one of"):
        synthetic.generate(10, names="letters")


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
    synthetic.main([f"--out={tmp_path / 'd.json'}", *args, "--names=words"])
    titles = {t for r in json.loads((tmp_path / "d.json").read_text()) for t, _ in r["context"]}
    assert all(set(t.split()) <= {*synthetic.NAME_WORDS, *synthetic.INDUSTRY_OF_SUFFIX}
               for t in titles)


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
