"""Export -> index -> eval -> ask on a tiny random model: the artifacts and the report."""

import collections
import json
import os
import sys

import pytest

from lm_jax.eval.report import load_report
from lm_jax.eval.run import eval_stage
from lm_jax.memory.export import corpus_items, export_stage, index_stage, load_bank_and_index
from lm_jax.train import build as build_lib
from lm_jax.train import data_stage
from lm_jax.train.loop import make_runner

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "train"))
from test_loop import tiny_config  # noqa: E402


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    config = tiny_config(work / "tfds", **{"eval.num_questions": 6, "eval.k": 3,
                                           "eval.max_new_tokens": 3})
    data = data_stage.load(config, str(work))
    comps = build_lib.build(config, str(work))
    return config, str(work), data, make_runner(comps, config)


def test_export_index_eval_ask(session):
    config, work, data, runner = session
    examples = data.eval[:6]
    bank_path = export_stage(config, work, runner, data.eval)
    index_stage(config, work)
    bank, index = load_bank_and_index(work)
    assert bank.num_items == len(corpus_items(data.eval))
    assert bank.num_items < sum(len(ex.evidence) for ex in data.eval)  # deduplicated
    assert os.path.exists(os.path.join(bank_path, "manifest.json"))

    rep = eval_stage(config, work, runner, examples, bank, index)
    on_disk = load_report(os.path.join(work, "eval", "report.json"))
    assert on_disk == rep and rep["k"] == 3
    assert set(rep["methods"]) == set(config.eval.methods)
    m = rep["methods"]
    assert m["latent_memory"]["context_tokens"] == 3  # k latents of one token each
    assert m["no_retrieval"]["context_tokens"] == 0
    assert m["bm25_rag"]["context_tokens"] > m["latent_memory"]["context_tokens"]
    assert m["full_context"]["context_tokens"] > m["bm25_rag"]["context_tokens"]
    assert m["oracle"]["recall_at_k"] is None and m["bm25_rag"]["recall_at_k"] is not None
    for name, fields in m.items():
        assert fields["n"] == 6 and 0.0 <= fields["f1"] <= 1.0, name
    assert rep["bank"]["items"] == bank.num_items and rep["bank"]["bytes_per_item"] > 0
    assert os.path.getsize(os.path.join(work, "eval", "tradeoff.png")) > 1000
    diag = json.load(open(os.path.join(work, "eval", "diagnostics.json")))
    assert 0.0 <= diag["recall_at_2"] <= 1.0 and 0.0 <= diag["recon_token_acc"] <= 1.0
    # By kind of token: the synthetic sentences have names and digits; the overall accuracy is
    # their token-weighted mean, so it lies between the smallest and largest class figure.
    by_class = [diag[f"recon_token_acc/{c}"] for c in ("capitalized", "digits", "other")]
    assert all(v is not None and 0.0 <= v <= 1.0 for v in by_class)
    assert min(by_class) - 1e-9 <= diag["recon_token_acc"] <= max(by_class) + 1e-9
    # Per question type, and the types' weighted mean is the overall figure.
    counts = collections.Counter(ex.type for ex in examples[:6])
    weighted = sum(n * diag[f"{t}/recall_at_2"] for t, n in counts.items()) / sum(counts.values())
    assert weighted == pytest.approx(diag["recall_at_2"])
    # The demo config indexes with ScaNN even for a small bank and measures it against exact.
    assert diag["bank_index"] == "ScannIndex"
    assert abs(diag["bank_recall_at_k"] - diag["bank_recall_at_k_exact_search"]) <= 0.1
    with open(os.path.join(work, "eval", "predictions.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    assert len(rows) == 6 and "latent_memory_bank" in rows[0]

    from lm_jax.ask import ask
    out = ask(runner, bank, index, examples[0].question, k=3)
    assert len(out["evidence"]) == 3 and isinstance(out["answer"], str)
    assert all(e["text"] in bank.texts for e in out["evidence"])


def test_reconstruction_report_by_token_class(session):
    """The runner's batched, per-class figures equal one direct pass over all texts at once."""
    import jax.numpy as jnp
    import numpy as np

    from lm_jax.eval.metrics import token_class
    from lm_jax.hf.tokenizer import encode

    _, _, data, runner = session
    texts = [e.render() for ex in data.eval[:3] for e in ex.evidence][:runner.batch_size + 5]
    report = runner.reconstruction_report(texts)  # two batches, the second padded

    tok = runner.comp_tok
    ids, mask = encode(tok, texts, runner.max_evidence_len, add_special_tokens=True)
    m = runner.model
    z = m.encode_evidence(runner.trainable, runner.frozen, jnp.asarray(ids), jnp.asarray(mask))
    logits, targets, tmask = m.reconstruction(runner.trainable, runner.frozen, z,
                                              jnp.asarray(ids), jnp.asarray(mask),
                                              tok.bos_token_id, tok.eos_token_id)
    hit = np.asarray(jnp.argmax(logits, -1) == targets)
    targets, keep = np.asarray(targets), np.asarray(tmask) > 0
    expected = collections.defaultdict(list)
    for h, t in zip(hit[keep], targets[keep]):
        expected[token_class(tok.decode([int(t)]))].append(h)
        expected["all"].append(h)
    assert set(expected) == {"all", "capitalized", "digits", "other"}
    for cls, hits in expected.items():
        assert report[cls] == pytest.approx(np.mean(hits), abs=1e-6), cls
    assert runner.reconstruction_accuracy(texts) == pytest.approx(report["all"])
