"""TFDS builder `hotpot_qa` (configs `distractor`, `fullwiki`), ArrayRecord, no TensorFlow needed.

Online it downloads the official files (URLs, sizes and sha256 in checksums.tsv); offline
(`DownloadConfig(manual_dir=DIR)`) it reads the same file names from DIR:

  split       distractor                       fullwiki
  train       hotpot_train_v1.1.json           hotpot_train_v1.1.json
  validation  hotpot_dev_distractor_v1.json    hotpot_dev_fullwiki_v1.json

(HotpotQA has one training file; its contexts are gold + distractor paragraphs in both
settings.) The synthetic world (lm_jax.data.synthetic) writes the same format and names.
"""

from __future__ import annotations

from typing import Any

import tensorflow_datasets as tfds

from lm_jax.data.builders import base, validation

_URL = "http://curtis.ml.cmu.edu/datasets/hotpot/"
_TRAIN = "hotpot_train_v1.1.json"
_DEV_DISTRACTOR = "hotpot_dev_distractor_v1.json"
_DEV_FULLWIKI = "hotpot_dev_fullwiki_v1.json"


def _config(name: str, dev_file: str, **kwargs: Any) -> base.QABuilderConfig:
    files = {"train": _TRAIN, "validation": dev_file}
    return base.QABuilderConfig(
        name=name,
        split_files=files,
        urls={split: _URL + fname for split, fname in files.items()},
        **kwargs,
    )


class HotpotQa(base.MultiHopQABuilder):
    """HotpotQA (Yang et al., EMNLP 2018): multi-hop QA with sentence-level supporting facts."""

    name = "hotpot_qa"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Validated records, flat context layout, data_report.json."}
    BUILDER_CONFIGS = [
        _config(
            "distractor",
            _DEV_DISTRACTOR,
            description="Context = 2 gold + 8 distractor paragraphs. A supporting fact "
            "outside the context is a data error.",
            strict_supporting=True,
            min_positives=1,
        ),
        _config(
            "fullwiki",
            _DEV_FULLWIKI,
            description="Validation context = 10 retrieved paragraphs, which often miss gold "
            "paragraphs: such supporting facts are kept and counted in the report's notes, "
            "and records without any gold sentence in context are kept (for evaluation).",
            strict_supporting=False,
            min_positives=0,
        ),
    ]
    DEFAULT_BUILDER_CONFIG_NAME = "distractor"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
    Optional. Put the official files {_TRAIN}, {_DEV_DISTRACTOR} and/or {_DEV_FULLWIKI}
    (or files in the same format, e.g. from `python -m lm_jax.data.synthetic`) in manual_dir.
    Splits whose file is missing are not built (listed in data_report.json's missing_splits).
    """
    HOMEPAGE = "https://hotpotqa.github.io/"
    DESCRIPTION = (
        "HotpotQA: 113k Wikipedia-based multi-hop questions with sentence-level supporting "
        "facts. Evidence items are context sentences rendered as 'Title: sentence'."
    )
    CITATION = """@inproceedings{yang2018hotpotqa,
  title={{HotpotQA}: A Dataset for Diverse, Explainable Multi-hop Question Answering},
  author={Yang, Zhilin and Qi, Peng and Zhang, Saizheng and Bengio, Yoshua and Cohen, William W.
          and Salakhutdinov, Ruslan and Manning, Christopher D.},
  booktitle={EMNLP},
  year={2018}
}"""

    FIELDS = (
        validation.Field("_id", "id", validation.is_str),
        validation.Field("question", "question", validation.is_str),
        validation.Field("answer", "answer", validation.is_str),
        validation.Field("type", "type", validation.is_str),
        validation.Field("level", "level", validation.is_str),
        validation.Field("supporting_facts", "supporting_facts", validation.is_supporting_facts),
        validation.Field("context", "context", validation.is_context),
    )

    def make_record(self, fields: dict[str, Any]) -> validation.QARecord:
        return validation.QARecord(
            id=fields["id"],
            question=fields["question"],
            answer=fields["answer"],
            type=fields["type"],
            level=fields["level"],
            context=[(title, list(sents)) for title, sents in fields["context"]],
            supporting_facts=[(title, int(i)) for title, i in fields["supporting_facts"]],
        )
