"""Stage `eval`: every method on the same questions and frozen generator -> report.json.

Writes WORKDIR/eval/report.json (schema in README), WORKDIR/eval/predictions.jsonl and
WORKDIR/eval/tradeoff.png, and prints the Markdown table.
"""

from __future__ import annotations

import json
import os

import jax
from absl import logging

from lm_jax.eval import evaluate as ev
from lm_jax.eval import metrics, report


def eval_stage(config, workdir: str, runner, examples, bank=None, index=None) -> dict:
    k = config.eval.k
    methods = {}
    predictions = {}
    latent_run = None
    for method in config.eval.methods:
        if method == "latent_memory":
            latent_run = ev.run_latent_memory(runner, examples, k)
            records, preds, _ = latent_run
        elif method == "latent_memory_bank":
            if bank is None:
                logging.warning("no bank: skipping latent_memory_bank (run --mode=export,index)")
                continue
            records, preds = ev.run_latent_memory_bank(runner, examples, k, bank, index)
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
            with open(os.path.join(out_dir, "diagnostics.json"), "w") as f:
                json.dump(diag, f, indent=1)
            print("latent_memory diagnostics: " + json.dumps(
                {m: diag[m] for m in ("recall_at_2", "recall_at_k", "recon_token_acc")}),
                flush=True)
        print(report.markdown_table(rep), flush=True)
    return rep
