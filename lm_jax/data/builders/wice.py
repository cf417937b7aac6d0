"""TFDS builder `wice` (WiCE, Kamoi et al., EMNLP 2023), from the official JSONL files.

github.com/ryokamoi/wice, data/entailment_retrieval/{claim,subclaim}/{train,dev,test}.jsonl:
one object per line `{"label": "supported" | "partially_supported" | "not_supported",
"supporting_sentences": [[i, j, ...], ...] (each list alone supports the claim; indices into
evidence), "claim": str, "evidence": [sentence, ...], "meta": {"id", "claim_title",
"claim_section", "claim_context", ...}}`. The metric is label accuracy
(lm_jax.eval.metrics.label_accuracy).

Stored: id (meta.id), claim, label, evidence sentences, the supporting sets flattened
(`supporting_sentences` + `supporting_set_sizes`), claim_title/claim_context. Checks (tier 1):
missing/wrong fields, `empty_id`, `empty_question` (blank claim), `unknown_label`,
`empty_context` (no non-blank evidence sentence), `supporting_index_out_of_range`,
`duplicate_id`. A supported/partially-supported claim without a supporting set is noted.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from lm_jax.data.builders import base, open_qa, readers, validation
from lm_jax.data.builders.report import TIER_VALIDATED

LABELS = ("supported", "partially_supported", "not_supported")


def _config(name: str) -> base.SourceBuilderConfig:
    return base.SourceBuilderConfig(
        name=name,
        split_files={
            "train": f"{name}/train.jsonl",
            "validation": f"{name}/dev.jsonl",
            "test": f"{name}/test.jsonl",
        },
    )


def _is_index_sets(v: Any) -> bool:
    return isinstance(v, list) and all(
        isinstance(s, list) and all(validation.is_int(i) for i in s) for s in v
    )


@dataclasses.dataclass
class WiceRecord:
    id: str
    claim: str
    label: str
    evidence: list[str]
    supporting_sets: list[list[int]]
    claim_title: str
    claim_context: str


class Wice(base.ValidatedBuilder):
    """WiCE: is a Wikipedia claim supported by its cited web article's sentences?"""

    name = "wice"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Validated entailment_retrieval records."}
    BUILDER_CONFIGS = [_config("claim"), _config("subclaim")]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    manual_dir = the repository's data/entailment_retrieval folder (claim/, subclaim/).
    """
    HOMEPAGE = "https://github.com/ryokamoi/wice"
    DESCRIPTION = "WiCE: real-world entailment for claims in Wikipedia (3 labels)."
    CITATION = """@inproceedings{kamoi2023wice,
  title={{WiCE}: Real-World Entailment for Claims in {W}ikipedia},
  author={Kamoi, Ryo and Goyal, Tanya and Rodriguez, Juan Diego and Durrett, Greg},
  booktitle={EMNLP}, year={2023}
}"""

    def features(self) -> dict[str, Any]:
        text = tfds.features.Text()
        return {
            "id": text,
            "claim": text,
            "label": text,
            "source_index": np.int64,
            "evidence": tfds.features.Sequence(text),
            "supporting_sentences": tfds.features.Sequence(np.int32),
            "supporting_set_sizes": tfds.features.Sequence(np.int32),
            "claim_title": text,
            "claim_context": text,
        }

    def open_reader(self, path: str):
        return readers.JsonLinesReader(path)

    def parse(self, value: Any, notes, source_index: int) -> WiceRecord:
        raw = validation.check_raw(value)
        label = open_qa.require(raw, "label", validation.is_str)
        sets = open_qa.require(raw, "supporting_sentences", _is_index_sets)
        claim = open_qa.require(raw, "claim", validation.is_str)
        evidence = open_qa.require(raw, "evidence", open_qa.is_str_list)
        meta = open_qa.require(raw, "meta", lambda v: isinstance(v, dict))
        rid = meta.get("id")
        if not isinstance(rid, str):
            raise validation.DropRecord(TIER_VALIDATED, "missing_field:meta.id")
        if not rid.strip():
            raise validation.DropRecord(TIER_VALIDATED, "empty_id")
        if not claim.strip():
            raise validation.DropRecord(TIER_VALIDATED, "empty_question")
        if label not in LABELS:
            raise validation.DropRecord(TIER_VALIDATED, "unknown_label")
        if not any(s.strip() for s in evidence):
            raise validation.DropRecord(TIER_VALIDATED, "empty_context")
        if any(not 0 <= i < len(evidence) for s in sets for i in s):
            raise validation.DropRecord(TIER_VALIDATED, "supporting_index_out_of_range")
        if label != "not_supported" and not sets:
            notes("supported_without_supporting_set", 1)
        return WiceRecord(
            id=rid, claim=claim, label=label, evidence=list(evidence),
            supporting_sets=[list(s) for s in sets],
            claim_title=str(meta.get("claim_title", "")),
            claim_context=str(meta.get("claim_context", "")),
        )

    def record_id(self, rec: WiceRecord) -> str:
        return rec.id

    def to_features(self, rec: WiceRecord, source_index: int) -> dict[str, Any]:
        return {
            "id": rec.id,
            "claim": rec.claim,
            "label": rec.label,
            "source_index": source_index,
            "evidence": rec.evidence,
            "supporting_sentences": [i for s in rec.supporting_sets for i in s],
            "supporting_set_sizes": [len(s) for s in rec.supporting_sets],
            "claim_title": rec.claim_title,
            "claim_context": rec.claim_context,
        }
