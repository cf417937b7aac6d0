"""BM25 top-k over one question's own candidate sentences (the paper's BM25 baseline).

Scoring is `rank_bm25.BM25Okapi` (k1 = 1.5, b = 0.75, epsilon = 0.25 idf floor), fitted on the
question's candidates only, as in the paper protocol (HotpotQA distractor: ~40 sentences).

Tokenizer: lowercase, then maximal runs of Unicode letters and digits (``[^\\W_]+``); everything
else (punctuation, underscores, whitespace) separates tokens. No stemming, no stop words.

Caveat inherited from BM25Okapi's idf (log((N - df + 0.5) / (df + 0.5))): with one or two
candidates idf is zero or negative, so rankings of such tiny sets are not meaningful.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from rank_bm25 import BM25Okapi

_TOKEN = re.compile(r"[^\W_]+")


def tokenize(text: str) -> list[str]:
    """Lowercased alphanumeric words.

    ``"The U.S. in 1999!"`` -> ``["the", "u", "s", "in", "1999"]``.
    """
    return _TOKEN.findall(text.lower())


def bm25_scores(question: str, candidates: Sequence[str], k1: float = 1.5, b: float = 0.75
                ) -> np.ndarray:
    """BM25Okapi scores [len(candidates)] float64 of each candidate for the question."""
    docs = [tokenize(c) for c in candidates]
    if not docs or not any(docs):
        # BM25Okapi divides by the mean length and the vocabulary size: undefined here.
        return np.zeros(len(docs))
    return np.asarray(BM25Okapi(docs, k1=k1, b=b).get_scores(tokenize(question)), np.float64)


def bm25_top_k(
    question: str, candidates: Sequence[str], k: int = 5, k1: float = 1.5, b: float = 0.75
) -> tuple[list[int], list[float]]:
    """Indices of the k best candidates for the question, best first, and their scores.

    Args:
      question: the question text.
      candidates: the question's own candidate texts (e.g. "Title: sentence").
      k: how many to return (fewer if there are fewer candidates).

    Returns:
      (indices [min(k, n)] into candidates, scores [min(k, n)]); ties keep candidate order.
    """
    scores = bm25_scores(question, candidates, k1=k1, b=b)
    order = np.argsort(-scores, kind="stable")[: max(int(k), 0)]
    return [int(i) for i in order], [float(scores[i]) for i in order]
