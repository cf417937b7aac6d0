"""Turns a `QAExample` into fixed-shape token arrays: one training example (tier 2).

`EvidenceEncoder` is a Grain RandomMapTransform: `random_map(element, rng)` with element a
`QAExample` or `(index, QAExample)`; calling it directly is `encoder(example, rng, index=-1)`.
Shapes per example (P = max_positives, N = max_negatives, Le/Lq/La = max lengths):

  index          []       int64  the record's index in its split (-1 if unknown)
  question_ids   [Lq]     int32  question tokens, tokenizer's default special tokens
  question_mask  [Lq]     int32  1 on real tokens
  pos_ids        [P, Le]  int32  supporting sentences "Title: sentence", first P in document order
  pos_mask       [P, Le]  int32
  pos_valid      [P]      bool   row holds a real positive
  neg_ids        [N, Le]  int32  up to N non-supporting sentences of the same context, chosen
                                 by `negatives` (NEGATIVE_SAMPLING)
  neg_mask       [N, Le]  int32
  neg_valid      [N]      bool
  answer_ids     [La]     int32  answer tokens without special tokens
  answer_mask    [La]     int32

Everything is right-padded with the tokenizer's pad id (0 if it has none) and truncated to
the maximum length like the tokenizer's own truncation: the text is cut at the end, its
special tokens (e.g. a leading BOS) stay.
"""

from __future__ import annotations

from typing import Any

import grain
import numpy as np

from lm_jax.data.records import QAExample

# How the N hard negatives are drawn from a question's non-supporting sentences:
#   random           uniformly (the paper, METHOD.md §3);
#   gold_paragraphs  half (rounded up) from the gold paragraphs (same entity, other relation),
#                    the rest uniformly;
#   bm25             uniformly from the 2N that BM25 ranks highest for the question (the
#                    sentences that look most like an answer to it, as DPR's hard negatives).
NEGATIVE_SAMPLING = ("random", "gold_paragraphs", "bm25")


def _special_affixes(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids a tokenizer adds before and after one sequence (e.g. [bos], [])."""
    plain = list(tokenizer("a b", add_special_tokens=False)["input_ids"])
    full = list(tokenizer("a b")["input_ids"])
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return full[:start], full[start + len(plain) :]
    raise ValueError(
        f"cannot find the special-token prefix/suffix of {type(tokenizer).__name__}: "
        f"{full} does not contain {plain}"
    )


class EvidenceEncoder(grain.transforms.RandomMap):
    """Tokenises one QAExample into the fixed-shape arrays listed in the module doc."""

    def __init__(
        self,
        tokenizer: Any,
        max_positives: int = 4,
        max_negatives: int = 8,
        max_evidence_len: int = 128,
        max_question_len: int = 64,
        max_answer_len: int = 16,
        negatives: str = "random",
    ):
        if negatives not in NEGATIVE_SAMPLING:
            raise ValueError(f"negatives={negatives!r}: expected one of {NEGATIVE_SAMPLING}")
        self.negatives = negatives
        self.tokenizer = tokenizer
        self.max_positives = max_positives
        self.max_negatives = max_negatives
        self.max_evidence_len = max_evidence_len
        self.max_question_len = max_question_len
        self.max_answer_len = max_answer_len
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = 0 if pad is None else int(pad)
        # HF fast tokenizers re-configure truncation on their shared Rust object whenever a
        # call asks for a different max_length, which fails ("Already borrowed") when Grain's
        # threads encode at once. So we never ask the tokenizer to truncate (or pad): we
        # encode without special tokens, cut, and add the tokenizer's own special-token
        # prefix/suffix ourselves, which is what its truncation does for one sequence.
        tokenizer("probe")  # resets any truncation/padding left on it, before threads start
        self.prefix, self.suffix = _special_affixes(tokenizer)

    def _pack(self, seqs: list[list[int]], max_len: int, rows: int, special: bool):
        """[rows, max_len] ids and mask from token lists (no special tokens yet): each is cut
        to fit, wrapped in the special prefix/suffix if `special`, and right-padded."""
        ids = np.full((rows, max_len), self.pad_id, np.int32)
        mask = np.zeros((rows, max_len), np.int32)
        pre, suf = (self.prefix, self.suffix) if special else ([], [])
        room = max_len - len(pre) - len(suf)
        if room <= 0:
            raise ValueError(f"max length {max_len} leaves no room after special tokens")
        for r, seq in enumerate(seqs):
            seq = pre + list(seq[:room]) + suf
            ids[r, : len(seq)] = seq
            mask[r, : len(seq)] = 1
        return ids, mask

    def _pick_negatives(self, example: QAExample, rng: np.random.Generator) -> list[str]:
        """Up to max_negatives non-supporting sentences, drawn as `self.negatives` says."""
        texts = [e.render() for e in example.negatives]
        n = self.max_negatives
        if self.negatives == "random" or len(texts) <= n:
            return [texts[i] for i in rng.choice(len(texts), size=min(n, len(texts)),
                                                 replace=False)]
        if self.negatives == "bm25":
            from lm_jax.eval.bm25 import bm25_scores

            scores = bm25_scores(example.question, texts)
            # Random tie-breaks, so equally scored sentences take turns across epochs.
            order = np.lexsort((rng.random(len(texts)), -scores))[: 2 * n]
            return [texts[i] for i in rng.choice(order, size=n, replace=False)]
        gold_titles = {e.title for e in example.positives}
        hard = [t for e, t in zip(example.negatives, texts) if e.title in gold_titles]
        rest = [t for e, t in zip(example.negatives, texts) if e.title not in gold_titles]
        n_hard = min(len(hard), -(-n // 2))
        picked = [hard[i] for i in rng.choice(len(hard), size=n_hard, replace=False)]
        pool = rest + [h for h in hard if h not in picked]
        k = min(n - n_hard, len(pool))
        return picked + [pool[i] for i in rng.choice(len(pool), size=k, replace=False)]

    def __call__(
        self, example: QAExample, rng: np.random.Generator, index: int = -1
    ) -> dict[str, np.ndarray]:
        """Encodes `example`; `rng` picks the negatives. Returns the dict of the module doc."""
        positives = [e.render() for e in example.positives][: self.max_positives]
        negatives = self._pick_negatives(example, rng)
        P, N, Le = self.max_positives, self.max_negatives, self.max_evidence_len
        np_, nn = len(positives), len(negatives)
        # One tokenizer call for all texts of the example (its per-call cost dominates).
        tokens = self.tokenizer(
            positives + negatives + [example.question, example.answer], add_special_tokens=False
        )["input_ids"]
        pos_ids, pos_mask = self._pack(tokens[:np_], Le, P, special=True)
        neg_ids, neg_mask = self._pack(tokens[np_ : np_ + nn], Le, N, special=True)
        q_ids, q_mask = self._pack(tokens[-2:-1], self.max_question_len, 1, special=True)
        a_ids, a_mask = self._pack(tokens[-1:], self.max_answer_len, 1, special=False)
        return {
            "index": np.int64(index),
            "question_ids": q_ids[0],
            "question_mask": q_mask[0],
            "pos_ids": pos_ids,
            "pos_mask": pos_mask,
            "pos_valid": np.arange(P) < np_,
            "neg_ids": neg_ids,
            "neg_mask": neg_mask,
            "neg_valid": np.arange(N) < nn,
            "answer_ids": a_ids[0],
            "answer_mask": a_mask[0],
        }

    def random_map(self, element: Any, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Grain entry point: element is a QAExample or (index, QAExample)."""
        if isinstance(element, tuple):
            index, example = element
            return self(example, rng, index=index)
        return self(element, rng)

    def output_spec(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """{name: (shape, dtype)} of one encoded example."""
        P, N = self.max_positives, self.max_negatives
        Le, Lq, La = self.max_evidence_len, self.max_question_len, self.max_answer_len
        i32, b = np.dtype(np.int32), np.dtype(bool)
        return {
            "index": ((), np.dtype(np.int64)),
            "question_ids": ((Lq,), i32),
            "question_mask": ((Lq,), i32),
            "pos_ids": ((P, Le), i32),
            "pos_mask": ((P, Le), i32),
            "pos_valid": ((P,), b),
            "neg_ids": ((N, Le), i32),
            "neg_mask": ((N, Le), i32),
            "neg_valid": ((N,), b),
            "answer_ids": ((La,), i32),
            "answer_mask": ((La,), i32),
        }
