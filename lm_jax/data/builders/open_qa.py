"""Shared TFDS builder for open-domain QA sets: a question and several gold answers, no pool.

NQ-open, TriviaQA, PopQA, FlashRAG files and LongBench-Qasper have no per-question candidate
sentences: their evidence comes from a corpus (dpr_corpus.py) or, for Qasper, one long
document. A record is

  {"id", "question", "answers": [gold strings, deduplicated, source order], "source_index",
   "metadata": JSON text of the source's other fields, **EXTRA_FEATURES}

Checks (tier 1, in order): the dataset's own field checks (`missing_field:<f>`,
`wrong_type:<f>`), then `empty_id`, `empty_question`, `empty_answer` (no non-blank gold), then
`duplicate_id`. Blank and repeated gold strings are removed and counted in the notes.
Tier 2 has no check: every valid record can be evaluated.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from lm_jax.data.builders import base, validation
from lm_jax.data.builders.report import TIER_VALIDATED


@dataclasses.dataclass
class OpenQARecord:
    """A validated open-domain QA record.

    answers: the gold strings (any one is correct; metrics take the max over them).
    metadata: JSON-able extra fields of the source, stored as one JSON string.
    extras: values of the builder's EXTRA_FEATURES.
    """

    id: str
    question: str
    answers: list[str]
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)


def require(raw: dict[str, Any], key: str, check) -> Any:
    """raw[key] if present and check(value), else DropRecord(missing_field / wrong_type)."""
    if key not in raw:
        raise validation.DropRecord(TIER_VALIDATED, f"missing_field:{key}")
    if not check(raw[key]):
        raise validation.DropRecord(TIER_VALIDATED, f"wrong_type:{key}")
    return raw[key]


def is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


class OpenQABuilder(base.ValidatedBuilder, skip_registration=True):
    """Base of the open-domain QA builders; a subclass implements `make_record(raw, i)`."""

    EXTRA_FEATURES: dict[str, Any] = {}

    def features(self) -> dict[str, Any]:
        text = tfds.features.Text()
        return {
            "id": text,
            "question": text,
            "answers": tfds.features.Sequence(text),
            "source_index": np.int64,
            "metadata": text,
            **self.EXTRA_FEATURES,
        }

    def make_record(self, raw: dict[str, Any], source_index: int) -> OpenQARecord:
        """The record from one raw object (fields checked with `require`)."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_record")

    def parse(self, value: Any, notes, source_index: int) -> OpenQARecord:
        rec = self.make_record(validation.check_raw(value), source_index)
        if not rec.id.strip():
            raise validation.DropRecord(TIER_VALIDATED, "empty_id")
        if not rec.question.strip():
            raise validation.DropRecord(TIER_VALIDATED, "empty_question")
        answers: list[str] = []
        for a in rec.answers:
            if not a.strip():
                notes("blank_answer", 1)
            elif a in answers:
                notes("duplicate_answer", 1)
            else:
                answers.append(a)
        if not answers:
            raise validation.DropRecord(TIER_VALIDATED, "empty_answer")
        rec.answers = answers
        return rec

    def record_id(self, rec: OpenQARecord) -> str:
        return rec.id

    def to_features(self, rec: OpenQARecord, source_index: int) -> dict[str, Any]:
        return {
            "id": rec.id,
            "question": rec.question,
            "answers": rec.answers,
            "source_index": source_index,
            "metadata": json.dumps(rec.metadata, ensure_ascii=False, sort_keys=True),
            **rec.extras,
        }


def gold_answers(record: dict[str, Any]) -> list[str]:
    """The gold strings of one decoded record of any lm_jax QA builder (bytes or str).

    Open-domain builders store `answers`; the multi-hop ones store `answer` and, for MuSiQue,
    `answer_aliases`.
    """

    def text(v):
        return v.decode("utf-8") if isinstance(v, bytes) else str(v)

    if "answers" in record:
        return [text(a) for a in record["answers"]]
    golds = [text(record["answer"])]
    golds += [a for a in map(text, record.get("answer_aliases", [])) if a not in golds]
    return golds
