"""One process of a (possibly multi-process) tiny training run, for tests/test_multiprocess.py.

    python tests/multiprocess_worker.py --workdir W --data_dir D --manual_dir M --tokenizer T \
        --out OUT [--num_processes N --process_id I --port P] [--steps S]

Devices per process come from the environment (XLA_FLAGS, JAX_PLATFORMS: set by the test).
Prepares the HotpotQA-format files in M as a real run would (not the demo's synthetic-world
path), trains `tiny_config` through `lm_jax.pipeline.run(mode="train")`, exports the latent bank and
indexes it (`pipeline.export`, `pipeline.index`), restores the latest checkpoint onto the same
mesh and writes, from process 0: OUT.json (process and device counts, the losses of
metrics.jsonl, the data iterator state), OUT.npz (the restored trainable parameters, gathered
to host) and OUT_bank.npz (the bank's ids and retrieval keys).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def tiny_config(data_dir: str, manual_dir: str, tokenizer: str, steps: int = 4):
    """The demo config shrunk to seconds: random-init tiny models on HotpotQA-format files.

    The tokenizer is given (trained once by the test) rather than trained by each run, so
    every run sees the same token ids.

    accum_steps=2 with in-batch negatives makes the losses depend on which examples share a
    micro-batch, so equal losses across process counts mean equal global batches.
    """
    from tiny_models import shrink_to_tiny  # beside this script

    from configs import hotpotqa

    c = hotpotqa.get_config("demo")
    c.unlock()
    c.total_steps = steps
    c.log_every = 1
    c.ckpt_every = 2
    c.eval_every = 1000  # validation runs once, at the last step
    c.data.synthetic = False
    c.data.data_dir = data_dir
    c.data.manual_dir = manual_dir
    c.model.tokenizer = tokenizer
    c.data.batch_size = 16
    shrink_to_tiny(c)
    c.optim.accum_steps = 2
    c.optim.learning_rate = 1e-2  # updates large enough that a wrong gradient would show
    c.optim.warmup_steps = 0
    c.eval.max_new_tokens = 2
    c.mesh.update(dict(data=-1, fsdp=1, tensor=1))
    c.lock()
    return c


def abstract_train_state(config, mesh):
    """ShapeDtypeStructs with shardings on `mesh` for {"trainable", "opt_state"} of a
    checkpoint, built without allocating or compiling anything."""
    import flax.linen as nn
    import jax

    from lm_jax import sharding
    from lm_jax.hf.tokenizer import load_tokenizer
    from lm_jax.train import build as build_lib
    from lm_jax.train.loop import opt_state_shardings
    from lm_jax.train.step import make_optimizer

    tok = load_tokenizer(config.model.tokenizer)
    arch = build_lib.random_arch(config, len(tok))
    model = build_lib.build_latent_memory(config, arch, arch)
    abstract = jax.eval_shape(model.init, jax.random.key(config.seed))
    with sharding.use_mesh(mesh):
        train_sh, _ = model.split(sharding.logical_to_sharding(abstract, mesh))
    shapes, _ = model.split(nn.unbox(abstract))
    trainable = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), shapes, train_sh)
    tx, _ = make_optimizer(1.0, config.total_steps)
    opt = jax.eval_shape(tx.init, trainable)
    opt = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                       opt, opt_state_shardings(opt, train_sh, mesh))
    return {"trainable": trainable, "opt_state": opt}


def flat(tree) -> dict:
    """{'path': numpy array} of a pytree of fully addressable arrays."""
    import jax
    import numpy as np

    return {jax.tree_util.keystr(p): np.asarray(x)
            for p, x in jax.tree_util.tree_leaves_with_path(tree)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", required=True)
    p.add_argument("--data_dir", required=True)
    p.add_argument("--manual_dir", required=True)
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--num_processes", type=int, default=1)
    p.add_argument("--process_id", type=int, default=0)
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()

    from lm_jax import sharding

    if args.num_processes > 1:  # what lm_jax.main does with --coordinator_address etc.
        sharding.initialize_distributed(f"localhost:{args.port}", args.num_processes,
                                        args.process_id)
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    from lm_jax.memory.bank import LatentBank
    from lm_jax.memory.export import bank_dir
    from lm_jax.pipeline import export, index, run
    from lm_jax.train.checkpoint import Checkpointer
    from lm_jax.train.metrics_log import read_metrics

    config = tiny_config(args.data_dir, args.manual_dir, args.tokenizer, args.steps)
    result = run(config, args.workdir, "train")
    export(config, args.workdir)  # each process encodes its own bank shards
    index(config, args.workdir)

    mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor)
    ckpt = Checkpointer(args.workdir, async_save=False)
    state, data_state = ckpt.restore(abstract_train_state(config, mesh))
    ckpt.close()
    trainable = multihost_utils.process_allgather(state["trainable"], tiled=True)
    if jax.process_index() == 0:
        losses = {r["step"]: [r["loss"], r["loss_recon"], r["loss_contrast"],
                              r["loss_distill"]]
                  for r in read_metrics(args.workdir, "latent_memory")}
        np.savez(args.out + ".npz", **flat(trainable))
        bank = LatentBank.load(bank_dir(args.workdir))
        np.savez(args.out + "_bank.npz", ids=np.array(bank.ids),
                 keys=np.asarray(bank.keys, np.float32))
        with open(args.out + ".json", "w") as f:
            json.dump({"process_count": jax.process_count(), "device_count": jax.device_count(),
                       "local_device_count": jax.local_device_count(),
                       "mesh": dict(mesh.shape), "result": result, "losses": losses,
                       "data_state": data_state}, f)


if __name__ == "__main__":
    main()
