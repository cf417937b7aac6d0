"""Build (or reuse) a TFDS dataset and return / print its data report.

    python -m lm_jax.data.prepare --dataset=hotpot_qa/distractor --manual_dir=DIR --data_dir=DIR

prints TFDS's progress, then the report as ONE JSON line, the last line of stdout (also on
a rejected build, which exits with status 1). Python: `prepare_dataset(...)` returns the
report dict; `prepare_synthetic(...)` first writes the synthetic world into manual_dir.

Fast path: a dataset that is already prepared is reused when its sources are unchanged
(each split file in manual_dir has the size and sha256 recorded in its data_report.json, and
no split file has appeared that the prepared dataset lacks); otherwise it is rebuilt.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from typing import Any

from lm_jax.data.builders import base
from lm_jax.data.builders import report as report_lib


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def _stale_reason(builder, report: dict[str, Any], manual_dir: str | None) -> str | None:
    """Why a prepared dataset no longer matches manual_dir (None: it matches)."""
    if manual_dir is None:
        return None  # downloaded sources are pinned by checksums.tsv
    for split, fname in builder.builder_config.split_files.items():
        path = os.path.join(manual_dir, fname)
        built = report["splits"].get(split)
        if built is None:
            if os.path.isfile(path):
                return f"{fname} appeared (split {split!r} was not built)"
            continue
        if not os.path.isfile(path):
            return f"{fname} is gone"
        src = built.get("source", {})
        if os.path.getsize(path) != src.get("bytes") or _sha256(path) != src.get("sha256"):
            return f"{fname} changed"
    return None


def prepare_dataset(
    name: str,
    manual_dir: str | os.PathLike | None,
    data_dir: str | os.PathLike,
    max_drop_fraction: float = base.DEFAULT_MAX_DROP_FRACTION,
    *,
    require_all_splits: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """Builds dataset `name` (e.g. "hotpot_qa/distractor") into data_dir; returns its report.

    Args:
      name: TFDS name with config, or a short alias (lm_jax.data.builders.ALIASES: 2wiki,
        musique, nq, triviaqa, popqa, flashrag, qasper, wice, dpr_corpus, hotpotqa).
      manual_dir: directory with the raw files under their official names; None downloads
        them (online, checksum-verified).
      data_dir: TFDS data_dir; the dataset lands in data_dir/<name>/<version>/ together
        with data_report.json.
      max_drop_fraction: a split dropping more than this fraction of its records fails the
        build (DataQualityError, no dataset written). Also checked against a reused report.
      require_all_splits: a split file missing from manual_dir is an error (default: build
        the splits that exist; the report lists the others under missing_splits).
      force: rebuild even if prepared and unchanged.
    Returns:
      the report: {"dataset", "version", "max_drop_fraction", "splits": {split: {"read",
      "kept", "dropped": {reason: n}, "tiers", "notes", "source"}}, "missing_splits"}.
    """
    import tensorflow_datasets as tfds

    import lm_jax.data.builders  # registers the builders

    name = lm_jax.data.builders.ALIASES.get(name, name)
    manual_dir = os.fspath(manual_dir) if manual_dir is not None else None
    builder = tfds.builder(
        name,
        data_dir=os.fspath(data_dir),
        max_drop_fraction=max_drop_fraction,
        require_all_splits=require_all_splits,
    )
    path = base.report_path(builder)
    mode = tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS
    if builder.is_prepared():
        if not os.path.isfile(path):
            stale = f"{path} is missing"
        else:
            report = report_lib.read_report(path)
            stale = "forced" if force else _stale_reason(builder, report, manual_dir)
            if stale is None:
                # The stored report must also pass today's threshold.
                report_lib.check_drop_fraction({**report, "max_drop_fraction": max_drop_fraction})
                return report
        print(f"{name}: rebuilding ({stale})", file=sys.stderr)
        # Deletes the old version first; the new one appears only when complete.
        mode = tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            manual_dir=manual_dir, download_mode=mode, try_download_gcs=False
        )
    )
    return builder.data_report or report_lib.read_report(path)


def prepare_synthetic(
    data_dir: str | os.PathLike,
    manual_dir: str | os.PathLike,
    num_train: int = 5000,
    num_validation: int = 500,
    seed: int = 0,
    max_drop_fraction: float = 0.0,
) -> dict[str, Any]:
    """Writes the synthetic train/test worlds into manual_dir (official file names) and
    prepares them as `hotpot_qa/distractor` in data_dir. Synthetic data is valid by
    construction, so by default no record may be dropped."""
    from lm_jax.data import synthetic

    manual_dir = os.fspath(manual_dir)
    for fname, n, world in (
        ("hotpot_train_v1.1.json", num_train, "train"),
        ("hotpot_dev_distractor_v1.json", num_validation, "test"),
    ):
        records = synthetic.generate(n, seed, world)
        path = os.path.join(manual_dir, fname)
        # Rewrite only on change: same bytes -> same sha256 -> the fast path reuses the data.
        if not os.path.isfile(path) or _read(path) != synthetic.dumps(records):
            synthetic.write(path, records)
    return prepare_dataset("hotpot_qa/distractor", manual_dir, data_dir, max_drop_fraction)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build a TFDS dataset and print its report.")
    parser.add_argument(
        "--dataset", default="hotpot_qa/distractor",
        help="TFDS name/config or alias (2wiki, musique, nq, triviaqa, popqa, flashrag, "
        "qasper, wice, dpr_corpus)",
    )
    parser.add_argument("--manual_dir", default=None, help="raw files (default: download)")
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--max_drop_fraction", type=float, default=base.DEFAULT_MAX_DROP_FRACTION)
    parser.add_argument("--require_all_splits", action="store_true")
    parser.add_argument("--force", action="store_true", help="rebuild even if prepared")
    args = parser.parse_args(argv)
    try:
        report = prepare_dataset(
            args.dataset,
            args.manual_dir,
            args.data_dir,
            args.max_drop_fraction,
            require_all_splits=args.require_all_splits,
            force=args.force,
        )
    except report_lib.DataQualityError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.stdout.flush()
        print(report_lib.report_line(e.report))
        return 1
    sys.stdout.flush()
    print(report_lib.report_line(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["prepare_dataset", "prepare_synthetic"]
