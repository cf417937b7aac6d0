"""Orbax checkpointing: the latest few states (with the data iterator) and the best by F1.

Two managers under the workdir:
  checkpoints/  every `ckpt_every` steps and on preemption; keeps the latest `keep`.
  best/         after each validation; keeps the one with the highest validation F1.
Each checkpoint holds `state` (trainable params, optimizer state, step) and `data` (the input
iterator's state as JSON), so a restart continues with exactly the batches it would have seen.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


def _barrier_prefix(name: str) -> ocp.options.MultiprocessingOptions:
    # Multi-process saves end in barriers named after the step ("async_write_complete.<step>");
    # without a prefix per manager, `best` and `checkpoints` saving the same step at once
    # collide in the coordination service ("Barrier ... is already ongoing").
    return ocp.options.MultiprocessingOptions(barrier_sync_key_prefix=name)


class Checkpointer:
    def __init__(self, workdir: str, keep: int = 3, async_save: bool = True):
        opts = ocp.CheckpointManagerOptions(max_to_keep=keep,
                                            enable_async_checkpointing=async_save,
                                            multiprocessing_options=_barrier_prefix("latest"))
        self.latest = ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")),
                                            options=opts)
        best_opts = ocp.CheckpointManagerOptions(
            max_to_keep=1, best_fn=lambda m: m["f1"], best_mode="max",
            enable_async_checkpointing=async_save,
            multiprocessing_options=_barrier_prefix("best"))
        self.best = ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "best")),
                                          options=best_opts)

    def latest_step(self) -> int | None:
        return self.latest.latest_step()

    def save(self, step: int, state: Any, data_state: dict, force: bool = False) -> None:
        self.latest.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                       data=ocp.args.JsonSave(data_state)),
                         force=force)

    def save_best(self, step: int, state: Any, f1: float) -> None:
        self.best.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
                       metrics={"f1": float(f1)}, force=True)

    def restore(self, abstract_state: Any, step: int | None = None, best: bool = False):
        """Restores (state, data_state) onto the shardings in `abstract_state`.

        `abstract_state` is a tree of `jax.ShapeDtypeStruct` with `.sharding`, so a checkpoint
        written with another device count is resharded on the way in.
        """
        mngr = self.best if best else self.latest
        if step is None:
            step = mngr.best_step() if best else mngr.latest_step()
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {mngr.directory}")
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        if not best:
            items["data"] = ocp.args.JsonRestore()
        out = mngr.restore(step, args=ocp.args.Composite(**items))
        return out["state"], (out["data"] if not best else None)

    def has_best(self) -> bool:
        return self.best.best_step() is not None

    def wait(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.wait()
        self.latest.close()
        self.best.close()


def abstract_like(tree: Any) -> Any:
    """ShapeDtypeStructs (with shardings) of a tree of jax.Arrays."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                        tree)
