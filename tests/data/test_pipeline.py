"""Encoder and Grain pipeline: shapes, determinism, checkpoint/restore, per-process sharding."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import tensorflow_datasets as tfds

from lm_jax.data import synthetic
from lm_jax.data.examples import EvidenceEncoder
from lm_jax.data.pipeline import make_train_iterator, measure_throughput
from lm_jax.data.prepare import prepare_dataset
from lm_jax.data.records import from_hotpot_json

B = 4


@pytest.fixture(scope="module")
def examples():
    return [from_hotpot_json(r) for r in synthetic.generate(24, seed=5, split_world="train")]


@pytest.fixture(scope="module")
def encoder(tiny_tokenizer):
    return EvidenceEncoder(
        tiny_tokenizer,
        max_positives=3,
        max_negatives=5,
        max_evidence_len=24,
        max_question_len=20,
        max_answer_len=6,
        negatives="gold_paragraphs",
    )


def _take(it, n):
    return [next(it) for _ in range(n)]


def _same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_encoder_contents(examples, encoder, tiny_tokenizer):
    tok = tiny_tokenizer
    ex = examples[0]
    out = encoder(ex, np.random.default_rng(0), index=7)
    for name, (shape, dtype) in encoder.output_spec().items():
        assert out[name].shape == shape and out[name].dtype == dtype, name
    assert out["index"] == 7
    n_pos = len(ex.positives)
    assert out["pos_valid"].tolist() == [True] * n_pos + [False] * (3 - n_pos)
    assert out["neg_valid"].all()  # 38 non-supporting sentences >= 5
    # Positives: supporting sentences "Title: sentence", in document order, BOS first.
    for row, item in zip(out["pos_ids"], ex.positives, strict=False):
        ids = row[row != tok.pad_token_id].tolist()
        assert ids[0] == tok.bos_token_id
        assert tok.decode(ids, skip_special_tokens=True).strip() == item.render()
    # Negatives: distinct non-supporting sentences of the same example.
    negs = {e.render() for e in ex.negatives}
    decoded = [
        tok.decode(r[m == 1].tolist(), skip_special_tokens=True).strip()
        for r, m in zip(out["neg_ids"], out["neg_mask"], strict=True)
    ]
    assert len(set(decoded)) == 5 and set(decoded) <= negs
    # Three of the five (half, rounded up) come from the gold paragraphs: hard negatives.
    gold_titles = {e.title for e in ex.positives}
    hard = {e.render() for e in ex.negatives if e.title in gold_titles}
    assert len(hard) >= 3 and len(set(decoded) & hard) == 3
    assert out["answer_ids"][0] != tok.bos_token_id
    answer = out["answer_ids"][out["answer_mask"] == 1].tolist()
    assert tok.decode(answer).strip() == ex.answer
    # Truncation keeps BOS and cuts the end; masks mark exactly the real tokens.
    tight = EvidenceEncoder(tok, max_evidence_len=4, max_question_len=3)
    short = tight(ex, np.random.default_rng(0))
    assert short["pos_mask"][0].tolist() == [1, 1, 1, 1]
    assert short["pos_ids"][0, 0] == tok.bos_token_id
    assert short["question_ids"].tolist() == tok(ex.question)["input_ids"][:3]
    # The rng alone decides the negatives.
    again = encoder(ex, np.random.default_rng(0), index=7)
    assert _same(out, again)


def _decoded_negatives(out, tok) -> list[str]:
    return [tok.decode(r[m == 1].tolist(), skip_special_tokens=True).strip()
            for r, m in zip(out["neg_ids"], out["neg_mask"], strict=True) if m.any()]


def test_negative_sampling(examples, tiny_tokenizer):
    from lm_jax.eval.bm25 import bm25_scores

    ex = examples[0]
    texts = [e.render() for e in ex.negatives]
    scores = bm25_scores(ex.question, texts)
    # The 2N = 10 best by BM25, with every sentence tied with the 10th (ties break at random).
    top = {t for t, s in zip(texts, scores, strict=True) if s >= np.sort(scores)[::-1][9]}
    assert len(top) < len(texts) / 2
    seen = {"random": set(), "bm25": set()}
    for how in seen:
        enc = EvidenceEncoder(tiny_tokenizer, max_negatives=5, max_evidence_len=24,
                              negatives=how)
        for seed in range(20):
            decoded = _decoded_negatives(enc(ex, np.random.default_rng(seed)), tiny_tokenizer)
            assert len(set(decoded)) == 5 and set(decoded) <= set(texts)
            seen[how] |= set(decoded)
    assert seen["bm25"] <= top and len(seen["bm25"]) >= 8  # sampled, not a fixed top 5
    assert seen["random"] - top  # the paper's random draw reaches beyond BM25's best
    with pytest.raises(ValueError, match="negatives='closest'"):
        EvidenceEncoder(tiny_tokenizer, negatives="closest")


def test_static_shapes_and_determinism(examples, encoder):
    a = _take(make_train_iterator(examples, encoder, B, seed=1), 10)  # crosses epochs
    b = _take(make_train_iterator(examples, encoder, B, seed=1), 10)
    c = _take(make_train_iterator(examples, encoder, B, seed=2), 10)
    spec = encoder.output_spec()
    for batch in a:
        assert set(batch) == set(spec)
        for name, (shape, dtype) in spec.items():
            assert batch[name].shape == (B, *shape) and batch[name].dtype == dtype
    assert all(_same(x, y) for x, y in zip(a, b, strict=True))
    assert not all(_same(x, y) for x, y in zip(a, c, strict=True))
    # The first epoch is a permutation of the split; the index field points at the record.
    first_epoch = np.concatenate([x["index"] for x in a[:6]])
    assert sorted(first_epoch.tolist()) == list(range(24))
    assert first_epoch.tolist() != list(range(24))
    unshuffled = next(make_train_iterator(examples, encoder, B, seed=1, shuffle=False))
    assert unshuffled["index"].tolist() == [0, 1, 2, 3]
    q = encoder(examples[2], np.random.default_rng(0))["question_ids"]
    assert np.array_equal(unshuffled["question_ids"][2], q)


def test_restore_continues_exactly(examples, encoder):
    ref = make_train_iterator(examples, encoder, B, seed=3)
    expected = _take(ref, 12)
    it = make_train_iterator(examples, encoder, B, seed=3)
    _take(it, 5)
    state = it.get_state()
    resumed = make_train_iterator(examples, encoder, B, seed=3)
    resumed.set_state(state)
    assert all(_same(x, y) for x, y in zip(_take(resumed, 7), expected[5:], strict=True))


def test_two_processes_read_each_example_once_per_epoch(examples, encoder):
    counts = collections.Counter()
    per_process = []
    for shard in (0, 1):
        it = make_train_iterator(
            examples, encoder, B, seed=4, shard_index=shard, shard_count=2, num_epochs=2
        )
        batches = list(it)
        per_process.append(len(batches))
        for i, b in enumerate(batches):
            epoch = i * B * 2 // 24
            counts.update((epoch, int(x)) for x in b["index"])
    assert per_process == [6, 6]
    assert counts == {(e, i): 1 for e in (0, 1) for i in range(24)}
    # Infinite stream: positions interleave, so the first epoch is still covered once.
    firsts = [
        np.concatenate(
            [
                b["index"]
                for b in _take(
                    make_train_iterator(examples, encoder, B, 4, shard_index=s, shard_count=2), 3
                )
            ]
        )
        for s in (0, 1)
    ]
    assert sorted(np.concatenate(firsts).tolist()) == list(range(24))


@pytest.mark.parametrize("num_epochs", [None, 2])
def test_global_batch_does_not_depend_on_process_count(examples, encoder, num_epochs):
    # Batch j of each process, concatenated in process order (make_global_batch), is batch j
    # of one process with the whole batch: same examples, same order, same negatives.
    def batches(shard, count):
        it = make_train_iterator(examples, encoder, 2 * B // count, 6, shard_index=shard,
                                 shard_count=count, num_epochs=num_epochs)
        return _take(it, 5)

    single = batches(0, 1)
    for count in (2, 4):
        parts = [batches(s, count) for s in range(count)]
        for j in range(5):
            glued = {k: np.concatenate([p[j][k] for p in parts]) for k in single[j]}
            assert _same(glued, single[j]), (count, j)


def test_finite_epochs_keep_processes_in_lockstep(examples, encoder):
    # 22 examples, 3 processes x batch 4: 12 per global batch -> 1 batch each, same count.
    few = examples[:22]
    lens = [
        len(list(make_train_iterator(few, encoder, B, 0, s, 3, num_epochs=1))) for s in range(3)
    ]
    assert lens == [1, 1, 1]
    with pytest.raises(ValueError, match="less than one global batch"):
        make_train_iterator(few[:5], encoder, B, 0, 0, 2, num_epochs=1)


def test_tfds_source_and_throughput(tmp_path, encoder):
    manual = tmp_path / "manual"
    synthetic.write(
        manual / "hotpot_dev_distractor_v1.json", synthetic.generate(16, 2, split_world="test")
    )
    prepare_dataset("hotpot_qa/distractor", manual, tmp_path / "data")
    source = tfds.builder("hotpot_qa/distractor", data_dir=tmp_path / "data").as_data_source(
        split="validation"
    )
    as_list = [from_hotpot_json(r) for r in synthetic.generate(16, 2, split_world="test")]
    a = _take(make_train_iterator(source, encoder, B, seed=9), 6)
    b = _take(make_train_iterator(as_list, encoder, B, seed=9), 6)
    assert all(_same(x, y) for x, y in zip(a, b, strict=True))
    it = make_train_iterator(source, encoder, B, seed=9)
    _take(it, 2)
    state = it.get_state()
    it2 = make_train_iterator(source, encoder, B, seed=9)
    it2.set_state(state)
    assert _same(next(it2), a[2])
    stats = measure_throughput(it, num_batches=3, warmup=1)
    assert stats["examples"] == 3 * B and stats["examples_per_s"] > 0
