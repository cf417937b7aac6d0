"""report.json schema, markdown table, trade-off plot."""

import json

import numpy as np
import pytest

from lm_jax.eval.report import (
    METHOD_FIELDS,
    ReportError,
    load_report,
    make_report,
    markdown_table,
    plot_tradeoff,
    write_report,
)


def sample_report():
    return make_report(
        5,
        {
            "latent_memory": {"em": 0.41, "f1": 0.55, "recall_at_k": 0.8, "precision_at_k": 0.32,
                              "prompt_tokens": 61.0, "context_tokens": 5, "latency_ms": 120.5,
                              "n": 1000},
            "bm25": {"em": 0.38, "f1": 0.51, "recall_at_k": 0.6, "precision_at_k": 0.24,
                     "prompt_tokens": 210.0, "context_tokens": 150.0, "latency_ms": 300.0,
                     "n": np.int64(1000)},
            "full_context": {"em": 0.45, "f1": 0.6, "prompt_tokens": 1400, "context_tokens": 1350,
                             "n": 1000},
            "no_retrieval": {"em": 0.2, "f1": 0.28, "context_tokens": 0, "n": 1000},
        },
        bank_items=4_000_000,
        bytes_per_item=6144,
    )


def test_schema_and_atomic_write(tmp_path):
    r = sample_report()
    assert set(r) == {"k", "methods", "bank"}
    for m in r["methods"].values():
        assert tuple(m) == METHOD_FIELDS
    assert r["methods"]["full_context"]["recall_at_k"] is None
    assert isinstance(r["methods"]["bm25"]["n"], int)
    path = write_report(r, tmp_path)
    assert path == str(tmp_path / "report.json")
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk == r and on_disk["bank"] == {"items": 4_000_000, "bytes_per_item": 6144}
    assert load_report(tmp_path) == r
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temp file left
    nan = make_report(5, {"m": {"f1": float("nan")}})
    assert nan["methods"]["m"]["f1"] is None and nan["bank"]["items"] is None


def test_schema_errors():
    with pytest.raises(ReportError, match="method 'x'.*unknown field.*'bleu'"):
        make_report(5, {"x": {"bleu": 0.3}})
    with pytest.raises(ReportError, match="methods.x.f1 must be a number"):
        make_report(5, {"x": {"f1": "high"}})
    with pytest.raises(ReportError, match="must be an integer"):
        make_report(5, {"x": {"n": 2.5}})


def test_markdown_table():
    md = markdown_table(sample_report())
    lines = md.strip().splitlines()
    assert lines[0].startswith("| method | EM | F1 | R@5 | P@5 |")
    assert lines[1].startswith("|---|---:")
    assert "| latent_memory | 41.0 | 55.0 | 80.0 | 32.0 | 61.0 | 5.0 | 120.5 | 1000 |" in md
    assert "| full_context | 45.0 | 60.0 | – | – |" in md
    assert lines[-1] == "Bank: 4000000 items, 6144 bytes per item."


def test_plot_tradeoff(tmp_path):
    path = plot_tradeoff(sample_report(), tmp_path)
    assert path == str(tmp_path / "tradeoff.png")
    data = (tmp_path / "tradeoff.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    empty = plot_tradeoff(make_report(5, {"m": {"em": 0.1}}), tmp_path / "empty.png")
    assert (tmp_path / "empty.png").stat().st_size > 0 and empty.endswith("empty.png")
