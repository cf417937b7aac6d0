"""Corpus BM25 (bm25s): Lucene scores by the formula, save/load, and the dpr_corpus reader."""

from __future__ import annotations

import csv
import math
from collections import Counter

import numpy as np
import pytest

from lm_jax.eval.bm25 import tokenize
from lm_jax.eval.bm25_corpus import CorpusBM25, corpus_texts

DOCS = [
    "Paris is the capital of France.",
    "Berlin is the capital of Germany, and Berlin is large.",
    "The cat sat on a mat.",
    "France has wine and cheese; France has Paris.",
    "Nothing here.",
]


def lucene_bm25(query, docs, k1=1.5, b=0.75):
    toks = [tokenize(d) for d in docs]
    n, avg = len(toks), sum(map(len, toks)) / len(toks)
    df = Counter(t for d in toks for t in set(d))
    out = []
    for d in toks:
        tf, s = Counter(d), 0.0
        for t in set(tokenize(query)):
            if t in df:
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                s += idf * tf[t] / (tf[t] + k1 * (1 - b + b * len(d) / avg))
        out.append(s)
    return np.array(out)


def test_scores_match_the_lucene_formula_and_survive_reload(tmp_path):
    index = CorpusBM25.build(iter(DOCS), tmp_path / "ix", chunk_size=2,
                             built_from={"dataset": "fixture"})
    queries = ["capital of France", "Berlin", "cheese wine", "unknown words only"]
    idx, scores = index.search(queries, k=3)
    assert idx.shape == scores.shape == (4, 3)
    for q, row_i, row_s in zip(queries, idx, scores, strict=True):
        expect = lucene_bm25(q, DOCS)
        np.testing.assert_allclose(row_s, expect[row_i], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(row_s, np.sort(expect)[::-1][:3], rtol=1e-5, atol=1e-6)
    assert idx[0, 0] == 0 and idx[1, 0] == 1 and idx[2, 0] == 3
    assert np.all(scores[3] == 0)

    again = CorpusBM25.load(tmp_path / "ix")
    assert again.meta["built_from"] == {"dataset": "fixture"} and again.num_docs == 5
    idx2, scores2 = again.search(queries, k=3)
    np.testing.assert_array_equal(idx2[:3], idx[:3])
    np.testing.assert_allclose(scores2, scores, rtol=1e-6)
    with pytest.raises(FileNotFoundError, match="not a CorpusBM25 index"):
        CorpusBM25.load(tmp_path)
    with pytest.raises(ValueError, match="empty"):
        CorpusBM25.build(iter([]), tmp_path / "empty")
    assert not (tmp_path / "empty").exists()


def test_corpus_texts_reads_a_prepared_dpr_corpus(tmp_path):
    from lm_jax.data.prepare import prepare_dataset

    (tmp_path / "m").mkdir()
    with open(tmp_path / "m" / "passages.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["id", "text", "title"])
        for i, d in enumerate(DOCS):
            w.writerow([str(i + 1), d, f"T{i}"])
    prepare_dataset("dpr_corpus/passages", tmp_path / "m", tmp_path / "data")
    texts = list(corpus_texts(tmp_path / "data", batch=2))
    assert texts == [f"T{i}: {d}" for i, d in enumerate(DOCS)]
    index = CorpusBM25.build(texts, tmp_path / "ix")
    assert index.search(["cat mat"], k=1)[0][0, 0] == 2
