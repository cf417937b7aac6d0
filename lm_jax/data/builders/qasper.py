"""TFDS builder `longbench_qasper` (LongBench's Qasper task, Bai et al. 2024; Dasigi et al. 2021).

LongBench's data/qasper.jsonl (and qasper_e.jsonl for LongBench-E): one JSON object per line
`{"input": question, "context": the paper's full text, "answers": [str, ...], "length": int,
"dataset": "qasper", "language": "en", "all_classes": null, "_id": str}`. The metric is
LongBench's qa_f1_score: token F1 with SQuAD normalisation, max over `answers`
(lm_jax.eval.metrics.qasper_f1). The document is stored as `context` (one text feature).
"""

from __future__ import annotations

from typing import Any

import tensorflow_datasets as tfds

from lm_jax.data.builders import base, open_qa, readers, validation
from lm_jax.data.builders.report import TIER_VALIDATED


class LongbenchQasper(open_qa.OpenQABuilder):
    """Qasper as packaged by LongBench: questions over one NLP paper each."""

    name = "longbench_qasper"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Validated LongBench qasper records with the full context."}
    BUILDER_CONFIGS = [
        base.SourceBuilderConfig(name="default", split_files={"test": "qasper.jsonl"}),
        base.SourceBuilderConfig(name="e", split_files={"test": "qasper_e.jsonl"}),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Put LongBench's qasper.jsonl (data.zip of THUDM/LongBench) in manual_dir.
    """
    HOMEPAGE = "https://github.com/THUDM/LongBench"
    DESCRIPTION = "LongBench-Qasper: single-document QA over scientific papers (F1)."
    EXTRA_FEATURES = {"context": tfds.features.Text()}

    def open_reader(self, path: str):
        return readers.JsonLinesReader(path)

    def make_record(self, raw: dict[str, Any], source_index: int) -> open_qa.OpenQARecord:
        rid = open_qa.require(raw, "_id", lambda v: isinstance(v, str))
        question = open_qa.require(raw, "input", lambda v: isinstance(v, str))
        context = open_qa.require(raw, "context", lambda v: isinstance(v, str))
        answers = open_qa.require(raw, "answers", open_qa.is_str_list)
        if not context.strip():
            raise validation.DropRecord(TIER_VALIDATED, "empty_context")
        metadata = {k: raw[k] for k in ("length", "dataset", "language") if k in raw}
        return open_qa.OpenQARecord(
            id=rid, question=question, answers=list(answers), metadata=metadata,
            extras={"context": context},
        )
