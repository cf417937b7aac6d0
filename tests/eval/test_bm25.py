"""BM25 over a question's own candidates."""

from lm_jax.eval.bm25 import bm25_scores, bm25_top_k, tokenize


def test_tokenize():
    assert tokenize("The U.S. in 1999! Zürich_2") == ["the", "u", "s", "in", "1999", "zürich", "2"]


def test_obvious_match_ranks_first():
    candidates = [
        "Paris is the capital and most populous city of France.",
        "The Eiffel Tower was designed by the engineering company of Gustave Eiffel.",
        "Bananas are rich in potassium.",
        "Mount Everest is the highest mountain above sea level.",
        "The Danube flows through ten countries.",
        "Gustave Eiffel was born in Dijon in 1832.",
    ]
    idx, scores = bm25_top_k("Which company designed the Eiffel Tower?", candidates, k=3)
    assert idx[0] == 1
    assert len(idx) == 3 and scores == sorted(scores, reverse=True)
    idx, _ = bm25_top_k("Where was Gustave Eiffel born?", candidates, k=10)
    assert idx[0] == 5 and sorted(idx) == list(range(6))


def test_degenerate_inputs():
    assert bm25_top_k("anything", [], k=5) == ([], [])
    idx, scores = bm25_top_k("q", ["...", "!!"], k=2)
    assert idx == [0, 1] and scores == [0.0, 0.0]  # ties keep candidate order
    assert bm25_scores("x", ["a b", "c"]).shape == (2,)
