"""Metric logging from process 0: stdout, `workdir/metrics.jsonl` and TensorBoard.

clu's writers would be the usual choice, but importing `clu.metric_writers` requires TensorFlow,
which lm_jax otherwise never needs; TensorBoard event files come from tensorboardX instead.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping

import jax
from absl import logging


class MetricLogger:
    """Writes one JSON object per logged step (`stage`, `step`, metrics) and TensorBoard scalars.

    Only process 0 writes; other processes' calls are no-ops, so callers need no guards.
    """

    def __init__(self, workdir: str, tensorboard: bool = True):
        self.active = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if self.active:
            os.makedirs(workdir, exist_ok=True)
            if tensorboard:
                try:
                    from tensorboardX import SummaryWriter

                    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
                except ImportError:
                    logging.warning("tensorboardX is not installed; no TensorBoard events")

    def write(self, stage: str, step: int, metrics: Mapping[str, float]) -> None:
        if not self.active:
            return
        record = {"stage": stage, "step": int(step), "time": round(time.time(), 3)}
        record.update({k: _plain(v) for k, v in metrics.items()})
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in record.items():
                if isinstance(v, float | int) and k not in ("step", "time"):
                    self._tb.add_scalar(f"{stage}/{k}", v, step)
            self._tb.flush()
        shown = " ".join(f"{k}={_fmt(v)}" for k, v in record.items()
                         if k not in ("stage", "step", "time"))
        print(f"[{stage}] step {step}: {shown}", flush=True)

    def close(self):
        if self._tb is not None:
            self._tb.close()


def read_metrics(workdir: str, stage: str | None = None) -> list[dict]:
    """The records of `workdir/metrics.jsonl` (optionally of one stage), in file order."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if stage is None or r.get("stage") == stage]


def _plain(v):
    v = float(v) if hasattr(v, "__float__") and not isinstance(v, int) else v
    return v


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)
