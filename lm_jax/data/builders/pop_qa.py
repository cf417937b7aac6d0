"""TFDS builder `pop_qa` (PopQA, Mallen et al., ACL 2023), from the official popQA.tsv.

popQA.tsv (github.com/AlexTMallen/adaptive-retrieval, data/) is tab-separated with a header of
17 columns: id, subj, prop, obj, subj_id, prop_id, obj_id, s_aliases, o_aliases, s_uri, o_uri,
s_wiki_title, o_wiki_title, s_pop, o_pop, question, possible_answers. `possible_answers` (the
gold strings) and the alias columns are JSON-encoded string lists inside the TSV. A row with
another number of fields is dropped (`wrong_column_count`); a `possible_answers` that is not a
JSON string list is `wrong_type:possible_answers`. The other columns go to `metadata`
(popularities `s_pop`/`o_pop` as integers: PopQA's analysis buckets by them).
"""

from __future__ import annotations

import json
from typing import Any

import tensorflow_datasets as tfds

from lm_jax.data.builders import base, open_qa, readers, validation
from lm_jax.data.builders.report import TIER_VALIDATED

COLUMNS = (
    "id", "subj", "prop", "obj", "subj_id", "prop_id", "obj_id", "s_aliases", "o_aliases",
    "s_uri", "o_uri", "s_wiki_title", "o_wiki_title", "s_pop", "o_pop", "question",
    "possible_answers",
)
_INT_COLUMNS = ("subj_id", "prop_id", "obj_id", "s_pop", "o_pop")


def _json_list(row: dict[str, str], key: str) -> list[str]:
    try:
        v = json.loads(row[key])
    except json.JSONDecodeError:
        raise validation.DropRecord(TIER_VALIDATED, f"wrong_type:{key}") from None
    if not open_qa.is_str_list(v):
        raise validation.DropRecord(TIER_VALIDATED, f"wrong_type:{key}")
    return v


class PopQa(open_qa.OpenQABuilder):
    """PopQA: 14k entity-centric questions with Wikipedia popularity of subject and object."""

    name = "pop_qa"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Validated rows of popQA.tsv, gold answers from possible_answers."}
    BUILDER_CONFIGS = [base.SourceBuilderConfig(name="default", split_files={"test": "popQA.tsv"})]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Put popQA.tsv (github.com/AlexTMallen/adaptive-retrieval, data/popQA.tsv) in manual_dir.
    """
    HOMEPAGE = "https://github.com/AlexTMallen/adaptive-retrieval"
    DESCRIPTION = "PopQA: long-tail entity questions from Wikidata triples (16 relations)."
    CITATION = """@inproceedings{mallen2023not,
  title={When Not to Trust Language Models: Investigating Effectiveness of Parametric and
         Non-Parametric Memories},
  author={Mallen, Alex and Asai, Akari and Zhong, Victor and Das, Rajarshi and Khashabi, Daniel
          and Hajishirzi, Hannaneh},
  booktitle={ACL}, year={2023}
}"""

    def open_reader(self, path: str):
        return readers.TsvReader(path, COLUMNS)

    def make_record(self, raw: dict[str, Any], source_index: int) -> open_qa.OpenQARecord:
        answers = _json_list(raw, "possible_answers")
        metadata: dict[str, Any] = {}
        for key in COLUMNS[1:-2]:
            if key in ("s_aliases", "o_aliases"):
                metadata[key] = _json_list(raw, key)
            elif key in _INT_COLUMNS:
                try:
                    metadata[key] = int(raw[key])
                except ValueError:
                    raise validation.DropRecord(TIER_VALIDATED, f"wrong_type:{key}") from None
            else:
                metadata[key] = raw[key]
        return open_qa.OpenQARecord(
            id=raw["id"], question=raw["question"], answers=answers, metadata=metadata
        )
