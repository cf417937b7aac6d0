"""Shared TFDS builder for multi-hop QA datasets in the HotpotQA record shape.

A concrete builder (see hotpot_qa/) only declares its configs (file names, URLs), its raw
fields and, if needed, how raw fields map to a `QARecord`. Everything else lives here:

  * reading: a streaming JSON reader (a JSON array or JSON lines; the 566 MB HotpotQA train
    file is never held as one Python object) that also fingerprints the file;
  * the three validation tiers (validation.py) with per-reason counts (report.py);
  * the data report: written as `data_report.json` inside the dataset's version directory
    while TFDS still builds in its `incomplete.*` temp directory, so the report appears
    together with the data in TFDS's final rename, never beside a half-built dataset;
  * the drop-fraction guard: too many dropped records fails the build, and TFDS then deletes
    the temp directory, so nothing that looks complete is left behind.

Storage is ArrayRecord, readable without TensorFlow through
`tfds.builder(name, data_dir=...).as_data_source()`.
"""

from __future__ import annotations

import abc
import codecs
import collections
import dataclasses
import hashlib
import inspect
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from lm_jax.data.builders import report as report_lib
from lm_jax.data.builders import validation
from lm_jax.data.builders.readers import BrokenRecord, RawFormatError

DEFAULT_MAX_DROP_FRACTION = 0.05


class MissingSourceFileError(FileNotFoundError):
    """A raw data file the build needs is not in manual_dir; names the file."""


class JsonValueReader:
    """Streams the top-level values of a JSON array (`[v, v, ...]`) or of JSON lines.

    Bytes are decoded incrementally as UTF-8 with errors='surrogateescape', so one record with
    invalid bytes does not make the whole file unreadable: its strings carry lone surrogates,
    which tier 0 (`validation.check_raw`) drops as `invalid_utf8`. After iteration, `num_bytes`
    and `sha256` describe the file (used by the report and to detect changed sources).
    """

    def __init__(self, path: str | os.PathLike, chunk_bytes: int = 1 << 20):
        self.path = os.fspath(path)
        self.chunk_bytes = chunk_bytes
        self.num_bytes = 0
        self.sha256 = ""

    def _error(self, offset: int, msg: str) -> RawFormatError:
        return RawFormatError(
            f"{self.path}: not a JSON array or JSON lines at char {offset}: {msg}"
        )

    def __iter__(self) -> Iterator[Any]:
        decoder = json.JSONDecoder()
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        hasher = hashlib.sha256()
        num_bytes = 0
        buf, pos, base = "", 0, 0  # base: char offset of buf[0] in the file (for messages)
        eof = False

        with open(self.path, "rb") as f:

            def fill() -> bool:
                """Appends one more chunk to buf; False at end of file."""
                nonlocal buf, pos, base, eof, num_bytes
                if eof:
                    return False
                data = f.read(self.chunk_bytes)
                if not data:
                    eof = True
                    buf += utf8.decode(b"", final=True)
                    return False
                num_bytes += len(data)
                hasher.update(data)
                if pos > len(buf) // 2:  # drop consumed text so the buffer stays small
                    base += pos
                    buf, pos = buf[pos:], 0
                buf += utf8.decode(data)
                return True

            def peek() -> str:
                """The next non-whitespace char ('' at end of file); advances past whitespace."""
                nonlocal pos
                while True:
                    while pos < len(buf) and buf[pos] in " \t\r\n\ufeff":
                        pos += 1
                    if pos < len(buf) or not fill():
                        return buf[pos] if pos < len(buf) else ""

            def value() -> Any:
                nonlocal pos
                peek()  # raw_decode does not skip leading whitespace
                while True:
                    try:
                        obj, end = decoder.raw_decode(buf, pos)
                        # A value that ends exactly at the buffer end may be cut (a number).
                        if end < len(buf) or eof:
                            pos = end
                            return obj
                    except json.JSONDecodeError as e:
                        if eof:
                            raise self._error(base + e.pos, e.msg) from None
                    fill()

            first = peek()
            if first == "[":  # a JSON array: values separated by commas
                pos += 1
                if peek() == "]":
                    pos += 1
                else:
                    while True:
                        yield value()
                        c = peek()
                        if c == ",":
                            pos += 1
                            continue
                        if c == "]":
                            pos += 1
                            break
                        raise self._error(base + pos, f"expected ',' or ']', got {c!r}")
                if peek() != "":
                    raise self._error(base + pos, "data after the closing ']'")
            else:  # JSON lines (or any whitespace-separated JSON values)
                while peek() != "":
                    yield value()
            while fill():  # hash the rest (only whitespace remains)
                pass
        self.num_bytes = num_bytes
        self.sha256 = hasher.hexdigest()


@dataclasses.dataclass(eq=False)
class SourceBuilderConfig(tfds.core.BuilderConfig):
    """One configuration of a builder that reads one raw file per split.

    split_files: split name -> raw file name (the name looked up in manual_dir, and the file
      name in checksums.tsv).
    urls: split name -> official download URL (its size/sha256 are in checksums.tsv); empty
      when the files can only be given through manual_dir.
    """

    split_files: dict[str, str] = dataclasses.field(default_factory=dict)
    urls: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(eq=False)
class QABuilderConfig(SourceBuilderConfig):
    """One configuration of a multi-hop QA builder.

    strict_supporting: drop a record whose supporting fact names a title missing from its
      context (True for distractor-style contexts; False for retrieved, fullwiki contexts).
    min_positives: tier 2 drops records with fewer positive sentences than this.
    """

    strict_supporting: bool = True
    min_positives: int = 1


class ValidatedBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base of every lm_jax builder: raw file per split -> validated records + data report.

    A subclass declares its configs and implements `features()` (the TFDS feature dict),
    `parse(value, notes)` (raw value -> record, raising `validation.DropRecord`),
    `record_id(record)`, `to_features(record, source_index)` and, if it reads anything but a
    JSON array / JSON lines file, `open_reader(path)`. This class owns the split files,
    duplicate ids, the per-reason counts, the drop-fraction guard and the atomic report.
    """

    HOMEPAGE = ""
    CITATION = ""
    DESCRIPTION = ""

    def __init__(
        self,
        *,
        max_drop_fraction: float = DEFAULT_MAX_DROP_FRACTION,
        require_all_splits: bool = False,
        **kwargs: Any,
    ):
        """Args beyond TFDS's (data_dir, config, version, file_format):

        max_drop_fraction: the build fails if a split drops more than this fraction of the
          records it read.
        require_all_splits: with manual_dir, a missing split file is an error naming the file
          (default: build only the splits whose file exists and list the others in the
          report's `missing_splits`).
        """
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)
        if not 0.0 <= max_drop_fraction <= 1.0:
            raise ValueError(f"max_drop_fraction must be in [0, 1], got {max_drop_fraction}")
        self._max_drop_fraction = float(max_drop_fraction)
        self._require_all_splits = require_all_splits
        self._split_reports: dict[str, report_lib.SplitReport] = {}
        self._missing_splits: dict[str, str] = {}
        self.data_report: dict[str, Any] | None = None

    # ------------------------------------------------------------------ TFDS hooks

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        """The file defining the builder (TFDS finds checksums.tsv beside it).

        TFDS 4.9.10's own code_path does `isinstance(path, importlib_resources.abc...)` for
        any builder in a package, which needs the `importlib_resources` backport that its
        metadata only requires on Python < 3.9; this is the fallback TFDS itself uses.
        """
        return epath.Path(inspect.getfile(cls))

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=tfds.features.FeaturesDict(self.features()),
            homepage=self.HOMEPAGE,
            citation=self.CITATION,
            # Keep file order: split index i is the i-th kept record, reproducibly.
            # The Grain pipeline does the shuffling.
            disable_shuffling=True,
        )

    def _source_paths(self, dl_manager: tfds.download.DownloadManager) -> dict[str, str]:
        """Split -> local raw file: from manual_dir when given, else downloaded."""
        cfg: SourceBuilderConfig = self.builder_config
        # The public `dl_manager.manual_dir` raises the same error for "not given" and
        # "empty", and we must not silently download when a user's manual_dir is wrong.
        manual_dir = getattr(dl_manager, "_manual_dir", None)
        self._missing_splits = {}
        if manual_dir is None:
            if not cfg.urls:
                raise MissingSourceFileError(
                    f"{self.name}/{cfg.name}: no download URL; give the files "
                    f"{sorted(cfg.split_files.values())} through manual_dir"
                )
            # Online: TFDS downloads and checks size + sha256 against checksums.tsv.
            paths = dl_manager.download({s: cfg.urls[s] for s in cfg.split_files})
            return {s: os.fspath(p) for s, p in paths.items()}
        manual_dir = os.fspath(manual_dir)
        if not os.path.isdir(manual_dir):
            raise MissingSourceFileError(f"manual_dir {manual_dir} does not exist")
        # Files in manual_dir are NOT checksum-verified: they may be subsets, synthetic
        # data or test fixtures in the official format. The report records their sha256.
        paths = {}
        for split, fname in cfg.split_files.items():
            path = os.path.join(manual_dir, fname)
            if os.path.isfile(path):
                paths[split] = path
            else:
                self._missing_splits[split] = fname
        if not paths or (self._missing_splits and self._require_all_splits):
            missing = ", ".join(
                f"{fname} (split {s!r})" for s, fname in self._missing_splits.items()
            )
            raise MissingSourceFileError(
                f"{self.name}/{cfg.name}: missing in manual_dir {manual_dir}: {missing}"
            )
        for split, fname in self._missing_splits.items():
            logging.warning(
                "%s: no %s in %s; split %r not built", self.name, fname, manual_dir, split
            )
        return paths

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        return {
            split: self._generate_examples(path, split)
            for split, path in self._source_paths(dl_manager).items()
        }

    def _generate_examples(self, path: str, split: str):
        rep = report_lib.SplitReport(split)
        self._split_reports[split] = rep
        self.current_split = split  # for parse() of formats whose ids need the split
        reader = self.open_reader(path)
        seen_ids: set[str] = set()
        for source_index, value in enumerate(reader):
            rep.add_read()
            notes: collections.Counter = collections.Counter()
            try:
                if isinstance(value, BrokenRecord):
                    raise validation.DropRecord(report_lib.TIER_RAW, value.reason)
                rec = self.parse(
                    value, lambda name, n, c=notes: c.update({name: n}), source_index
                )
                if self.CHECK_DUPLICATE_IDS:
                    rid = self.record_id(rec)
                    if rid in seen_ids:
                        raise validation.DropRecord(report_lib.TIER_VALIDATED, "duplicate_id")
                    seen_ids.add(rid)
                self.check_trainable(rec)
            except validation.DropRecord as d:
                rep.drop(d.tier, d.reason)
                continue
            for name, n in notes.items():
                rep.note(name, n)
            # Key = position in the raw file: unique even when ids are not.
            yield f"{source_index:010d}", self.to_features(rec, source_index)
        rep.source = {
            "file": os.path.basename(path),
            "bytes": reader.num_bytes,
            "sha256": reader.sha256,
        }
        # Fail at the end of this split, before TFDS writes it (an empty split would also
        # make TFDS's writer fail with a less helpful message).
        report_lib.check_drop_fraction(self._make_report({split: rep}))

    def _make_report(self, splits: dict[str, report_lib.SplitReport]) -> dict[str, Any]:
        return report_lib.make_report(
            dataset=f"{self.name}/{self.builder_config.name}",
            version=str(self.version),
            splits=splits,
            max_drop_fraction=self._max_drop_fraction,
            missing_splits=self._missing_splits,
        )

    def _download_and_prepare(
        self, dl_manager, download_config
    ):  # pytype: disable=signature-mismatch
        self._split_reports = {}
        super()._download_and_prepare(dl_manager=dl_manager, download_config=download_config)
        report = self._make_report(self._split_reports)
        report_lib.check_drop_fraction(report)
        # Here self.data_dir is still TFDS's incomplete.* temp dir: the report is renamed
        # into place together with the data.
        report_lib.write_json_atomic(
            os.path.join(self.data_dir, report_lib.REPORT_FILENAME), report
        )
        self.data_report = report

    # ------------------------------------------------------------------ per-dataset hooks

    # A corpus of millions of passages would hold every id in a set: its builder opts out.
    CHECK_DUPLICATE_IDS = True

    def open_reader(self, path: str):
        """An iterable of raw values of one split file, with num_bytes/sha256 afterwards."""
        return JsonValueReader(path)

    @abc.abstractmethod
    def features(self) -> dict[str, Any]:
        """The TFDS feature dict of one record."""

    @abc.abstractmethod
    def parse(self, value: Any, notes, source_index: int) -> Any:
        """Raw value -> record; raises validation.DropRecord.

        notes(name, n) counts a remark that does not drop the record; source_index is the
        value's position in the raw file (for formats without ids).
        """

    @abc.abstractmethod
    def record_id(self, rec: Any) -> str:
        """The record's id (unique within a split)."""

    def check_trainable(self, rec: Any) -> None:
        """Tier 2 checks (after the duplicate-id check); default: none."""

    @abc.abstractmethod
    def to_features(self, rec: Any, source_index: int) -> dict[str, Any]:
        """The record as a dict matching features()."""


class MultiHopQABuilder(ValidatedBuilder, skip_registration=True):
    """Base of the HotpotQA-shaped builders. Subclasses set FIELDS, configs, VERSION, etc.

    EXTRA_FEATURES: features beyond the HotpotQA shape (e.g. 2Wiki's evidence triples), filled
    from `QARecord.extras`.
    """

    # The raw fields every record needs, in check order (see validation.Field).
    FIELDS: Sequence[validation.Field] = ()
    EXTRA_FEATURES: dict[str, Any] = {}

    def features(self) -> dict[str, Any]:
        text = tfds.features.Text()
        return {
            "id": text,
            "question": text,
            "answer": text,
            "type": text,
            "level": text,
            # Position of the record in the raw file (before drops): for tracing.
            "source_index": np.int64,
            # Paragraphs in document order; their sentences are stored flat in
            # `sentences` (paragraph i owns the next num_sentences[i] entries),
            # since nested ragged features need TensorFlow to serialise.
            "context": tfds.features.Sequence({"title": text, "num_sentences": np.int32}),
            "sentences": tfds.features.Sequence(text),
            "supporting_facts": tfds.features.Sequence({"title": text, "sent_id": np.int32}),
            **self.EXTRA_FEATURES,
        }

    def parse(self, value: Any, notes, source_index: int) -> validation.QARecord:
        cfg: QABuilderConfig = self.builder_config
        raw = validation.check_raw(value)
        rec = self.make_record(validation.extract_fields(raw, self.FIELDS))
        validation.check_content(rec, strict_supporting=cfg.strict_supporting, notes=notes)
        return rec

    def record_id(self, rec: validation.QARecord) -> str:
        return rec.id

    def check_trainable(self, rec: validation.QARecord) -> None:
        validation.check_trainable(rec, min_positives=self.builder_config.min_positives)

    def to_features(self, rec: validation.QARecord, source_index: int) -> dict[str, Any]:
        return rec.to_features(source_index)

    # ------------------------------------------------------------------ per-dataset hook

    @abc.abstractmethod
    def make_record(self, fields: dict[str, Any]) -> validation.QARecord:
        """Maps the extracted raw fields (names from FIELDS) to a QARecord."""


def report_path(builder: tfds.core.DatasetBuilder) -> str:
    """Where a prepared dataset's data_report.json is."""
    return os.path.join(os.fspath(builder.data_dir), report_lib.REPORT_FILENAME)
