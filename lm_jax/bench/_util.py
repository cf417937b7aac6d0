"""Small helpers shared by the step, export and token benchmarks: JSON lines, machine load."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys


def emit(bench: str, measure: str, **fields) -> dict:
    """Prints one JSON line ``{"bench": bench, "measure": measure, ...}`` and returns it."""
    rec = {"bench": bench, "measure": measure, **fields}
    print(json.dumps(rec), flush=True)
    return rec


def loadavg() -> list[float] | None:
    """1/5/15-minute load average: other processes on the machine skew every timing."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine() -> dict:
    """CPU count, architecture, Python and JAX versions, the first device's kind."""
    import jax

    dev = jax.devices()[0]
    return dict(cpus=os.cpu_count(), arch=platform.machine(), python=sys.version.split()[0],
                jax=jax.__version__, platform=dev.platform, device_kind=dev.device_kind,
                num_devices=jax.device_count(), num_processes=jax.process_count())


def load_config_file(spec: str):
    """``path[:variant]`` -> the file's ``get_config(variant)`` (for in-process callers/tests)."""
    path, _, variant = spec.partition(":")
    mod_spec = importlib.util.spec_from_file_location("_bench_config", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module.get_config(variant or None)
