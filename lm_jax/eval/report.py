"""Evaluation report: report.json (fixed schema), a markdown table and the F1-vs-tokens plot.

Schema (every method carries every field; null where not applicable)::

    {
      "k": 5,
      "methods": {
        "<method>": {"em": float, "f1": float, "recall_at_k": float, "precision_at_k": float,
                     "prompt_tokens": float, "context_tokens": float, "latency_ms": float,
                     "n": int}
      },
      "bank": {"items": int, "bytes_per_item": int}
    }

em, f1, recall_at_k and precision_at_k are fractions in [0, 1]; prompt_tokens and context_tokens
are generator tokens per question (the whole prompt, and the evidence part only: k for Latent
Memory); latency_ms is per question; n is the number of questions.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Mapping
from typing import Any

METHOD_FIELDS = (
    "em", "f1", "recall_at_k", "precision_at_k", "prompt_tokens", "context_tokens", "latency_ms",
    "n",
)
BANK_FIELDS = ("items", "bytes_per_item")
REPORT_FILE = "report.json"
PLOT_FILE = "tradeoff.png"


class ReportError(ValueError):
    """A report does not follow the schema (the message names the method and field)."""


def _num(value: Any, where: str, integer: bool = False) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:  # numpy scalars
            value = value.item()
        except AttributeError:
            raise ReportError(f"{where} must be a number or null, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ReportError(f"{where} must be a number or null, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/inf; a missing value is what it means
    if integer:
        if float(value) != int(value):
            raise ReportError(f"{where} must be an integer, got {value!r}")
        return int(value)
    return float(value)


def make_report(
    k: int,
    methods: Mapping[str, Mapping[str, Any]],
    bank_items: int | None = None,
    bytes_per_item: int | None = None,
) -> dict[str, Any]:
    """Builds a schema-conforming report; missing method fields become null.

    Args:
      k: retrieval cut-off used by every method.
      methods: method name -> {field: value} with fields from METHOD_FIELDS.
      bank_items, bytes_per_item: the latent bank's size, when one was used.

    Raises:
      ReportError: an unknown field or a non-numeric value (named in the message).
    """
    out_methods: dict[str, dict[str, Any]] = {}
    for name, fields in methods.items():
        unknown = sorted(set(fields) - set(METHOD_FIELDS))
        if unknown:
            raise ReportError(
                f"method {name!r}: unknown field(s) {unknown}; allowed: {list(METHOD_FIELDS)}"
            )
        out_methods[str(name)] = {
            f: _num(fields.get(f), f"methods.{name}.{f}", integer=(f == "n"))
            for f in METHOD_FIELDS
        }
    return {
        "k": _num(k, "k", integer=True),
        "methods": out_methods,
        "bank": {
            "items": _num(bank_items, "bank.items", integer=True),
            "bytes_per_item": _num(bytes_per_item, "bank.bytes_per_item", integer=True),
        },
    }


def validate_report(report: Mapping[str, Any]) -> dict[str, Any]:
    """Checks a report dict against the schema and returns it normalised (ReportError if not)."""
    extra = sorted(set(report) - {"k", "methods", "bank"})
    if extra:
        raise ReportError(f"unknown top-level key(s) {extra}")
    if "k" not in report or "methods" not in report:
        raise ReportError("a report needs 'k' and 'methods'")
    bank = report.get("bank") or {}
    unknown = sorted(set(bank) - set(BANK_FIELDS))
    if unknown:
        raise ReportError(f"bank: unknown field(s) {unknown}; allowed: {list(BANK_FIELDS)}")
    return make_report(
        report["k"], report["methods"], bank.get("items"), bank.get("bytes_per_item")
    )


def write_report(report: Mapping[str, Any], path: str | os.PathLike) -> str:
    """Validates and writes the report atomically; ``path`` is a file or a directory (then
    ``<dir>/report.json``). Returns the file path."""
    report = validate_report(report)
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, REPORT_FILE)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(report, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def load_report(path: str | os.PathLike) -> dict[str, Any]:
    """Reads and validates a report.json (a file or its directory)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, REPORT_FILE)
    with open(path, encoding="utf-8") as f:
        return validate_report(json.load(f))


def _fmt(value: float | int | None, kind: str) -> str:
    if value is None:
        return "–"
    if kind == "pct":
        return f"{100 * value:.1f}"
    if kind == "int":
        return f"{int(value)}"
    return f"{value:.1f}"


def markdown_table(report: Mapping[str, Any]) -> str:
    """A GitHub-markdown table of the report, one row per method (EM/F1/R@k/P@k in percent),
    followed by a line on the bank when it is known."""
    report = validate_report(report)
    k = report["k"]
    cols = [
        ("method", None, None), ("EM", "em", "pct"), ("F1", "f1", "pct"),
        (f"R@{k}", "recall_at_k", "pct"), (f"P@{k}", "precision_at_k", "pct"),
        ("prompt tok", "prompt_tokens", "num"), ("context tok", "context_tokens", "num"),
        ("latency ms", "latency_ms", "num"), ("n", "n", "int"),
    ]
    lines = [
        "| " + " | ".join(c[0] for c in cols) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(cols) - 1)) + "|",
    ]
    for name, m in report["methods"].items():
        cells = [name] + [_fmt(m[field], kind) for _, field, kind in cols[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    bank = report["bank"]
    if bank["items"] is not None or bank["bytes_per_item"] is not None:
        lines.append("")
        lines.append(f"Bank: {_fmt(bank['items'], 'int')} items, "
                     f"{_fmt(bank['bytes_per_item'], 'int')} bytes per item.")
    return "\n".join(lines) + "\n"


def plot_tradeoff(report: Mapping[str, Any], path: str | os.PathLike) -> str:
    """Plots F1 (%) against generator context tokens per question, one labelled point per method.

    Methods without f1 or context_tokens are left out. The x axis is logarithmic when the token
    counts span more than 20x (symlog if a method uses 0 context tokens). ``path`` is a file or a
    directory (then ``<dir>/tradeoff.png``). Uses the Agg canvas directly, so the caller's
    matplotlib backend is untouched. Returns the file path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    report = validate_report(report)
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, PLOT_FILE)
    pts = [
        (name, m["context_tokens"], 100 * m["f1"])
        for name, m in report["methods"].items()
        if m["f1"] is not None and m["context_tokens"] is not None
    ]
    fig = Figure(figsize=(6.4, 4.4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if pts:
        xs = [p[1] for p in pts]
        positive = [x for x in xs if x > 0]
        if positive and max(positive) / min(positive) > 20:
            if any(x <= 0 for x in xs):
                ax.set_xscale("symlog", linthresh=1.0)
            else:
                ax.set_xscale("log")
        for name, x, y in pts:
            ax.scatter([x], [y], s=36, zorder=3)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.margins(x=0.12)  # room for the labels of the outermost points
        ys = [p[2] for p in pts]
        pad = max(2.0, 0.1 * (max(ys) - min(ys)))
        ax.set_ylim(max(0.0, min(ys) - pad), min(100.0, max(ys) + pad))
    else:
        ax.text(0.5, 0.5, "no method has both f1 and context_tokens", ha="center",
                va="center", transform=ax.transAxes)
    ax.set_xlabel("generator context tokens per question")
    ax.set_ylabel("F1 (%)")
    ax.set_title(f"Quality vs context size (k={report['k']})")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    return path
