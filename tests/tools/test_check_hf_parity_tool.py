"""The parity tool as a user runs it: a subprocess, one JSON line, exit codes, one-line errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

pytest.importorskip("torch")

from lm_jax.hf import checkpoint, testing  # noqa: E402
from lm_jax.models.config import DecoderConfig  # noqa: E402
from lm_jax.tools.check_hf_parity import padded_batch  # noqa: E402

CONFIG = DecoderConfig(model_type="qwen2", vocab_size=128, hidden_size=32, intermediate_size=64,
                       num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16, qkv_bias=True,
                       rms_norm_eps=1e-6, eos_token_id=2, pad_token_id=0)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A checkpoint written by lm_jax's own exporter from random parameters."""
    out = str(tmp_path_factory.mktemp("saved"))
    return checkpoint.save_params(testing.random_params(CONFIG, seed=3), CONFIG, out)


def _run(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "lm_jax.tools.check_hf_parity", *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_tool_prints_one_json_line_and_exits_zero(saved):
    proc = _run(f"--hf_dir={saved}", "--batch=3", "--seq_len=12")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["arch"] == "qwen2" and result["ok"] is True
    assert 0 <= result["max_abs_logit_diff"] <= 1e-4
    assert 0 <= result["max_kl"] < 1e-8


@pytest.mark.parametrize("case", ["missing_dir", "bad_tensor"])
def test_bad_input_gives_one_line_and_exit_2(saved, tmp_path, case):
    if case == "missing_dir":
        hf_dir, expect = str(tmp_path / "nope"), "no such directory"
    else:
        hf_dir = str(tmp_path / "bad")
        os.makedirs(hf_dir)
        os.symlink(os.path.join(saved, "config.json"), os.path.join(hf_dir, "config.json"))
        tensors = load_file(os.path.join(saved, "model.safetensors"))
        tensors["model.norm.weight"] = np.ones(7, np.float32)
        save_file(tensors, os.path.join(hf_dir, "model.safetensors"))
        expect = "model.norm.weight"
    proc = _run(f"--hf_dir={hf_dir}")
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_padded_batch_mixes_left_and_right_padding():
    ids, mask = padded_batch(4, 10, 128)
    assert ids.shape == mask.shape == (4, 10)
    assert mask[0].all()
    assert mask[1, 0] == 0 and mask[1, -1] == 1      # left-padded
    assert mask[2, 0] == 1 and mask[2, -1] == 0      # right-padded
    assert (mask.sum(1) >= 1).all()
