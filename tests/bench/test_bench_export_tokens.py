"""The export and token benchmarks run at a tiny size and print valid JSON lines."""

import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from lm_jax.bench import export as export_bench
from lm_jax.bench import tokens as tokens_bench
from lm_jax.bench._util import load_config_file
from lm_jax.eval.report import make_report, write_report

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "configs", "hotpotqa.py")


def tiny_demo_config():
    cfg = copy.deepcopy(load_config_file(CONFIG + ":demo"))
    cfg.model.arch.update(dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=4,
                               num_kv_heads=2, head_dim=8))
    cfg.model.lora_rank = 4
    cfg.model.retrieval_dim = 16
    cfg.data.max_evidence_len = 16
    cfg.eval.batch_size = 32
    cfg.export.batch_size = 64
    return cfg


def test_export_tiny_prints_json_lines(capsys):
    records = export_bench.run(tiny_demo_config(), num_questions=3,
                               dtypes=("bfloat16", "int8", "float32"))
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert lines == records and all(r["bench"] == "export" for r in records)
    measures = [r["measure"] for r in records]
    assert measures == ["config", "encode", "export", "export", "export", "error", "error",
                        "summary"]
    exports = {r["latent_dtype"]: r for r in records if r["measure"] == "export"}
    n = records[0]["num_items"]
    assert n > 10 and all(e["items"] == n and e["items_per_s"] > 0 for e in exports.values())
    # H = 32, R = 16: bf16 2*32, int8 32 + 4 (scale), fp32 4*32; key 4*16.
    assert {d: e["latent_bytes_per_item"] for d, e in exports.items()} == {
        "bfloat16": 64, "int8": 36, "float32": 128}
    assert all(e["bank_bytes_per_item"] == e["latent_bytes_per_item"] + 64
               for e in exports.values())
    assert exports["bfloat16"]["paper_bytes_per_item"] == 4096 + 2048
    assert all(e["disk_latent_bytes_per_item"] >= e["latent_bytes_per_item"]
               for e in exports.values())
    assert exports["float32"]["read_back_error"]["max_abs"] == 0.0
    errors = {r["latent_dtype"]: r for r in records if r["measure"] == "error"}
    assert 0 < errors["bfloat16"]["rel_l2_mean"] < 0.01
    assert 0 < errors["int8"]["rel_l2_mean"] < 0.02
    assert errors["int8"]["cosine_min"] > 0.999
    # The bank's stored latents are exactly the quantised ones.
    assert exports["int8"]["read_back_error"]["rel_l2_mean"] == pytest.approx(
        errors["int8"]["rel_l2_mean"])


def test_quantization_error_of_known_latents():
    z = np.array([[[1.0, -0.5, 0.25, 0.0]]], np.float32)
    assert export_bench.quantization_error(z, "bfloat16")["max_abs"] == 0.0  # exact in bf16
    err = export_bench.quantization_error(z, "int8")
    # scale 1/127: 0.5 -> rint(63.5) = 64 steps (error 0.5/127), 0.25 -> rint(31.75) = 32
    # steps (error 0.25/127); 1.0 and 0.0 are exact.
    assert err["max_abs"] == pytest.approx(0.5 / 127, rel=1e-5)


def test_tokens_report_ratios(tmp_path):
    report = make_report(5, {
        "latent_memory": dict(f1=0.5, prompt_tokens=60, context_tokens=5, latency_ms=20, n=10),
        "bm25_rag": dict(f1=0.6, prompt_tokens=150, context_tokens=100, latency_ms=40, n=10),
        "full_context": dict(f1=0.7, prompt_tokens=600, context_tokens=500, latency_ms=80,
                             n=10),
        "no_retrieval": dict(f1=0.1, prompt_tokens=50, context_tokens=0, latency_ms=None,
                             n=10),
    })
    path = write_report(report, str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "lm_jax.bench.tokens", f"--report={path}"],
                         capture_output=True, text=True, timeout=120, check=True,
                         cwd=ROOT).stdout
    lines = [json.loads(x) for x in out.splitlines()]
    assert all(r["bench"] == "tokens" for r in lines)
    by = {r.get("method", r["measure"]): r for r in lines}
    assert set(by) == {"latent_memory", "bm25_rag", "full_context", "no_retrieval", "summary"}
    lm = by["latent_memory"]
    assert (lm["prompt_tokens"], lm["context_tokens"], lm["latency_ms"]) == (60, 5, 20)
    assert lm["prompt_tokens_vs_bm25_rag"] == 0.4 and lm["context_tokens_vs_full_context"] == 0.01
    assert lm["latency_ms_vs_bm25_rag"] == 0.5
    assert by["no_retrieval"]["latency_ms_vs_full_context"] is None
    s = by["summary"]
    assert s["latent_memory_fewer_context_tokens_than_bm25_rag"] == 20.0
    assert s["latent_memory_fewer_prompt_tokens_than_full_context"] == 10.0
    assert s["latent_memory_latency_vs_full_context"] == 0.25
    assert tokens_bench.run(path)[-1] == s
