"""Stage `eval`: every method on the same questions and frozen generator -> report.json.

Writes WORKDIR/eval/report.json (schema in README), WORKDIR/eval/predictions.jsonl and
WORKDIR/eval/tradeoff.png, and prints the Markdown table.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np
from absl import logging

from lm_jax.eval import evaluate as ev
from lm_jax.eval import metrics, report
from lm_jax.memory.index import ExactIndex


def eval_stage(config, workdir: str, runner, examples, bank=None, index=None) -> dict:
    k = config.eval.k
    methods = {}
    predictions = {}
    latent_run = bank_recall_exact = None
    for method in config.eval.methods:
        if method == "latent_memory":
            latent_run = ev.run_latent_memory(runner, examples, k)
            records, preds, _ = latent_run
        elif method == "latent_memory_bank":
            if bank is None:
                logging.warning("no bank: skipping latent_memory_bank (run --mode=export,index)")
                continue
            records, preds = ev.run_latent_memory_bank(runner, examples, k, bank, index)
            if not isinstance(index, ExactIndex):
                # The same questions through brute force over the same bank: what the
                # approximate index costs in recall.
                exact = ev.run_latent_memory_bank(runner, examples, k, bank,
                                                  ExactIndex(np.asarray(bank.keys)))[0]
                bank_recall_exact = metrics.aggregate(exact)["recall_at_k"]
        else:
            records, preds = ev.run_text_method(runner, examples, method, k)
        agg = metrics.aggregate(records)
        methods[method] = agg
        predictions[method] = preds
        print(f"eval {method}: f1={agg['f1']:.3f} em={agg['em']:.3f}", flush=True)
    rep = report.make_report(
        k=k, methods=methods, bank_items=None if bank is None else bank.num_items,
        bytes_per_item=None if bank is None else bank.bytes_per_item)
    out_dir = os.path.join(workdir, "eval")
    if jax.process_index() == 0:
        os.makedirs(out_dir, exist_ok=True)
        report.write_report(rep, os.path.join(out_dir, "report.json"))
        with open(os.path.join(out_dir, "predictions.jsonl.tmp"), "w") as f:
            for i, ex in enumerate(examples):
                row = {"id": ex.id, "question": ex.question, "answer": ex.answer}
                row.update({m: p[i] for m, p in predictions.items()})
                f.write(json.dumps(row) + "\n")
        os.replace(os.path.join(out_dir, "predictions.jsonl.tmp"),
                   os.path.join(out_dir, "predictions.jsonl"))
        report.plot_tradeoff(rep, os.path.join(out_dir, "tradeoff.png"))
        if latent_run is not None:
            diag = ev.diagnostics(runner, examples, k, run=latent_run)
            if "latent_memory_bank" in methods:
                diag["bank_recall_at_k"] = methods["latent_memory_bank"]["recall_at_k"]
                diag["bank_recall_at_k_exact_search"] = (
                    bank_recall_exact if bank_recall_exact is not None
                    else diag["bank_recall_at_k"])
                diag["bank_index"] = type(index).__name__
            with open(os.path.join(out_dir, "diagnostics.json"), "w") as f:
                json.dump(diag, f, indent=1)
            print("latent_memory diagnostics: " + json.dumps(
                {m: v for m, v in diag.items() if m not in ("n", "em", "f1")}), flush=True)
        print(report.markdown_table(rep), flush=True)
    return rep
