"""train_and_evaluate: bit-exact resume after SIGTERM, NaN stop, config errors before compiling."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from lm_jax.train import build as build_lib
from lm_jax.train.loop import NonFiniteLossError, train_and_evaluate
from lm_jax.train.metrics_log import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))
from tiny_models import shrink_to_tiny  # noqa: E402

from configs import hotpotqa  # noqa: E402


def tiny_config(data_dir, **overrides):
    c = hotpotqa.get_config("demo")
    c.unlock()
    c.total_steps = 6
    c.log_every = 1
    c.ckpt_every = 3
    c.eval_every = 100
    c.data.data_dir = str(data_dir)
    c.data.num_train_questions = 48
    c.data.num_eval_questions = 8
    c.data.batch_size = 4
    shrink_to_tiny(c)
    c.mesh.num_devices = 1  # test_step.py covers the sharded step; compiling it here is slow
    for k, v in overrides.items():
        node = c
        *path, last = k.split(".")
        for p in path:
            node = node[p]
        node[last] = v
    c.lock()
    return c


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tfds")


def _losses(workdir):
    return {r["step"]: (r["loss"], r["loss_recon"], r["loss_contrast"], r["loss_distill"])
            for r in read_metrics(str(workdir), "latent_memory")}


def _final_state(workdir, step):
    """The checkpointed trainable params and optimizer state at `step`, as host arrays."""
    import orbax.checkpoint as ocp

    mngr = ocp.CheckpointManager(str(workdir / "checkpoints"))
    assert mngr.latest_step() == step
    out = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    mngr.close()
    return out["state"]


def test_sigterm_resume_is_bit_identical(tmp_path, data_dir):
    config = tiny_config(data_dir, **{"eval.val_questions": 0})
    straight = tmp_path / "straight"
    train_and_evaluate(config, str(straight))

    def preempt_at_3(step, metrics):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    resumed = tmp_path / "resumed"
    first = train_and_evaluate(config, str(resumed), hooks=[preempt_at_3])
    assert first["preempted_at"] == 3
    assert max(_losses(resumed)) == 3
    train_and_evaluate(config, str(resumed))

    a, b = _losses(straight), _losses(resumed)
    assert sorted(a) == list(range(1, 7)) and sorted(b) == list(range(1, 7))
    for step in range(1, 7):
        assert a[step] == b[step], f"step {step}: {a[step]} != {b[step]}"  # bit for bit
    import jax

    pa, pb = _final_state(straight, 6), _final_state(resumed, 6)
    assert len(jax.tree.leaves(pa)) == len(jax.tree.leaves(pb)) > 0
    for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
        assert np.array_equal(np.asarray(x), np.asarray(y))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, data_dir):
    # A NaN learning rate keeps step 1's loss finite and poisons every parameter after it.
    config = tiny_config(data_dir, **{"optim.learning_rate": float("nan"), "ckpt_every": 1})
    with pytest.raises(NonFiniteLossError, match="step 2.*last good checkpoint \\(step 1\\)"):
        train_and_evaluate(config, str(tmp_path / "nan"))
    assert sorted(os.listdir(tmp_path / "nan" / "checkpoints")) == ["1"]


@pytest.mark.parametrize("key,value,needle", [
    ("data.batch_size", 6, "not divisible by optim.accum_steps"),
    ("model.arch.num_heads", 3, "not a multiple of num_kv_heads"),
    ("model.num_latent_tokens", 0, "num_latent_tokens"),
    ("data.max_extra_negatives", 5, "exceeds data.max_negatives"),
    ("data.synthetic_names", "letters", "data.synthetic_names: must be one of"),
    ("data.negatives", "closest", "data.negatives: must be one of"),
    ("data.max_teacher_len", 2000, "teacher prompt \\+ distill tokens exceed"),
])
def test_inconsistent_config_is_rejected_before_compiling(tmp_path, data_dir, key, value, needle):
    overrides = {key: value}
    if key == "data.batch_size":
        overrides["optim.accum_steps"] = 4
    if key == "model.arch.num_heads":
        overrides["model.arch.num_kv_heads"] = 2
    with pytest.raises(build_lib.ConfigError, match=needle):
        train_and_evaluate(tiny_config(data_dir, **overrides), str(tmp_path / "w"))
    assert not os.path.exists(tmp_path / "w" / "checkpoints")


def _main(args, tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    return subprocess.run([sys.executable, "-m", "lm_jax.main", *args,
                           f"--workdir={tmp_path}/w"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_main_rejects_unknown_key_and_missing_model_path(tmp_path):
    r = _main(["--config=configs/hotpotqa.py:demo", "--config.model.no_such_key=1"], tmp_path)
    assert r.returncode != 0 and "no_such_key" in r.stderr
    r = _main(["--config=configs/hotpotqa.py", "--mode=export",
               f"--config.model.generator={tmp_path}/missing",
               f"--config.model.compressor={tmp_path}/missing",
               "--config.data.synthetic=True", "--config.data.num_train_questions=8",
               "--config.data.num_eval_questions=4"], tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "--config.model.generator" in r.stderr and "missing" in r.stderr
    assert "Traceback" not in r.stderr
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    r = subprocess.run([sys.executable, "-m", "lm_jax.main", "--config=configs/hotpotqa.py:demo",
                        "--workdir=gs://bucket/run"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2 and "gcsfuse" in r.stderr and "Traceback" not in r.stderr
