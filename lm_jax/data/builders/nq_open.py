"""TFDS builder `nq_open` (NQ-open, Lee et al. 2019; google-research-datasets/natural-questions).

Files (JSON lines `{"question": str, "answer": [str, ...]}`, some EfficientQA lines carry
extra prediction lists, kept in `metadata`):

  config       train                 validation
  default      NQ-open.train.jsonl   NQ-open.dev.jsonl  (the "test" set of DPR/RAG papers)
  efficientqa  -                     NQ-open.efficientqa.dev.1.1.jsonl

The files have no ids: a record's id is `<split>-<line index>` (position in the raw file).
"""

from __future__ import annotations

from typing import Any

import tensorflow_datasets as tfds

from lm_jax.data.builders import base, open_qa, readers


class NqOpen(open_qa.OpenQABuilder):
    """NQ-open: Google search questions with short Wikipedia answers, several gold strings."""

    name = "nq_open"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Validated records with all gold answers."}
    BUILDER_CONFIGS = [
        base.SourceBuilderConfig(
            name="default",
            split_files={"train": "NQ-open.train.jsonl", "validation": "NQ-open.dev.jsonl"},
        ),
        base.SourceBuilderConfig(
            name="efficientqa",
            split_files={"validation": "NQ-open.efficientqa.dev.1.1.jsonl"},
        ),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Put the NQ-open files (github.com/google-research-datasets/natural-questions, nq_open/)
    in manual_dir.
    """
    HOMEPAGE = "https://github.com/google-research-datasets/natural-questions/tree/master/nq_open"
    DESCRIPTION = "NQ-open: Natural Questions with short answers of at most five tokens."
    CITATION = """@inproceedings{lee2019latent,
  title={Latent Retrieval for Weakly Supervised Open Domain Question Answering},
  author={Lee, Kenton and Chang, Ming-Wei and Toutanova, Kristina},
  booktitle={ACL}, year={2019}
}"""

    def open_reader(self, path: str):
        return readers.JsonLinesReader(path)

    def make_record(self, raw: dict[str, Any], source_index: int) -> open_qa.OpenQARecord:
        question = open_qa.require(raw, "question", lambda v: isinstance(v, str))
        answers = open_qa.require(raw, "answer", open_qa.is_str_list)
        return open_qa.OpenQARecord(
            id=f"{self.current_split}-{source_index}",
            question=question,
            answers=list(answers),
            metadata={k: v for k, v in raw.items() if k not in ("question", "answer")},
        )

