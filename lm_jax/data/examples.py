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
  neg_ids        [N, Le]  int32  up to N random non-supporting sentences of the same context
  neg_mask       [N, Le]  int32
  neg_valid      [N]      bool
  answer_ids     [La]     int32  answer tokens without special tokens
  answer_mask    [La]     int32

Everything is right-padded with the tokenizer's pad id (0 if it has none) and truncated to
the maximum length (keeping the start; the tokenizer's own truncation, so its special
tokens stay in place).
"""

from __future__ import annotations

import copy
import threading
from typing import Any

import grain
import numpy as np

from lm_jax.data.records import QAExample


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
    ):
        self.tokenizer = tokenizer
        self.max_positives = max_positives
        self.max_negatives = max_negatives
        self.max_evidence_len = max_evidence_len
        self.max_question_len = max_question_len
        self.max_answer_len = max_answer_len
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = 0 if pad is None else int(pad)
        # HF fast tokenizers re-configure truncation on their Rust object at every call with
        # a new max_length, which fails ("Already borrowed") when threads share one; Grain
        # runs transforms in threads, so each thread gets its own copy.
        self._local = threading.local()

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_local")
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._local = threading.local()

    def _tokenizer(self):
        tok = getattr(self._local, "tokenizer", None)
        if tok is None:
            tok = self._local.tokenizer = (
                self.tokenizer
                if threading.current_thread() is threading.main_thread()
                else copy.deepcopy(self.tokenizer)
            )
        return tok

    def _encode(self, texts: list[str], max_len: int, rows: int, special: bool):
        ids = np.full((rows, max_len), self.pad_id, np.int32)
        mask = np.zeros((rows, max_len), np.int32)
        if texts:
            enc = self._tokenizer()(
                texts, add_special_tokens=special, truncation=True, max_length=max_len
            )["input_ids"]
            for r, seq in enumerate(enc):
                ids[r, : len(seq)] = seq
                mask[r, : len(seq)] = 1
        return ids, mask

    def __call__(
        self, example: QAExample, rng: np.random.Generator, index: int = -1
    ) -> dict[str, np.ndarray]:
        """Encodes `example`; `rng` picks the negatives. Returns the dict of the module doc."""
        positives = [e.render() for e in example.positives][: self.max_positives]
        pool = [e.render() for e in example.negatives]
        k = min(self.max_negatives, len(pool))
        negatives = [pool[i] for i in rng.choice(len(pool), size=k, replace=False)] if k else []
        P, N, Le = self.max_positives, self.max_negatives, self.max_evidence_len
        ev_ids, ev_mask = self._encode(positives + negatives, Le, P + N, special=True)
        # Evidence is encoded in one call (faster), then split: rows [0, len(pos)) are
        # positives, the next len(neg) rows negatives.
        np_, nn = len(positives), len(negatives)
        pos_ids = np.full((P, Le), self.pad_id, np.int32)
        pos_mask = np.zeros((P, Le), np.int32)
        neg_ids = np.full((N, Le), self.pad_id, np.int32)
        neg_mask = np.zeros((N, Le), np.int32)
        pos_ids[:np_], pos_mask[:np_] = ev_ids[:np_], ev_mask[:np_]
        neg_ids[:nn], neg_mask[:nn] = ev_ids[np_ : np_ + nn], ev_mask[np_ : np_ + nn]
        q_ids, q_mask = self._encode([example.question], self.max_question_len, 1, special=True)
        a_ids, a_mask = self._encode([example.answer], self.max_answer_len, 1, special=False)
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
