"""EM / F1 / Recall@k / Precision@k against hand-computed values."""

import math

import pytest

from lm_jax.eval.metrics import (
    accuracy_by_class,
    aggregate,
    exact_match,
    f1_score,
    mean,
    normalize_answer,
    precision_at_k,
    recall_at_k,
    score_example,
    token_class,
)


@pytest.mark.parametrize(
    "raw, norm",
    [
        ("The Eiffel Tower", "eiffel tower"),
        ("  an   apple, a pear!  ", "apple pear"),
        ("Theatre", "theatre"),  # 'the' inside a word stays
        ("U.S.A.", "usa"),
        ("A", ""),
        ("rock-'n'-roll", "rocknroll"),
    ],
)
def test_normalize(raw, norm):
    assert normalize_answer(raw) == norm


def test_exact_match():
    assert exact_match("the Beatles.", "Beatles") == 1.0
    assert exact_match("Beatles band", "Beatles") == 0.0
    assert exact_match("Paris", ["London", "paris"]) == 1.0


def test_f1_hand_computed():
    # pred tokens: [new, york, city]; gold: [york, city, usa] -> overlap 2, P = R = 2/3.
    assert f1_score("New York City", "York City, USA") == pytest.approx(2 / 3)
    # pred [barack, obama], gold [obama] -> P = 1/2, R = 1, F1 = 2/3.
    assert f1_score("Barack Obama", "Obama") == pytest.approx(2 / 3)
    # Articles and punctuation are ignored: identical after normalisation.
    assert f1_score("The cat!", "a cat") == 1.0
    # Repeated tokens count with multiplicity: pred [a?] -> [cat, cat], gold [cat] -> P=1/2, R=1.
    assert f1_score("cat cat", "cat") == pytest.approx(2 / 3)
    assert f1_score("dog", "cat") == 0.0
    assert f1_score("", "cat") == 0.0
    assert f1_score("Obama", ["Bush", "Barack Obama"]) == pytest.approx(2 / 3)


def test_f1_yes_no_special_case():
    assert f1_score("yes", "no") == 0.0
    assert f1_score("Yes.", "yes") == 1.0
    # Token overlap would give 2/3 ("no" in both); HotpotQA zeroes it.
    assert f1_score("no answer", "no") == 0.0
    assert f1_score("no", "no way") == 0.0
    assert f1_score("noanswer", "no answer") == 0.0
    assert exact_match("no", "No!") == 1.0


def test_recall_precision_at_k():
    retrieved = ["s1", "s9", "s3", "s4", "s5", "s2"]
    gold = {"s1", "s2", "s3"}
    assert recall_at_k(retrieved, gold, 5) == pytest.approx(2 / 3)
    assert precision_at_k(retrieved, gold, 5) == pytest.approx(2 / 5)
    assert recall_at_k(retrieved, gold, 6) == 1.0
    assert recall_at_k(retrieved, gold, 1) == pytest.approx(1 / 3)
    assert precision_at_k(retrieved, gold, 1) == 1.0
    assert precision_at_k(["s1"], gold, 5) == pytest.approx(1 / 5)  # short list: denominator k
    assert recall_at_k(retrieved, [], 5) is None
    assert recall_at_k([3, 1, 2], [1, 2], 2) == 0.5
    with pytest.raises(ValueError):
        precision_at_k(retrieved, gold, 0)


def test_aggregate_and_mean():
    recs = [
        score_example("Paris", "paris", retrieved=[1, 2, 3], gold_items=[1, 5], k=2),
        score_example("Lyon", "paris", retrieved=[5, 1, 3], gold_items=[1, 5], k=2),
        score_example("yes", "no"),
    ]
    out = aggregate(recs)
    assert out["n"] == 3
    assert out["em"] == pytest.approx(1 / 3) and out["f1"] == pytest.approx(1 / 3)
    assert out["recall_at_k"] == pytest.approx((0.5 + 1.0) / 2)
    assert out["precision_at_k"] == pytest.approx((0.5 + 1.0) / 2)
    assert mean([None, float("nan")]) is None
    assert mean([1, None, 2]) == 1.5
    assert not math.isnan(aggregate([{"x": None}, {"x": 2.0}])["x"])


@pytest.mark.parametrize("text, cls", [
    (" Keystone", "capitalized"), ("Mira", "capitalized"), (" 7", "digits"), ("1963", "digits"),
    (" was", "other"), (".", "other"), ("", "other"), ("<|eos|>", "other"), (" 3rd", "other"),
    ("Émile", "capitalized"),
])
def test_token_class(text, cls):
    assert token_class(text) == cls


def test_accuracy_by_class_hand_computed():
    correct = [True, False, True, True, False]
    classes = ["capitalized", "capitalized", "other", "other", "other"]
    out = accuracy_by_class(correct, classes)
    assert out["all"] == pytest.approx(3 / 5)
    assert out["capitalized"] == pytest.approx(1 / 2)
    assert out["other"] == pytest.approx(2 / 3)
    assert out["digits"] is None  # no digit tokens: no figure rather than a misleading 0


def test_benchmark_answer_rules():
    from lm_jax.eval import metrics as m

    golds = ["14 December 1972 UTC", "December 1972"]
    assert m.exact_match("december 1972.", golds) == 1.0
    assert m.squad_f1("in December 1972", golds) == pytest.approx(0.8)
    # HotpotQA's rule zeroes "no" vs "no answer"; SQuAD/LongBench's gives token credit.
    assert m.f1_score("no", "no answer") == 0.0
    assert m.squad_f1("no", "no answer") == pytest.approx(2 / 3)
    assert m.qasper_f1("They use SQuAD", ["unanswerable", "SQuAD"]) == pytest.approx(0.5)
    assert m.contains_answer("He was a Politician.", ["politician", "pol"]) == 1.0
    assert m.contains_answer("He was a teacher.", ["politician"]) == 0.0
    assert m.score_answer("pop_qa/default", "he is a politician", ["politician"]) == {
        "accuracy": 1.0, "em": 0.0}
    assert m.score_answer("nq_open", "Bob Russell", ["Bobby Scott", "Bob Russell"]) == {
        "em": 1.0, "squad_f1": 1.0}
    with pytest.raises(ValueError, match="no answer metrics"):
        m.score_answer("wice", "supported", ["supported"])


def test_wice_label_accuracy():
    from lm_jax.eval import metrics as m

    assert m.parse_wice_label("The claim is NOT supported.") == "not_supported"
    assert m.parse_wice_label("partially-supported") == "partially_supported"
    assert m.parse_wice_label("Supported; not supported elsewhere") == "supported"
    assert m.parse_wice_label("unclear") is None
    preds = ["supported", "Not supported", "unclear", "partially supported"]
    golds = ["supported", "not_supported", "supported", "supported"]
    assert m.label_accuracy(preds, golds) == 0.5
    assert m.label_accuracy([], []) is None
    with pytest.raises(ValueError, match="predictions"):
        m.label_accuracy(["x"], [])
