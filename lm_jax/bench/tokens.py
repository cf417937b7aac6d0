r"""Token benchmark: generator tokens and latency per question, per method, from an eval report.

    python -m lm_jax.bench.tokens --report=/tmp/wd2/eval/report.json

Reads a report.json (schema in `lm_jax.eval.report`; a file or its directory) and prints one JSON
line per method (`"bench": "tokens"`, `"measure": "method"`) with its generator prompt tokens,
context tokens and latency per question, and their ratios against each baseline present
(`bm25_rag`, `full_context`): `<field>_vs_<baseline>` = method / baseline (below 1 = fewer). A
final `"measure": "summary"` line gives, for the Latent Memory methods, how many times fewer
prompt and context tokens they feed the generator than each baseline (baseline / method) and
their latency ratio. Ratios are null where a value is missing or the denominator is 0.
"""

from __future__ import annotations

import argparse

from lm_jax.bench._util import emit

BENCH = "tokens"
BASELINES = ("bm25_rag", "full_context")
FIELDS = ("prompt_tokens", "context_tokens", "latency_ms")
LATENT_METHODS = ("latent_memory", "latent_memory_bank")


def _ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 4)


def run(report_path: str) -> list[dict]:
    """Prints and returns the JSON records for the report at `report_path`."""
    from lm_jax.eval.report import load_report

    report = load_report(report_path)
    methods = report["methods"]
    records = []
    for name, m in methods.items():
        rec = {"method": name, "n": m["n"], "f1": m["f1"]}
        rec.update({f: m[f] for f in FIELDS})
        for base in BASELINES:
            if base in methods:
                for f in FIELDS:
                    rec[f"{f}_vs_{base}"] = _ratio(m[f], methods[base][f])
        records.append(emit(BENCH, "method", **rec))
    summary = {"report": str(report_path), "k": report["k"],
               "baselines": [b for b in BASELINES if b in methods]}
    for name in LATENT_METHODS:
        if name not in methods:
            continue
        m = methods[name]
        for base in summary["baselines"]:
            b = methods[base]
            summary[f"{name}_fewer_prompt_tokens_than_{base}"] = _ratio(b["prompt_tokens"],
                                                                       m["prompt_tokens"])
            summary[f"{name}_fewer_context_tokens_than_{base}"] = _ratio(b["context_tokens"],
                                                                        m["context_tokens"])
            summary[f"{name}_latency_vs_{base}"] = _ratio(m["latency_ms"], b["latency_ms"])
    records.append(emit(BENCH, "summary", **summary))
    return records


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--report", required=True, help="report.json or its directory")
    args = p.parse_args(argv)
    return run(args.report)


if __name__ == "__main__":
    main()
