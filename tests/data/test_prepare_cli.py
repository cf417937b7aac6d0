"""`python -m lm_jax.data.prepare`: the report is the last stdout line; failures exit 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from .conftest import hotpot_record, write_json


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "lm_jax.data.prepare", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_prints_the_report_as_last_line(tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    bad = hotpot_record(3, answer=" ")
    write_json(manual / "hotpot_dev_distractor_v1.json", [hotpot_record(0), bad])
    data = tmp_path / "data"
    args = ["--dataset=hotpot_qa/distractor", f"--manual_dir={manual}", f"--data_dir={data}"]

    failed = _run(*args)  # 1 of 2 dropped > 5%
    assert failed.returncode == 1, failed.stderr[-2000:]
    assert "max_drop_fraction" in failed.stderr
    rejected = json.loads(failed.stdout.strip().splitlines()[-1])
    assert rejected["splits"]["validation"]["dropped"] == {"empty_answer": 1}
    assert not os.path.exists(data / "hotpot_qa" / "distractor" / "1.0.0")

    ok = _run(*args, "--max_drop_fraction=0.5")
    assert ok.returncode == 0, ok.stderr[-2000:]
    last = ok.stdout.strip().splitlines()[-1]
    report = json.loads(last)
    assert report["splits"]["validation"] == {
        **report["splits"]["validation"],
        "read": 2,
        "kept": 1,
    }
    with open(data / "hotpot_qa" / "distractor" / "1.0.0" / "data_report.json") as f:
        assert json.load(f) == report
    # Reused: same report, nothing rebuilt.
    again = _run(*args, "--max_drop_fraction=0.5")
    assert json.loads(again.stdout.strip().splitlines()[-1]) == report
    assert "rebuilding" not in again.stderr
