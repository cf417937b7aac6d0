"""TFDS dataset builders. Importing this package registers them with TFDS:

import lm_jax.data.builders  # registers hotpot_qa/{distractor,fullwiki}
tfds.builder("hotpot_qa/distractor", data_dir=...).as_data_source()
"""

from lm_jax.data.builders import hotpot_qa  # noqa: F401  (registration side effect)
from lm_jax.data.builders.base import (
    DEFAULT_MAX_DROP_FRACTION,
    MissingSourceFileError,
    MultiHopQABuilder,
    QABuilderConfig,
    RawFormatError,
)
from lm_jax.data.builders.report import REPORT_FILENAME, DataQualityError

__all__ = [
    "DEFAULT_MAX_DROP_FRACTION",
    "DataQualityError",
    "MissingSourceFileError",
    "MultiHopQABuilder",
    "QABuilderConfig",
    "RawFormatError",
    "REPORT_FILENAME",
]
