"""TFDS dataset builders. Importing this package registers them with TFDS:

import lm_jax.data.builders  # registers every builder below
tfds.builder("hotpot_qa/distractor", data_dir=...).as_data_source()

  hotpot_qa/{distractor,fullwiki}   two_wiki_multihop_qa/default   musique/ans
  nq_open/{default,efficientqa}     trivia_qa/{rc_wikipedia,rc_web,unfiltered}
  pop_qa/default                    flashrag/default               longbench_qasper/{default,e}
  wice/{claim,subclaim}             dpr_corpus/{psgs_w100,passages}
"""

from lm_jax.data.builders import (  # noqa: F401  (registration side effect)
    dpr_corpus,
    flashrag,
    hotpot_qa,
    musique,
    nq_open,
    pop_qa,
    qasper,
    trivia_qa,
    two_wiki,
    wice,
)
from lm_jax.data.builders.base import (
    DEFAULT_MAX_DROP_FRACTION,
    MissingSourceFileError,
    MultiHopQABuilder,
    QABuilderConfig,
    RawFormatError,
    SourceBuilderConfig,
    ValidatedBuilder,
)
from lm_jax.data.builders.report import REPORT_FILENAME, DataQualityError

# Short names accepted by `python -m lm_jax.data.prepare --dataset=...`.
ALIASES = {
    "hotpotqa": "hotpot_qa/distractor",
    "2wiki": "two_wiki_multihop_qa/default",
    "musique": "musique/ans",
    "nq": "nq_open/default",
    "triviaqa": "trivia_qa/unfiltered",
    "popqa": "pop_qa/default",
    "flashrag": "flashrag/default",
    "qasper": "longbench_qasper/default",
    "wice": "wice/claim",
    "dpr_corpus": "dpr_corpus/psgs_w100",
}

__all__ = [
    "ALIASES",
    "DEFAULT_MAX_DROP_FRACTION",
    "DataQualityError",
    "MissingSourceFileError",
    "MultiHopQABuilder",
    "QABuilderConfig",
    "RawFormatError",
    "REPORT_FILENAME",
    "SourceBuilderConfig",
    "ValidatedBuilder",
]
