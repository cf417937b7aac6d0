"""The data report: what each tier of a build read, kept and dropped, and why.

Tiers (see docs/data.md):
  * ``0_raw``: raw file -> JSON values that are objects whose text is valid UTF-8;
  * ``1_validated``: -> records whose fields exist, have the right types and agree with
    each other (supporting facts point into the context, ids are unique, ...);
  * ``2_training``: -> records that can become a training example (enough positives).

The report is a plain JSON-able dict::

  {"dataset": "hotpot_qa/distractor", "version": "1.0.0", "max_drop_fraction": 0.05,
   "splits": {"validation": {
       "read": N, "kept": K, "dropped": {"<reason>": n},
       "tiers": {"0_raw": {"in": N, "out": a, "dropped": {...}}, "1_validated": ..., ...},
       "notes": {...}, "source": {"file": ..., "bytes": ..., "sha256": ...}}},
   "missing_splits": {"train": "hotpot_train_v1.1.json"}}
"""

from __future__ import annotations

import collections
import json
import os
import tempfile
from typing import Any

TIER_RAW = "0_raw"
TIER_VALIDATED = "1_validated"
TIER_TRAINING = "2_training"
TIERS = (TIER_RAW, TIER_VALIDATED, TIER_TRAINING)

REPORT_FILENAME = "data_report.json"


class DataQualityError(RuntimeError):
    """A build dropped too many records (or kept none); ``.report`` holds the full report."""

    def __init__(self, message: str, report: dict[str, Any]):
        super().__init__(message)
        self.report = report


class SplitReport:
    """Counts for one split; filled while the split's records stream through the tiers."""

    def __init__(self, split: str):
        self.split = split
        self.read = 0
        self.dropped = {tier: collections.Counter() for tier in TIERS}
        self.notes: collections.Counter = collections.Counter()
        self.source: dict[str, Any] = {}

    def add_read(self) -> None:
        self.read += 1

    def drop(self, tier: str, reason: str) -> None:
        if tier not in self.dropped:
            raise ValueError(f"unknown tier {tier!r}; expected one of {TIERS}")
        self.dropped[tier][reason] += 1

    def note(self, name: str, count: int = 1) -> None:
        """Counts something worth knowing that did not drop the record."""
        if count:
            self.notes[name] += count

    @property
    def num_dropped(self) -> int:
        return sum(sum(c.values()) for c in self.dropped.values())

    @property
    def kept(self) -> int:
        return self.read - self.num_dropped

    def to_dict(self) -> dict[str, Any]:
        all_dropped: collections.Counter = collections.Counter()
        tiers = {}
        remaining = self.read
        for tier in TIERS:
            n = sum(self.dropped[tier].values())
            tiers[tier] = {
                "in": remaining,
                "out": remaining - n,
                "dropped": dict(sorted(self.dropped[tier].items())),
            }
            remaining -= n
            all_dropped.update(self.dropped[tier])
        return {
            "read": self.read,
            "kept": self.kept,
            "dropped": dict(sorted(all_dropped.items())),
            "tiers": tiers,
            "notes": dict(sorted(self.notes.items())),
            "source": dict(self.source),
        }


def make_report(
    dataset: str,
    version: str,
    splits: dict[str, SplitReport],
    max_drop_fraction: float,
    missing_splits: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Assembles the JSON-able report of one build."""
    return {
        "dataset": dataset,
        "version": version,
        "max_drop_fraction": max_drop_fraction,
        "splits": {name: rep.to_dict() for name, rep in sorted(splits.items())},
        "missing_splits": dict(sorted((missing_splits or {}).items())),
    }


def check_drop_fraction(report: dict[str, Any]) -> None:
    """Raises DataQualityError if any split dropped more than the report's max fraction.

    A split that keeps no record at all also fails: it would give an empty dataset.
    """
    max_fraction = report["max_drop_fraction"]
    problems = []
    for name, split in report["splits"].items():
        read, kept = split["read"], split["kept"]
        dropped = read - kept
        if kept == 0:
            problems.append(
                f"split {name!r} kept no record (read {read}, dropped {split['dropped']})"
            )
        elif dropped > max_fraction * read:
            problems.append(
                f"split {name!r} dropped {dropped} of {read} records ({dropped / read:.1%}) > "
                f"max_drop_fraction={max_fraction:g}; reasons: {split['dropped']}"
            )
    if problems:
        raise DataQualityError(
            f"{report['dataset']}: build rejected, no dataset written: " + "; ".join(problems),
            report,
        )


def report_line(report: dict[str, Any]) -> str:
    """The report as ONE JSON line (what the prepare CLI prints last)."""
    return json.dumps(report, separators=(",", ":"), ensure_ascii=True)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Writes JSON so that a reader sees either the old file or the complete new one.

    Write to a temp file in the same directory, fsync, then os.replace (atomic on POSIX).
    """
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, ensure_ascii=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_report(path: str | os.PathLike) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
