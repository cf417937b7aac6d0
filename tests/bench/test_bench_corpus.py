"""The corpus benchmark at a tiny size: every phase prints its JSON line with time and memory."""

import csv
import json
import subprocess
import sys


def test_tiny_corpus_run(tmp_path):
    cmd = [sys.executable, "-m", "lm_jax.bench.corpus", "--num_passages=300", "--words=20",
           f"--workdir={tmp_path}", "--chunk_size=100"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout
    lines = {r["measure"]: r for r in map(json.loads, out.splitlines()) if r["bench"] == "corpus"}
    assert list(lines) == ["generate", "build", "bm25", "search"]
    assert all(r["peak_rss_mb"] > 0 and r["seconds"] >= 0 for r in lines.values())
    assert lines["build"]["read"] == lines["build"]["kept"] == 300
    assert lines["bm25"]["num_docs"] == 300 and lines["search"]["top1_valid"]
    with open(tmp_path / "manual" / "passages.tsv", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    assert rows[0] == ["id", "text", "title"] and len(rows) == 301
    assert len(rows[1][1].split()) == 20
