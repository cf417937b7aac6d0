"""The retrieval benchmark runs at a tiny size and prints valid JSON lines."""

import json
import subprocess
import sys


def test_tiny_run_prints_json_lines(tmp_path):
    cmd = [sys.executable, "-m", "lm_jax.bench.retrieval", "--num_items=3000", "--dim=32",
           "--num_queries=64", "--num_single_queries=8", "--repeats=1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True,
                         cwd=tmp_path).stdout
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert all(rec["bench"] == "retrieval" for rec in lines)
    measures = [rec["measure"] for rec in lines]
    for m in ("data", "exact_batched", "exact_single", "scann_build", "scann_batched",
              "scann_single", "faiss_build", "faiss_batched", "summary"):
        assert m in measures
    summary = lines[-1]
    assert summary["measure"] == "summary"
    for key in ("scann_qps", "exact_qps", "recall_at_10", "faiss_qps"):
        assert isinstance(summary[key], (int, float))
    assert 0.0 <= summary["recall_at_10"] <= 1.0
    assert summary["num_items"] == 3000 and summary["dim"] == 32
