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


def test_keys_from_an_exported_bank(tmp_path):
    import numpy as np

    from lm_jax.bench.retrieval import clustered_keys
    from lm_jax.memory.bank import export_bank

    keys = clustered_keys(1500, 16, num_clusters=15, noise=1.0, seed=0)

    def encode(pairs):
        rows = [int(text) for _, text in pairs]
        return np.zeros((len(rows), 1, 4), np.float32), keys[rows]

    export_bank(tmp_path / "bank", [(f"i{i}", "t", str(i)) for i in range(1500)], encode, 500,
                progress=False)
    cmd = [sys.executable, "-m", "lm_jax.bench.retrieval", f"--bank_dir={tmp_path / 'bank'}",
           "--num_queries=32", "--num_single_queries=4", "--repeats=1", "--no_faiss",
           "--no-sweep"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True,
                         cwd=tmp_path).stdout
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert lines[0]["source"].endswith("bank") and lines[0]["num_items"] == 1500
    assert lines[-1]["measure"] == "summary" and "faiss_qps" not in lines[-1]
    assert lines[-1]["dim"] == 16
