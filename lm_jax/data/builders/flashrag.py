"""TFDS builder `flashrag` for QA sets in the FlashRAG JSONL layout (RUC-NLPIR/FlashRAG).

One JSON object per line: `{"id": str, "question": str, "golden_answers": [str, ...],
"metadata": {...}?}` (metadata optional; kept as JSON). manual_dir is one FlashRAG dataset
folder: train.jsonl, dev.jsonl (split `validation`) and/or test.jsonl. A broken line is
dropped (`invalid_json`), not the file.
"""

from __future__ import annotations

from typing import Any

import tensorflow_datasets as tfds

from lm_jax.data.builders import base, open_qa, readers


class Flashrag(open_qa.OpenQABuilder):
    """Any QA set stored in FlashRAG's unified JSONL layout (nq, triviaqa, popqa, ...)."""

    name = "flashrag"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Validated records of the FlashRAG layout."}
    BUILDER_CONFIGS = [
        base.SourceBuilderConfig(
            name="default",
            split_files={"train": "train.jsonl", "validation": "dev.jsonl", "test": "test.jsonl"},
        )
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    manual_dir = one FlashRAG dataset folder (train.jsonl / dev.jsonl / test.jsonl).
    """
    HOMEPAGE = "https://github.com/RUC-NLPIR/FlashRAG"
    DESCRIPTION = "A QA set in the FlashRAG JSONL layout {id, question, golden_answers}."

    def open_reader(self, path: str):
        return readers.JsonLinesReader(path)

    def make_record(self, raw: dict[str, Any], source_index: int) -> open_qa.OpenQARecord:
        rid = open_qa.require(raw, "id", lambda v: isinstance(v, str | int) and
                              not isinstance(v, bool))
        question = open_qa.require(raw, "question", lambda v: isinstance(v, str))
        answers = open_qa.require(raw, "golden_answers", open_qa.is_str_list)
        metadata = raw.get("metadata", {})
        if not isinstance(metadata, dict):
            metadata = {"metadata": metadata}
        return open_qa.OpenQARecord(
            id=str(rid), question=question, answers=list(answers), metadata=metadata
        )
