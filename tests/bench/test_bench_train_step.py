"""The train-step benchmark: FLOP formula by hand, random batch layout, tiny run, paper on CPU."""

import dataclasses
import json
import math
import os
import subprocess
import sys

import numpy as np

from lm_jax.bench import train_step as ts
from lm_jax.bench._util import load_config_file
from lm_jax.models.config import DecoderConfig
from lm_jax.models.latent_memory import LatentMemoryConfig, paper_adapters

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "configs", "hotpotqa.py")


def test_flops_equal_hand_computed_value():
    c = DecoderConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=1,
                      num_heads=4, num_kv_heads=2, head_dim=8)
    lm = LatentMemoryConfig(c, c, paper_adapters(4, 8.0, 0.0), retrieval_dim=16,
                            share_base=True)
    s = ts.StepShapes(batch_size=2, accum_steps=1, max_positives=1, max_negatives=1,
                      evidence_len=4, question_len=3, student_len=5, teacher_len=6,
                      distill_tokens=2, max_extra_negatives=1)
    # Base without embeddings: attn 32*32 + 2*32*16 + 32*32 = 3072, mlp 3*32*64 = 6144,
    # norms 2*32 + final 32 -> 9312. LoRA r=4: q 4*(32+32)=256, k 4*(32+16)=192, v 192, o 256
    # -> compress = query = 896; decode adds gate and up 4*(32+64)=384 each -> 1664.
    # E = 2*(1+1) = 4 items; evidence/recon length 4+1 = 5, question 3+1 = 4,
    # student 5+2-1 = 6, teacher 6+2-1 = 7, D = 2; attention fwd per sequence 4*1*S^2*4*8.
    expected = dict(
        compress_dense=(4 * 9312 + 6 * 896) * 4 * 5,        # 852480
        compress_attention=3 * 128 * 25 * 4,                 # 38400
        query_dense=(4 * 9312 + 6 * 896) * 2 * 4,            # 340992
        query_attention=3 * 128 * 16 * 2,                    # 12288
        recon_dense=(4 * 9312 + 6 * 1664) * 4 * 5,           # 944640
        recon_attention=3 * 128 * 25 * 4,                    # 38400
        recon_vocab=4 * (64 * 32) * 4 * 5,                   # 163840
        # retrieval_proj 6*32*16*(4+2), InfoNCE 6*2*4*16, cross_proj 6*(32*32+32*32)*4
        heads=18432 + 768 + 49152,
        student_dense=4 * 9312 * 2 * 6,                      # 446976
        student_attention=3 * 128 * 36 * 2,                  # 27648
        student_vocab=4 * 2048 * 2 * 2,                      # 32768
        teacher_dense=2 * 9312 * 2 * 7,                      # 260736
        teacher_attention=128 * 49 * 2,                      # 12544
        teacher_vocab=2 * 2048 * 2 * 2,                      # 16384
    )
    got = ts.step_flops(lm, s)
    assert {k: v for k, v in got.items() if k != "total"} == expected
    assert got["total"] == 3256448
    # Accumulation only changes the InfoNCE term (keys per micro-batch).
    got2 = ts.step_flops(lm, dataclasses.replace(s, accum_steps=2))
    assert got["total"] - got2["total"] == 768 // 2


def test_paper_preset_matches_the_paper_config():
    cfg = load_config_file(CONFIG + ":paper")
    assert ts.StepShapes.from_config(cfg) == ts.PAPER_SHAPES
    m = cfg.model
    setup = ts.make_setup(cfg, "paper")
    spec = setup.model.adapters[0]
    assert (spec.rank, spec.alpha, spec.dropout) == (m.lora_rank, m.lora_alpha, m.lora_dropout)
    assert setup.model.retrieval_dim == m.retrieval_dim
    # Parameter counts of Llama-3.2-1B and Llama-3.1-8B.
    assert round(ts.PAPER_COMPRESSOR.num_params() / 1e9, 2) == 1.24
    assert round(ts.PAPER_GENERATOR.num_params() / 1e9, 2) == 8.03


def test_random_batch_has_the_pipeline_layout():
    s = ts.TINY_SHAPES
    b = ts.make_step_batch(s, vocab_size=64, num_latent_tokens=2, seed=3)
    assert b["pos_ids"].shape == (8, 2, 8) and b["neg_mask"].shape == (8, 2, 8)
    assert b["student_ids"].shape == (8, s.student_seq)
    assert b["teacher_ids"].shape == (8, s.teacher_seq)
    assert b["student_out_pos"].shape == b["teacher_out_pos"].shape == (8, s.distill_tokens)
    assert (b["student_out_pos"][:, -1] == s.student_seq - 1).all()
    assert (b["teacher_out_pos"][:, -1] == s.teacher_seq - 1).all()
    # Invalid items have no tokens; every slot points at a valid item and sits on a real token.
    assert (b["pos_mask"].sum(-1)[~b["pos_valid"]] == 0).all()
    valid = np.concatenate([b["pos_valid"], b["neg_valid"]], 1)
    for row in range(8):
        slots = b["student_slot_item"][row]
        used = slots[slots >= 0]
        assert len(used) and valid[row, used].all()
        assert (b["student_mask"][row][slots >= 0] == 1).all()
    assert b["pos_valid"].sum(1).min() >= 2
    assert ts.step_tokens(b) == sum(int(b[k].sum()) for k in (
        "pos_mask", "neg_mask", "question_mask", "student_mask", "teacher_mask"))


def test_tiny_run_prints_json_lines(capsys):
    cfg = load_config_file(CONFIG + ":demo")
    records = ts.run(cfg, "tiny", steps=1, warmup=1, peak_sizes=(128,))
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert lines == records
    by = {r["measure"]: r for r in records}
    assert list(by) == ["config", "flops", "compile", "peak", "steps", "summary"]
    assert all(r["bench"] == "train_step" for r in records)
    s = by["summary"]
    for key in ("step_time_s", "tokens_per_s", "model_flops_per_step", "mfu", "peak_flops",
                "positions_per_s", "compile_s"):
        assert isinstance(s[key], (int, float)) and s[key] > 0, key
    assert s["model_flops_per_step"] == ts.step_flops(
        ts.make_setup(cfg, "tiny").model, ts.TINY_SHAPES)["total"]
    assert math.isfinite(s["loss"])
    assert by["compile"]["mesh_shape"]["data"] == by["config"]["num_devices"]


def test_paper_on_cpu_prints_that_it_needs_an_accelerator():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run(
        [sys.executable, "-m", "lm_jax.bench.train_step", f"--config={CONFIG}", "--size=paper"],
        capture_output=True, text=True, timeout=120, check=True, cwd=ROOT, env=env).stdout
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert [r["measure"] for r in lines] == ["config", "flops", "skipped"]
    assert "accelerator" in lines[-1]["reason"]
    setup = ts.make_setup(load_config_file(CONFIG), "paper")
    assert lines[1]["model_flops_per_step"] == ts.step_flops(setup.model, setup.shapes)["total"]
    assert lines[0]["generator"]["hidden"] == 4096 and lines[0]["compressor"]["layers"] == 16
