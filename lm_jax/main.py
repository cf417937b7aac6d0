r"""lm_jax entry point: parse flags, dispatch to the library.

  python -m lm_jax.main --config=configs/hotpotqa.py:demo --workdir=/tmp/lm --mode=all

Modes: train, export, index, eval, all (every stage not done yet), ask (--question="...").
Multi-host: on Cloud TPU `jax.distributed` initialises itself; elsewhere pass
--coordinator_address, --num_processes and --process_id.
"""

from __future__ import annotations

import json
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file (path[:variant]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and artifacts.")
_MODE = flags.DEFINE_enum("mode", "all", ["train", "export", "index", "eval", "all", "ask"],
                          "What to run.")
_QUESTION = flags.DEFINE_string("question", None, "The question for --mode=ask.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 (multi-process runs off Cloud TPU).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_AUTO_DISTRIBUTED = flags.DEFINE_bool(
    "auto_distributed", False, "Call jax.distributed.initialize() with cluster auto-detection "
    "(Cloud TPU pods, SLURM).")

flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from lm_jax import pipeline, sharding
    from lm_jax.data.builders.report import DataQualityError
    from lm_jax.hf.checkpoint import CheckpointError
    from lm_jax.hf.tokenizer import TokenizerError
    from lm_jax.train.build import ConfigError

    # Errors about the user's input: one line naming what to fix, no traceback.
    user_errors = (ConfigError, CheckpointError, TokenizerError, DataQualityError,
                   FileNotFoundError)

    sharding.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                                    auto=_AUTO_DISTRIBUTED.value)
    config, workdir, mode = _CONFIG.value, _WORKDIR.value, _MODE.value
    try:
        if "://" in workdir:
            # Orbax would write gs:// itself, but the data, bank, metrics and report use POSIX
            # file I/O: a remote URL would silently become a local directory on every host.
            raise ConfigError(
                f"--workdir={workdir}: remote URLs are not supported; mount the bucket (e.g. "
                "Cloud Storage FUSE: gcsfuse BUCKET /mnt/BUCKET) and pass the mounted path. "
                "launch/tpu_pod.sh does this for you.")
        if mode == "ask":
            if not _QUESTION.value:
                raise app.UsageError("--mode=ask needs --question")
            print(json.dumps(pipeline.ask_question(config, workdir, _QUESTION.value), indent=2))
        else:
            pipeline.run(config, workdir, mode)
    except user_errors as e:
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
