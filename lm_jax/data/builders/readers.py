"""Streaming readers for raw benchmark files: JSON lines, TSV with a header, one JSON document.

Every reader is an iterable of raw values that, once exhausted, describes the file it read
(`num_bytes`, `sha256`: the data report records them, and `prepare` compares them to detect
a changed source). A line that cannot be parsed does not stop the build: the reader yields
`BROKEN` in its place and the builder drops it as tier 0 `invalid_json` / `wrong_column_count`.
Bytes are decoded as UTF-8 with errors='surrogateescape', so invalid bytes reach tier 0's
`invalid_utf8` check instead of failing the whole file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any


class RawFormatError(ValueError):
    """A raw file is not in the format its builder reads; names the file and position."""


class BrokenRecord:
    """Stands in for one unparseable line; `reason` is its tier-0 drop reason."""

    def __init__(self, reason: str):
        self.reason = reason

    def __repr__(self) -> str:
        return f"BrokenRecord({self.reason!r})"


INVALID_JSON = BrokenRecord("invalid_json")
WRONG_COLUMN_COUNT = BrokenRecord("wrong_column_count")


class _HashingFile(io.RawIOBase):
    """A read-only binary file that hashes and counts the bytes read through it."""

    def __init__(self, path: str):
        self._f = open(path, "rb")  # noqa: SIM115  (closed by close())
        self.hasher = hashlib.sha256()
        self.num_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._f.readinto(b)
        if n:
            self.hasher.update(memoryview(b)[:n])
            self.num_bytes += n
        return n

    def close(self) -> None:
        self._f.close()
        super().close()


class _Reader:
    """Base: opens the file as text through a hashing wrapper; subclasses parse."""

    def __init__(self, path: str | os.PathLike, chunk_bytes: int = 1 << 20):
        self.path = os.fspath(path)
        self.chunk_bytes = chunk_bytes
        self.num_bytes = 0
        self.sha256 = ""

    def _open(self) -> tuple[_HashingFile, io.TextIOWrapper]:
        raw = _HashingFile(self.path)
        text = io.TextIOWrapper(
            io.BufferedReader(raw, self.chunk_bytes),
            encoding="utf-8",
            errors="surrogateescape",
            newline="",
        )
        return raw, text

    def _finish(self, raw: _HashingFile, text: io.TextIOWrapper) -> None:
        while text.read(self.chunk_bytes):  # hash whatever is left
            pass
        self.num_bytes = raw.num_bytes
        self.sha256 = raw.hasher.hexdigest()
        text.close()

    def _values(self, text: io.TextIOWrapper) -> Iterator[Any]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Any]:
        raw, text = self._open()
        try:
            yield from self._values(text)
            self._finish(raw, text)
        finally:
            text.close()


class JsonLinesReader(_Reader):
    """One JSON value per line (blank lines skipped); an unparseable line -> INVALID_JSON."""

    def _values(self, text):
        for line in text:
            line = line.strip().lstrip("\ufeff")
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                yield INVALID_JSON


class TsvReader(_Reader):
    """Tab-separated rows with a header line naming `columns` (in that order) -> dicts.

    Quoting follows Python's csv module (DPR's psgs_w100.tsv quotes texts with double
    quotes). A row with another number of fields -> WRONG_COLUMN_COUNT. A header that is not
    `columns` raises RawFormatError: every row would be misread.
    """

    def __init__(self, path: str | os.PathLike, columns: Sequence[str], **kwargs: Any):
        super().__init__(path, **kwargs)
        self.columns = tuple(columns)

    def _values(self, text):
        csv.field_size_limit(sys.maxsize)
        rows = csv.reader(text, delimiter="\t")
        header = next(rows, None)
        if header is None:
            raise RawFormatError(f"{self.path}: empty file, expected a header line")
        header = [h.strip().lstrip("\ufeff") for h in header]
        if tuple(header) != self.columns:
            raise RawFormatError(
                f"{self.path}: header is {header}, expected the columns "
                f"{list(self.columns)} (tab-separated)"
            )
        n = len(self.columns)
        for row in rows:
            if not row or row == [""]:
                continue
            if len(row) != n:
                yield WRONG_COLUMN_COUNT
                continue
            yield dict(zip(self.columns, row, strict=True))


class JsonDocumentReader(_Reader):
    """The items of `doc[key]` of a file holding ONE JSON object (TriviaQA's `{"Data": [...]}`).

    The whole document is parsed at once (TriviaQA's largest file, unfiltered-web-train, is
    about 0.6 GB of JSON): use it for files that fit in memory.
    """

    def __init__(self, path: str | os.PathLike, key: str, **kwargs: Any):
        super().__init__(path, **kwargs)
        self.key = key

    def _values(self, text):
        try:
            doc = json.loads(text.read())
        except json.JSONDecodeError as e:
            raise RawFormatError(f"{self.path}: not valid JSON: {e}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get(self.key), list):
            raise RawFormatError(f"{self.path}: expected a JSON object with a list {self.key!r}")
        yield from doc[self.key]
