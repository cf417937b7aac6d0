"""launch/colab.ipynb runs top to bottom (quick mode, CPU) and produces the evaluation report."""

from __future__ import annotations

import json
import os
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOK = os.path.join(REPO, "launch", "colab.ipynb")
KERNEL = "lm_jax_test_python"


def _kernel_manager(tmp_path):
    """A kernel running this interpreter (the venv with lm_jax), whatever kernels are installed."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec_dir = tmp_path / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "lm_jax test", "language": "python"}))
    specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    return KernelManager(kernel_name=KERNEL, kernel_spec_manager=specs)


def test_notebook_is_clean_and_valid():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    first = code[0].source
    assert 'os.environ.get("LM_JAX_NOTEBOOK_QUICK") == "1"' in first and "STEPS" in first
    text = "\n".join(c.source for c in nb.cells)
    for api in ("pipeline.train_and_evaluate(", "pipeline.export(", "pipeline.index(",
                "pipeline.evaluate(", "markdown_table(", "tradeoff.png",
                "config.model.compressor", "manual_dir"):
        assert api in text, api
    assert "!python" not in text and "%run" not in text  # the Python API, not a shell-out


def test_notebook_runs_in_quick_mode(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    work = tmp_path / "work"
    env = dict(os.environ, LM_JAX_NOTEBOOK_QUICK="1", LM_JAX_NOTEBOOK_WORKDIR=str(work),
               JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one CPU device, as on a Colab CPU runtime
    client = nbclient.NotebookClient(nb, km=_kernel_manager(tmp_path), timeout=600,
                                     resources={"metadata": {"path": REPO}})
    try:
        client.execute(env=env)
    finally:
        nbformat.write(nb, tmp_path / "executed.ipynb")  # for a look after a failure
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors, errors
    report = json.loads((work / "eval" / "report.json").read_text())
    assert {"latent_memory", "latent_memory_bank", "bm25_rag"} <= set(report["methods"])
    shown = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
             if o.output_type == "display_data"]
    assert any("text/markdown" in o.data and "| method |" in o.data["text/markdown"]
               for o in shown)
    assert any("image/png" in o.data for o in shown)
    stdout = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for o in c.outputs if o.output_type == "stream")
    assert "skipping the install" in stdout and "CPU device" in stdout
    assert "RUN_REAL is False" in stdout
