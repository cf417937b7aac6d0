"""TFDS builder `trivia_qa` (TriviaQA, Joshi et al., ACL 2017), from the official JSON files.

Each file is ONE JSON object `{"Data": [...], "Domain", "VerifiedEval", "Version"}`; an item
has `QuestionId`, `Question`, `Answer` {Value, Aliases, NormalizedAliases, ...} and the
evidence documents it was paired with (`EntityPages`, `SearchResults`: file names under the
release's evidence/ folder), kept in `metadata`. Gold answers = Value, then Aliases, then
NormalizedAliases (the official evaluation accepts any alias after normalisation).

  config        train                                            validation
  rc_wikipedia  qa/wikipedia-train.json                          qa/wikipedia-dev.json
  rc_web        qa/web-train.json                                qa/web-dev.json
  unfiltered    triviaqa-unfiltered/unfiltered-web-train.json    .../unfiltered-web-dev.json

(paths relative to manual_dir = the unpacked triviaqa-rc / triviaqa-unfiltered tarballs'
parent). The `test-without-answers` files have no `Answer`: not a split here.
"""

from __future__ import annotations

from typing import Any

import tensorflow_datasets as tfds

from lm_jax.data.builders import base, open_qa, readers


def _config(name: str, train: str, dev: str, description: str) -> base.SourceBuilderConfig:
    return base.SourceBuilderConfig(
        name=name, split_files={"train": train, "validation": dev}, description=description
    )


def _is_answer(v: Any) -> bool:
    return (
        isinstance(v, dict)
        and isinstance(v.get("Value"), str)
        and open_qa.is_str_list(v.get("Aliases", []))
        and open_qa.is_str_list(v.get("NormalizedAliases", []))
    )


class TriviaQa(open_qa.OpenQABuilder):
    """TriviaQA: trivia questions with answer aliases and distant-supervision evidence."""

    name = "trivia_qa"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Validated records, answer value + aliases, evidence file names."}
    BUILDER_CONFIGS = [
        _config("rc_wikipedia", "qa/wikipedia-train.json", "qa/wikipedia-dev.json",
                "Reading comprehension, Wikipedia evidence."),
        _config("rc_web", "qa/web-train.json", "qa/web-dev.json",
                "Reading comprehension, web evidence."),
        _config(
            "unfiltered",
            "triviaqa-unfiltered/unfiltered-web-train.json",
            "triviaqa-unfiltered/unfiltered-web-dev.json",
            "Unfiltered (open-domain) questions, the superset used by open-domain QA.",
        ),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Unpack triviaqa-rc.tar.gz (qa/...) and/or triviaqa-unfiltered.tar.gz
    (triviaqa-unfiltered/...) from https://nlp.cs.washington.edu/triviaqa/ into manual_dir.
    """
    HOMEPAGE = "https://nlp.cs.washington.edu/triviaqa/"
    DESCRIPTION = "TriviaQA: 95k question-answer pairs authored by trivia enthusiasts."
    CITATION = """@inproceedings{joshi2017triviaqa,
  title={{TriviaQA}: A Large Scale Distantly Supervised Challenge Dataset for Reading
         Comprehension},
  author={Joshi, Mandar and Choi, Eunsol and Weld, Daniel and Zettlemoyer, Luke},
  booktitle={ACL}, year={2017}
}"""

    def open_reader(self, path: str):
        return readers.JsonDocumentReader(path, key="Data")

    def make_record(self, raw: dict[str, Any], source_index: int) -> open_qa.OpenQARecord:
        qid = open_qa.require(raw, "QuestionId", lambda v: isinstance(v, str))
        question = open_qa.require(raw, "Question", lambda v: isinstance(v, str))
        answer = open_qa.require(raw, "Answer", _is_answer)
        golds = [answer["Value"], *answer.get("Aliases", []), *answer.get("NormalizedAliases", [])]
        metadata = {
            "answer_type": answer.get("Type", ""),
            "entity_pages": [p.get("Filename", "") for p in raw.get("EntityPages", [])
                             if isinstance(p, dict)],
            "search_results": [p.get("Filename", "") for p in raw.get("SearchResults", [])
                               if isinstance(p, dict)],
            "question_source": raw.get("QuestionSource", ""),
        }
        return open_qa.OpenQARecord(id=qid, question=question, answers=golds, metadata=metadata)
