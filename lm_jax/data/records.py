"""The normalised view of one QA record: a question, its answer and its evidence items.

Everything downstream (the Grain encoder, evaluation, the memory export) reads `QAExample`,
never raw TFDS dicts, so a new dataset or evidence kind only has to produce this view.

Evidence = the context sentences, in document order (paragraph by paragraph), each stripped
of surrounding whitespace; blank sentences are skipped (they carry nothing to compress).
A sentence is supporting when (title, sentence index in its paragraph) is a supporting fact.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class EvidenceItem:
    """One evidence item: a sentence of a titled paragraph (later: an image, see `image`)."""

    title: str
    text: str
    is_supporting: bool
    # Reserved for image evidence (multimodal setting); always None for text evidence.
    image: Any | None = None

    def render(self) -> str:
        """The text the compressor sees: "Title: sentence" (METHOD.md §2)."""
        return f"{self.title}: {self.text}"


@dataclasses.dataclass(frozen=True)
class QAExample:
    """A question with its answer and candidate evidence (supporting + non-supporting)."""

    id: str
    question: str
    answer: str
    type: str
    level: str
    evidence: list[EvidenceItem]

    @property
    def positives(self) -> list[EvidenceItem]:
        return [e for e in self.evidence if e.is_supporting]

    @property
    def negatives(self) -> list[EvidenceItem]:
        return [e for e in self.evidence if not e.is_supporting]


def _text(v: Any) -> str:
    # TFDS numpy data sources return text as bytes (or a 0-d bytes array).
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if hasattr(v, "item"):
        return _text(v.item())
    return str(v)


def build_evidence(
    context: Iterable[tuple[str, Sequence[str]]],
    supporting_facts: Iterable[tuple[str, int]],
) -> list[EvidenceItem]:
    """Evidence items from paragraphs [(title, [sentence, ...])] and facts [(title, idx)].

    A title that occurs twice in a context marks the same index in both paragraphs (the
    facts cannot tell them apart).
    """
    facts = {(t, int(i)) for t, i in supporting_facts}
    items = []
    for title, sents in context:
        for i, s in enumerate(sents):
            text = s.strip()
            if text:
                items.append(EvidenceItem(title.strip(), text, (title, i) in facts))
    return items


def from_tfds_record(record: Mapping[str, Any]) -> QAExample:
    """Decodes one record of the `hotpot_qa` TFDS data source (bytes / numpy) to a QAExample.

    The builder stores the context flat: `context/title`, `context/num_sentences` per
    paragraph and all `sentences` in paragraph order.
    """
    titles = [_text(t) for t in record["context"]["title"]]
    counts = [int(n) for n in record["context"]["num_sentences"]]
    flat = [_text(s) for s in record["sentences"]]
    if sum(counts) != len(flat):
        raise ValueError(
            f"record {_text(record['id'])!r}: num_sentences sum to {sum(counts)} but "
            f"{len(flat)} sentences are stored"
        )
    context, start = [], 0
    for title, n in zip(titles, counts, strict=True):
        context.append((title, flat[start : start + n]))
        start += n
    sf = record["supporting_facts"]
    facts = [(_text(t), int(i)) for t, i in zip(sf["title"], sf["sent_id"], strict=True)]
    return QAExample(
        id=_text(record["id"]),
        question=_text(record["question"]).strip(),
        answer=_text(record["answer"]).strip(),
        type=_text(record["type"]),
        level=_text(record["level"]),
        evidence=build_evidence(context, facts),
    )


def from_hotpot_json(obj: Mapping[str, Any]) -> QAExample:
    """A QAExample straight from one raw HotpotQA JSON record (no validation: use the builder
    for real data; this is for small in-memory data and tests)."""
    return QAExample(
        id=obj["_id"],
        question=obj["question"].strip(),
        answer=obj["answer"].strip(),
        type=obj["type"],
        level=obj["level"],
        evidence=build_evidence(
            [(t, s) for t, s in obj["context"]], [(t, i) for t, i in obj["supporting_facts"]]
        ),
    )


def load_examples(
    data_dir: str | os.PathLike,
    name: str = "hotpot_qa/distractor",
    split: str = "validation",
) -> list[QAExample]:
    """All examples of a prepared split, in split order (index i = the split's record i)."""
    import tensorflow_datasets as tfds

    import lm_jax.data.builders  # noqa: F401  (registers the builders)

    source = tfds.builder(name, data_dir=os.fspath(data_dir)).as_data_source(split=split)
    out: list[QAExample] = []
    for start in range(0, len(source), 1024):  # batched reads: far fewer file seeks
        keys = list(range(start, min(start + 1024, len(source))))
        out += [from_tfds_record(r) for r in source.__getitems__(keys)]
    return out
