"""QA and retrieval metrics: EM / token F1 (SQuAD/HotpotQA normalisation), Recall@k, Precision@k.

Answer normalisation follows the official SQuAD v1.1 / HotpotQA scripts: lowercase, drop
punctuation, drop the articles a/an/the, collapse whitespace. F1 adds HotpotQA's special case: if
either normalised answer is "yes", "no" or "noanswer" and the two differ, F1 is 0 (token overlap
would otherwise reward "no" against "yes" or "no answer").
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_SPECIAL = ("yes", "no", "noanswer")


def normalize_answer(s: str) -> str:
    """Lowercase, remove punctuation, remove articles (a/an/the), collapse whitespace."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def _golds(gold: str | Sequence[str]) -> list[str]:
    golds = [gold] if isinstance(gold, str) else list(gold)
    if not golds:
        raise ValueError("no gold answer given")
    return golds


def _em_one(pred: str, gold: str) -> float:
    return float(normalize_answer(pred) == normalize_answer(gold))


def _f1_one(pred: str, gold: str) -> float:
    p, g = normalize_answer(pred), normalize_answer(gold)
    if (p in _SPECIAL or g in _SPECIAL) and p != g:
        return 0.0
    pt, gt = p.split(), g.split()
    common = Counter(pt) & Counter(gt)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pt), same / len(gt)
    return 2 * precision * recall / (precision + recall)


def exact_match(pred: str, gold: str | Sequence[str]) -> float:
    """1.0 if the normalised prediction equals a normalised gold answer (any gold), else 0.0."""
    return max(_em_one(pred, g) for g in _golds(gold))


def f1_score(pred: str, gold: str | Sequence[str]) -> float:
    """Token F1 of normalised answers (max over golds), with HotpotQA's yes/no/noanswer rule."""
    return max(_f1_one(pred, g) for g in _golds(gold))


def squad_f1(pred: str, gold: str | Sequence[str]) -> float:
    """Token F1 of normalised answers, max over golds, WITHOUT HotpotQA's yes/no rule.

    The rule of the SQuAD v1.1 script, MuSiQue's and LongBench's `qa_f1_score` (used for
    NQ-open, TriviaQA, MuSiQue and Qasper): "no" against "no answer" gets partial credit.
    """
    out = 0.0
    for g in _golds(gold):
        pt, gt = normalize_answer(pred).split(), normalize_answer(g).split()
        same = sum((Counter(pt) & Counter(gt)).values())
        if same:
            precision, recall = same / len(pt), same / len(gt)
            out = max(out, 2 * precision * recall / (precision + recall))
    return out


def qasper_f1(pred: str, gold: str | Sequence[str]) -> float:
    """LongBench-Qasper's metric (LongBench `qa_f1_score`, max over the answers)."""
    return squad_f1(pred, gold)


def contains_answer(pred: str, gold: str | Sequence[str]) -> float:
    """PopQA's accuracy: 1.0 if any gold string, as is, lower-cased or capitalised, occurs in
    the raw generation (AlexTMallen/adaptive-retrieval run_model.py), else 0.0."""
    return float(
        any(g in pred or g.lower() in pred or g.capitalize() in pred for g in _golds(gold))
    )


WICE_LABELS = ("partially_supported", "not_supported", "supported")


def parse_wice_label(text: str) -> str | None:
    """The WiCE label a generation names: the first of partially_supported / not_supported /
    supported found in it (case-, space- and underscore-insensitive, longest labels first so
    "not supported" is not read as "supported"); None if it names none."""
    t = " ".join(text.lower().replace("_", " ").replace("-", " ").split())
    hits = [(t.find(lab.replace("_", " ")), -len(lab), lab) for lab in WICE_LABELS]
    hits = [h for h in hits if h[0] >= 0]
    return min(hits)[2] if hits else None


def label_accuracy(preds: Sequence[str], golds: Sequence[str]) -> float | None:
    """WiCE label accuracy: share of generations whose parsed label equals the gold label
    (a generation naming no label is wrong); None for no examples."""
    if len(preds) != len(golds):
        raise ValueError(f"{len(preds)} predictions for {len(golds)} gold labels")
    if not golds:
        return None
    return sum(parse_wice_label(p) == g for p, g in zip(preds, golds, strict=True)) / len(golds)


# The answer metrics each benchmark's official script defines (EM is max over golds in all).
DATASET_METRICS = {
    "hotpot_qa": ("em", "f1"),
    "two_wiki_multihop_qa": ("em", "f1"),
    "musique": ("em", "squad_f1"),
    "nq_open": ("em", "squad_f1"),
    "trivia_qa": ("em", "squad_f1"),
    "flashrag": ("em", "squad_f1"),
    "pop_qa": ("accuracy", "em"),
    "longbench_qasper": ("qasper_f1",),
}


def score_answer(dataset: str, pred: str, gold: str | Sequence[str]) -> dict[str, float]:
    """The metrics of DATASET_METRICS[dataset] (TFDS name, config optional) for one answer."""
    name = dataset.split("/", 1)[0]
    if name not in DATASET_METRICS:
        raise ValueError(f"no answer metrics for dataset {dataset!r}; known: "
                         f"{sorted(DATASET_METRICS)} (WiCE: label_accuracy)")
    fns = {"em": exact_match, "f1": f1_score, "squad_f1": squad_f1, "qasper_f1": qasper_f1,
           "accuracy": contains_answer}
    return {m: fns[m](pred, gold) for m in DATASET_METRICS[name]}


def recall_at_k(retrieved: Sequence, gold: Iterable, k: int) -> float | None:
    """|top-k retrieved & gold| / |gold|; None when there is no gold item (undefined).

    Args:
      retrieved: item ids in rank order (any hashable ids: bank ids, sentence indices, ...).
      gold: the gold supporting item ids.
      k: cut-off (>= 1).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    gold = set(gold)
    if not gold:
        return None
    return len(set(list(retrieved)[:k]) & gold) / len(gold)


def precision_at_k(retrieved: Sequence, gold: Iterable, k: int) -> float:
    """|top-k retrieved & gold| / k (a short list is not rewarded: the denominator stays k)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return len(set(list(retrieved)[:k]) & set(gold)) / k


def mean(values: Iterable[float | None]) -> float | None:
    """Mean of the values that are not None (or NaN); None if there are none."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return sum(vals) / len(vals) if vals else None


def aggregate(records: Iterable[Mapping[str, float | None]]) -> dict[str, float | int | None]:
    """Per-key means over per-example metric dicts (None skipped), plus ``n`` = record count.

    ``aggregate([{"em": 1, "f1": 1}, {"em": 0, "f1": 0.5}])``
    -> ``{"em": 0.5, "f1": 0.75, "n": 2}``.
    """
    records = list(records)
    keys: list[str] = []
    for r in records:
        keys.extend(k for k in r if k not in keys)
    out: dict[str, float | int | None] = {k: mean(r.get(k) for r in records) for k in keys}
    out["n"] = len(records)
    return out


def score_example(
    pred: str,
    gold: str | Sequence[str],
    retrieved: Sequence | None = None,
    gold_items: Iterable | None = None,
    k: int = 5,
) -> dict[str, float | None]:
    """All per-example metrics: em, f1 and, when retrieval is given, recall_at_k/precision_at_k."""
    out: dict[str, float | None] = {"em": exact_match(pred, gold), "f1": f1_score(pred, gold)}
    if retrieved is not None and gold_items is not None:
        gold_items = list(gold_items)
        out["recall_at_k"] = recall_at_k(retrieved, gold_items, k)
        out["precision_at_k"] = precision_at_k(retrieved, gold_items, k)
    return out


TOKEN_CLASSES = ("capitalized", "digits", "other")


def token_class(text: str) -> str:
    """The class of one decoded token, for reconstruction accuracy by kind of token.

    "capitalized": starts with an upper-case letter (names and titles in English evidence);
    "digits": only digits (years, counts); "other": everything else (function words, relation
    words, punctuation, special tokens). Leading/trailing whitespace is ignored.
    """
    t = text.strip()
    if t.isdigit():
        return "digits"
    if t[:1].isalpha() and t[:1].isupper():
        return "capitalized"
    return "other"


def accuracy_by_class(correct: Sequence[bool], classes: Sequence[str]) -> dict[str, float | None]:
    """Mean of `correct` over all tokens and within each of TOKEN_CLASSES (None if absent).

    Returns {"all": acc, "capitalized": acc, "digits": acc, "other": acc}.
    """
    out: dict[str, float | None] = {"all": mean(float(c) for c in correct)}
    for cls in TOKEN_CLASSES:
        out[cls] = mean(float(c) for c, k in zip(correct, classes) if k == cls)
    return out
