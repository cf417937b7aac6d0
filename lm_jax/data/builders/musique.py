"""TFDS builder `musique` (MuSiQue-Ans, Trivedi et al., TACL 2022), from the official JSONL.

Each line: {id, paragraphs: [{idx, title, paragraph_text, is_supporting}] (20),
question, question_decomposition: [{id, question, answer, paragraph_support_idx}], answer,
answer_aliases, answerable}. A broken line is dropped (`invalid_json`), not the file.

Evidence items are whole paragraphs (MuSiQue does not split them into sentences). MuSiQue
titles repeat within a question (several paragraphs of one article; 13 times in the first
50 dev questions), and supporting facts in the HotpotQA layout are (title, index): so
paragraphs are grouped by title, in order of first appearance, and paragraph j of a title's
group is its "sentence" j. Each evidence item is then marked exactly by `is_supporting`.
`paragraph_idx` keeps each stored paragraph's original `idx`, `answer_aliases` the aliases.
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from lm_jax.data.builders import base, readers, validation
from lm_jax.data.builders.report import TIER_VALIDATED


def is_paragraphs(v: Any) -> bool:
    return isinstance(v, list) and all(
        isinstance(p, dict)
        and validation.is_int(p.get("idx"))
        and validation.is_str(p.get("title"))
        and validation.is_str(p.get("paragraph_text"))
        and isinstance(p.get("is_supporting"), bool)
        for p in v
    )


def is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def is_decomposition(v: Any) -> bool:
    return isinstance(v, list) and all(
        isinstance(d, dict) and (d.get("paragraph_support_idx") is None
                                 or validation.is_int(d.get("paragraph_support_idx")))
        for d in v
    )


class Musique(base.MultiHopQABuilder):
    """MuSiQue-Ans: 2-4 hop questions composed from single-hop ones, 20 paragraphs each."""

    name = "musique"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Validated records; paragraphs grouped by title; aliases."}
    BUILDER_CONFIGS = [
        base.QABuilderConfig(
            name="ans",
            split_files={
                "train": "musique_ans_v1.0_train.jsonl",
                "validation": "musique_ans_v1.0_dev.jsonl",
            },
            strict_supporting=True,
            min_positives=1,
        )
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Put musique_ans_v1.0_train.jsonl and/or musique_ans_v1.0_dev.jsonl (from
    https://github.com/StonyBrookNLP/musique, Google Drive) in manual_dir.
    """
    HOMEPAGE = "https://github.com/StonyBrookNLP/musique"
    DESCRIPTION = "MuSiQue-Ans: answerable multi-hop questions with 20 candidate paragraphs."
    CITATION = """@article{trivedi2022musique,
  title={{MuSiQue}: Multihop Questions via Single-hop Question Composition},
  author={Trivedi, Harsh and Balasubramanian, Niranjan and Khot, Tushar and Sabharwal, Ashish},
  journal={TACL}, year={2022}
}"""

    FIELDS = (
        validation.Field("id", "id", validation.is_str),
        validation.Field("question", "question", validation.is_str),
        validation.Field("answer", "answer", validation.is_str),
        validation.Field("answer_aliases", "answer_aliases", is_str_list),
        validation.Field("paragraphs", "paragraphs", is_paragraphs),
        validation.Field("question_decomposition", "question_decomposition", is_decomposition),
    )
    EXTRA_FEATURES = {
        "answer_aliases": tfds.features.Sequence(tfds.features.Text()),
        "paragraph_idx": tfds.features.Sequence(np.int32),
    }

    def open_reader(self, path: str):
        return readers.JsonLinesReader(path)

    def make_record(self, fields: dict[str, Any]) -> validation.QARecord:
        paragraphs = fields["paragraphs"]
        known = {p["idx"] for p in paragraphs}
        for step in fields["question_decomposition"]:
            support = step.get("paragraph_support_idx")
            if support is not None and support not in known:
                raise validation.DropRecord(TIER_VALIDATED, "supporting_index_out_of_range")
        groups: dict[str, list[dict]] = collections.OrderedDict()
        for p in paragraphs:
            groups.setdefault(p["title"], []).append(p)
        context, facts, idx = [], [], []
        for title, group in groups.items():
            context.append((title, [p["paragraph_text"] for p in group]))
            for j, p in enumerate(group):
                idx.append(p["idx"])
                if p["is_supporting"]:
                    facts.append((title, j))
        hops = fields["id"].split("__", 1)[0] if "__" in fields["id"] else ""
        return validation.QARecord(
            id=fields["id"],
            question=fields["question"],
            answer=fields["answer"],
            type=hops,  # "2hop", "3hop1", ... (the id prefix)
            level="",
            context=context,
            supporting_facts=facts,
            extras={"answer_aliases": list(fields["answer_aliases"]), "paragraph_idx": idx},
        )
