"""TFDS builder `dpr_corpus`: a passage collection in the DPR layout (`id \\t text \\t title`).

DPR's psgs_w100.tsv (21M Wikipedia passages of 100 words, 13 GB) has a header line
`id<TAB>text<TAB>title` and double-quoted texts. The file is read as a stream (csv module over
a buffered file, one row at a time) and written to ArrayRecord shards in file order, so
`source[i]` is the i-th kept passage. Memory stays bounded at any size: TFDS's writer holds at
most 1 GB of serialised records (tfds.core.shuffle.MAX_MEM_BUFFER_SIZE) before spilling them to
temp files on disk (1M synthetic 100-word passages: 1.24 GB peak RSS, BENCHMARKS.md).

Configs: `psgs_w100` reads manual_dir/psgs_w100.tsv; `passages` reads manual_dir/passages.tsv
(any corpus in the same layout, e.g. the synthetic one of `lm_jax.bench.corpus`). One split,
`train`. Checks: tier 0 `wrong_column_count` (a broken line), `invalid_utf8`; tier 1
`empty_id`, `empty_text`. A blank title is noted (`empty_title`), not dropped. Ids are not
checked for duplicates: that would hold every id of a 21M corpus in memory (the builder's
record key is the file position, which is unique).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from lm_jax.data.builders import base, readers, validation
from lm_jax.data.builders.report import TIER_RAW, TIER_VALIDATED

COLUMNS = ("id", "text", "title")


@dataclasses.dataclass
class Passage:
    id: str
    text: str
    title: str


def _is_utf8(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class DprCorpus(base.ValidatedBuilder):
    """A DPR-layout passage corpus (psgs_w100.tsv or any `id, text, title` TSV)."""

    name = "dpr_corpus"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Validated passages, streaming read."}
    BUILDER_CONFIGS = [
        base.SourceBuilderConfig(name="psgs_w100", split_files={"train": "psgs_w100.tsv"}),
        base.SourceBuilderConfig(name="passages", split_files={"train": "passages.tsv"}),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Put psgs_w100.tsv (DPR, facebookresearch/DPR data/download_data.py
    data.wikipedia_split.psgs_w100) or any passages.tsv in the same layout in manual_dir.
    """
    HOMEPAGE = "https://github.com/facebookresearch/DPR"
    DESCRIPTION = "Passages (id, text, title) for open-corpus retrieval."
    CHECK_DUPLICATE_IDS = False

    def features(self) -> dict[str, Any]:
        text = tfds.features.Text()
        return {"id": text, "text": text, "title": text, "source_index": np.int64}

    def open_reader(self, path: str):
        return readers.TsvReader(path, COLUMNS)

    def parse(self, value: Any, notes, source_index: int) -> Passage:
        p = Passage(value["id"].strip(), value["text"].strip(), value["title"].strip())
        if not (_is_utf8(p.id) and _is_utf8(p.text) and _is_utf8(p.title)):
            raise validation.DropRecord(TIER_RAW, "invalid_utf8")
        if not p.id:
            raise validation.DropRecord(TIER_VALIDATED, "empty_id")
        if not p.text:
            raise validation.DropRecord(TIER_VALIDATED, "empty_text")
        if not p.title:
            notes("empty_title", 1)
        return p

    def record_id(self, rec: Passage) -> str:
        return rec.id

    def to_features(self, rec: Passage, source_index: int) -> dict[str, Any]:
        return {"id": rec.id, "text": rec.text, "title": rec.title, "source_index": source_index}
