"""Record validation shared by the multi-hop QA builders (HotpotQA now; 2Wiki, MuSiQue later).

A builder turns each raw JSON value into a `QARecord` in three tiers; the first failed check
raises `DropRecord(tier, reason)` and the builder counts the reason in the data report:

  tier 0 (raw):       `invalid_json` (a broken line), `not_an_object`, `invalid_utf8`
  tier 1 (validated): `missing_field:<f>`, `wrong_type:<f>`, `empty_id`, `empty_question`,
                      `empty_answer`, `empty_context`, `unknown_supporting_title`,
                      `supporting_index_out_of_range`, `duplicate_id`
  tier 2 (training):  `no_supporting_sentence`

Checks run in that order, so a record with several problems is dropped for the first one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from lm_jax.data.builders.report import TIER_RAW, TIER_TRAINING, TIER_VALIDATED


class DropRecord(Exception):
    """Raised by a check: the record is dropped from the build for `reason` at `tier`."""

    def __init__(self, tier: str, reason: str):
        super().__init__(f"{tier}: {reason}")
        self.tier = tier
        self.reason = reason


# ---------------------------------------------------------------- tier 0: raw values


def _walk_strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _walk_strings(k)
            yield from _walk_strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _walk_strings(v)


def check_raw(value: Any) -> dict[str, Any]:
    """Tier 0: the value must be a JSON object whose strings are all valid UTF-8.

    The JSON reader decodes bytes with errors='surrogateescape', so invalid bytes become lone
    surrogates; a JSON escape of a lone surrogate (e.g. "\\ud800") is not valid text either.
    Both fail `str.encode('utf-8')`, which is the test used here.
    """
    if not isinstance(value, dict):
        raise DropRecord(TIER_RAW, "not_an_object")
    try:
        for s in _walk_strings(value):
            s.encode("utf-8")
    except UnicodeEncodeError:
        raise DropRecord(TIER_RAW, "invalid_utf8") from None
    return value


# ---------------------------------------------------------------- tier 1: fields and types


def is_str(v: Any) -> bool:
    return isinstance(v, str)


def is_int(v: Any) -> bool:
    # JSON true/false load as bool, a subclass of int: not a sentence index.
    return isinstance(v, int) and not isinstance(v, bool)


def is_context(v: Any) -> bool:
    """[[title: str, [sentence: str, ...]], ...] (HotpotQA / 2Wiki layout)."""
    return isinstance(v, list) and all(
        isinstance(p, list | tuple)
        and len(p) == 2
        and is_str(p[0])
        and isinstance(p[1], list)
        and all(is_str(s) for s in p[1])
        for p in v
    )


def is_supporting_facts(v: Any) -> bool:
    """[[title: str, sentence_index: int], ...]."""
    return isinstance(v, list) and all(
        isinstance(f, list | tuple) and len(f) == 2 and is_str(f[0]) and is_int(f[1]) for f in v
    )


@dataclasses.dataclass(frozen=True)
class Field:
    """One required raw field: its key in the raw JSON, its canonical name and its type check."""

    source: str
    name: str
    check: Callable[[Any], bool]


def extract_fields(raw: dict[str, Any], fields: Sequence[Field]) -> dict[str, Any]:
    """Tier 1 schema check: every field present (checked first, in order), then every type."""
    for f in fields:
        if f.source not in raw:
            raise DropRecord(TIER_VALIDATED, f"missing_field:{f.source}")
    for f in fields:
        if not f.check(raw[f.source]):
            raise DropRecord(TIER_VALIDATED, f"wrong_type:{f.source}")
    return {f.name: raw[f.source] for f in fields}


@dataclasses.dataclass
class QARecord:
    """A validated multi-hop QA record in the canonical (HotpotQA-like) shape.

    context: [(title, [sentence, ...]), ...] in document order, sentences as in the source
      (HotpotQA keeps a leading space on every sentence but the first).
    supporting_facts: [(title, sentence_index), ...] as in the source.
    """

    id: str
    question: str
    answer: str
    type: str
    level: str
    context: list[tuple[str, list[str]]]
    supporting_facts: list[tuple[str, int]]
    # Features beyond the HotpotQA shape (a builder's EXTRA_FEATURES), already in TFDS form.
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_features(self, source_index: int) -> dict[str, Any]:
        """The TFDS feature dict. Nested ragged sequences need TensorFlow to serialise, so the
        context is stored flat: one row per paragraph (title, num_sentences) plus the list
        of all sentences in paragraph order."""
        return {
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
            "type": self.type,
            "level": self.level,
            "source_index": source_index,
            "context": {
                "title": [t for t, _ in self.context],
                "num_sentences": [len(s) for _, s in self.context],
            },
            "sentences": [s for _, sents in self.context for s in sents],
            "supporting_facts": {
                "title": [t for t, _ in self.supporting_facts],
                "sent_id": [i for _, i in self.supporting_facts],
            },
            **self.extras,
        }


def _blank(s: str) -> bool:
    return not s.strip()


def check_content(rec: QARecord, *, strict_supporting: bool, notes: Callable[[str, int], None]):
    """Tier 1 content checks.

    strict_supporting: a supporting fact whose title is not in the context drops the record
      (distractor setting: the gold paragraphs are always given). When False (fullwiki: the
      context is what a retriever found, and often misses gold paragraphs) such facts are only
      counted in the notes as `supporting_fact_not_in_context`.
    A supporting fact whose title IS in the context but whose index is out of range is always
    a data error.
    """
    if _blank(rec.id):
        raise DropRecord(TIER_VALIDATED, "empty_id")
    if _blank(rec.question):
        raise DropRecord(TIER_VALIDATED, "empty_question")
    if _blank(rec.answer):
        raise DropRecord(TIER_VALIDATED, "empty_answer")
    if not any(not _blank(s) for _, sents in rec.context for s in sents):
        raise DropRecord(TIER_VALIDATED, "empty_context")
    lengths: dict[str, list[int]] = {}
    for title, sents in rec.context:
        lengths.setdefault(title, []).append(len(sents))
    for title, idx in rec.supporting_facts:
        if title not in lengths:
            if strict_supporting:
                raise DropRecord(TIER_VALIDATED, "unknown_supporting_title")
            notes("supporting_fact_not_in_context", 1)
        elif not any(0 <= idx < n for n in lengths[title]):
            raise DropRecord(TIER_VALIDATED, "supporting_index_out_of_range")
    notes("duplicate_context_title", sum(len(v) - 1 for v in lengths.values()))
    notes("duplicate_supporting_fact", len(rec.supporting_facts) - len(set(rec.supporting_facts)))
    notes("blank_sentence", sum(_blank(s) for _, sents in rec.context for s in sents))


def count_positives(rec: QARecord) -> int:
    """Number of distinct non-blank context sentences named by a supporting fact."""
    facts = set(rec.supporting_facts)
    return sum(
        1
        for title, sents in rec.context
        for i, s in enumerate(sents)
        if (title, i) in facts and not _blank(s)
    )


def check_trainable(rec: QARecord, *, min_positives: int) -> None:
    """Tier 2: a training example needs at least `min_positives` positive sentences."""
    if count_positives(rec) < min_positives:
        raise DropRecord(TIER_TRAINING, "no_supporting_sentence")
