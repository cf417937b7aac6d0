"""TFDS builder `two_wiki_multihop_qa` (2WikiMultihopQA, Ho et al., COLING 2020).

The official files (data_ids_april7.zip: train.json, dev.json; test.json has no answers) are
HotpotQA-shaped JSON arrays plus `evidences` ([subject, relation, object] triples), so the
HotpotQA validation applies unchanged; the triples are kept as an extra feature. Contexts are
2-4 gold + distractor paragraphs (distractor setting): a supporting fact outside the context
is a data error. Manual download only (the files are on Dropbox): put them in manual_dir.
"""

from __future__ import annotations

from typing import Any

import tensorflow_datasets as tfds

from lm_jax.data.builders import base, validation


def is_triples(v: Any) -> bool:
    """[[subject, relation, object], ...] of strings."""
    return isinstance(v, list) and all(
        isinstance(t, list) and len(t) == 3 and all(isinstance(x, str) for x in t) for t in v
    )


class TwoWikiMultihopQa(base.MultiHopQABuilder):
    """2WikiMultihopQA: multi-hop questions over Wikipedia + Wikidata evidence triples."""

    name = "two_wiki_multihop_qa"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Validated records, HotpotQA layout + evidence triples."}
    BUILDER_CONFIGS = [
        base.QABuilderConfig(
            name="default",
            split_files={"train": "train.json", "validation": "dev.json"},
            strict_supporting=True,
            min_positives=1,
        )
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Put the official train.json and/or dev.json (from data_ids_april7.zip,
    https://github.com/Alab-NII/2wikimultihop) in manual_dir.
    """
    HOMEPAGE = "https://github.com/Alab-NII/2wikimultihop"
    DESCRIPTION = (
        "2WikiMultihopQA: multi-hop questions (comparison, inference, compositional, "
        "bridge_comparison) with sentence-level supporting facts and Wikidata evidence triples."
    )
    CITATION = """@inproceedings{ho2020constructing,
  title={Constructing A Multi-hop {QA} Dataset for Comprehensive Evaluation of Reasoning Steps},
  author={Ho, Xanh and Duong Nguyen, Anh-Khoa and Sugawara, Saku and Aizawa, Akiko},
  booktitle={COLING}, year={2020}
}"""

    FIELDS = (
        validation.Field("_id", "id", validation.is_str),
        validation.Field("question", "question", validation.is_str),
        validation.Field("answer", "answer", validation.is_str),
        validation.Field("type", "type", validation.is_str),
        validation.Field("supporting_facts", "supporting_facts", validation.is_supporting_facts),
        validation.Field("context", "context", validation.is_context),
        validation.Field("evidences", "evidences", is_triples),
    )
    EXTRA_FEATURES = {
        "evidences": tfds.features.Sequence(
            {"subject": tfds.features.Text(), "relation": tfds.features.Text(),
             "object": tfds.features.Text()}
        )
    }

    def make_record(self, fields: dict[str, Any]) -> validation.QARecord:
        triples = fields["evidences"]
        return validation.QARecord(
            id=fields["id"],
            question=fields["question"],
            answer=fields["answer"],
            type=fields["type"],
            level="",
            context=[(title, list(sents)) for title, sents in fields["context"]],
            supporting_facts=[(title, int(i)) for title, i in fields["supporting_facts"]],
            extras={
                "evidences": {
                    "subject": [t[0] for t in triples],
                    "relation": [t[1] for t in triples],
                    "object": [t[2] for t in triples],
                }
            },
        )
