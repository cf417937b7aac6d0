"""Host-side example encoding for the Latent Memory step, and the cached teacher answers.

`LatentMemoryEncoder` extends the data pipeline's evidence encoding (question, positives, hard
negatives) with the two distillation prompts: the student prompt with latent slots for the
positives plus 0..max_extra_negatives hard negatives, and the teacher prompt with the raw
positives. Both are followed by the teacher's first D-1 greedy answer tokens (teacher forcing), so
the generator's distributions at D positions can be compared. The teacher's greedy tokens depend
only on frozen weights and fixed inputs, so `TeacherCache` computes them once per example.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence

import grain
import jax
import numpy as np
from absl import logging

from lm_jax.models.prompts import PromptBuilder, pad_prompts


def supporting_texts(example, max_positives: int) -> list[str]:
    """The rendered supporting evidence of an example, in document order (at most P)."""
    return [e.render() for e in example.evidence if e.is_supporting][:max_positives]


def _with_forced(prompt_arrays: dict, forced: np.ndarray) -> dict:
    """Appends forced tokens [D-1] to a single left-padded prompt row (arrays [S])."""
    n = len(forced)
    out = {
        "ids": np.concatenate([prompt_arrays["ids"], forced.astype(np.int32)]),
        "mask": np.concatenate([prompt_arrays["mask"], np.ones(n, np.int32)]),
        "slot_item": np.concatenate([prompt_arrays["slot_item"], -np.ones(n, np.int32)]),
        "slot_tok": np.concatenate([prompt_arrays["slot_tok"], -np.ones(n, np.int32)]),
    }
    s = len(prompt_arrays["ids"])
    out["out_pos"] = np.arange(s - 1, s + n, dtype=np.int32)  # D positions
    return out


def distill_mask(tokens: np.ndarray, eos_id: int | None) -> np.ndarray:
    """[D] float: 1 up to and including the teacher's first EOS, 0 after it."""
    if eos_id is None:
        return np.ones(len(tokens), np.float32)
    is_eos = tokens == eos_id
    end = int(np.argmax(is_eos)) + 1 if is_eos.any() else len(tokens)
    return (np.arange(len(tokens)) < end).astype(np.float32)


class LatentMemoryEncoder(grain.transforms.RandomMap):
    """((index, QAExample), rng) -> the per-example arrays of the train step's batch.

    `index` is the example's position in its split, which keys the teacher cache.
    """

    def __init__(self, evidence_encoder, builder: PromptBuilder, teacher_tokens: np.ndarray,
                 max_positives: int, max_student_len: int,
                 max_teacher_len: int, max_extra_negatives: int, eos_id: int | None,
                 pad_id: int = 0):
        self.evidence_encoder = evidence_encoder
        self.builder = builder
        self.teacher_tokens = teacher_tokens
        self.max_positives = max_positives
        self.max_student_len = max_student_len
        self.max_teacher_len = max_teacher_len
        self.max_extra_negatives = max_extra_negatives
        self.eos_id = eos_id
        self.pad_id = pad_id

    def random_map(self, element, rng: np.random.Generator) -> dict[str, np.ndarray]:
        index, example = element
        out = dict(self.evidence_encoder(example, rng, index=index))
        tokens = self.teacher_tokens[index]
        forced = tokens[:-1]
        p = out["pos_valid"].shape[0]
        positives = list(np.flatnonzero(out["pos_valid"]))
        negatives = [p + int(j) for j in np.flatnonzero(out["neg_valid"])]
        extra = int(rng.integers(0, min(self.max_extra_negatives, len(negatives)) + 1))
        items = positives + list(rng.choice(negatives, size=extra, replace=False)) if extra \
            else positives
        items = [int(i) for i in rng.permutation(items)]
        student = self.builder.latent(example.question, items)
        student = _with_forced(_row(pad_prompts([student], self.max_student_len, left=True,
                                                pad_id=self.pad_id)), forced)
        teacher = self.builder.text(example.question,
                                    supporting_texts(example, self.max_positives))
        teacher = _with_forced(_row(pad_prompts([teacher], self.max_teacher_len, left=True,
                                                pad_id=self.pad_id)), forced)
        out.update(
            student_ids=student["ids"], student_mask=student["mask"],
            student_slot_item=student["slot_item"], student_slot_tok=student["slot_tok"],
            student_out_pos=student["out_pos"],
            teacher_ids=teacher["ids"], teacher_mask=teacher["mask"],
            teacher_out_pos=teacher["out_pos"],
            distill_mask=distill_mask(tokens, self.eos_id),
        )
        return out


def _row(arrays: dict) -> dict:
    return {k: v[0] for k, v in arrays.items()}


class TeacherCache:
    """Greedy teacher answers [num_examples, D], computed in chunks and cached in a directory.

    Chunks are written atomically (temp file + rename), so an interrupted pass resumes at the
    first missing chunk and yields the same array as an uninterrupted one.
    """

    def __init__(self, directory: str, num_tokens: int, chunk_size: int = 1024):
        self.directory = directory
        self.num_tokens = num_tokens
        self.chunk_size = chunk_size

    def _chunk_path(self, c: int) -> str:
        return os.path.join(self.directory, f"teacher-{c:05d}.npy")

    def compute(self, examples: Sequence, generate_fn, builder: PromptBuilder,
                max_positives: int, max_prompt_len: int, batch_size: int,
                pad_id: int = 0) -> np.ndarray:
        """Fills missing chunks with `generate_fn(ids [B,S], mask [B,S]) -> tokens [B,D]`."""
        os.makedirs(self.directory, exist_ok=True)
        n = len(examples)
        num_chunks = (n + self.chunk_size - 1) // self.chunk_size
        for c in range(num_chunks):
            path = self._chunk_path(c)
            if os.path.exists(path):
                continue
            chunk = examples[c * self.chunk_size:(c + 1) * self.chunk_size]
            rows = []
            for s in range(0, len(chunk), batch_size):
                part = chunk[s:s + batch_size]
                prompts = [builder.text(e.question, supporting_texts(e, max_positives))
                           for e in part]
                prompts += [prompts[-1]] * (batch_size - len(prompts))  # static batch shape
                arr = pad_prompts(prompts, max_prompt_len, left=True, pad_id=pad_id)
                toks = np.asarray(generate_fn(arr["ids"], arr["mask"]))
                rows.append(toks[:len(part)])
            tokens = np.concatenate(rows).astype(np.int32)
            if jax.process_index() == 0:
                tmp = path + ".tmp.npy"
                np.save(tmp, tokens)
                os.replace(tmp, path)
            logging.info("teacher cache: chunk %d/%d done", c + 1, num_chunks)
        return self.load(n)

    def load(self, n: int) -> np.ndarray:
        paths = sorted(glob.glob(os.path.join(self.directory, "teacher-*.npy")))
        paths = [p for p in paths if not p.endswith(".tmp.npy")]
        if not paths:
            raise FileNotFoundError(f"no teacher cache in {self.directory}")
        tokens = np.concatenate([np.load(p) for p in paths])
        if tokens.shape != (n, self.num_tokens):
            raise ValueError(f"teacher cache {self.directory} holds {tokens.shape}, expected "
                             f"({n}, {self.num_tokens}); delete it to recompute")
        return tokens

