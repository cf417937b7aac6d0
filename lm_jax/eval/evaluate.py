"""The evaluation harness: Latent Memory and RAG baselines on the same frozen generator.

Methods (METHOD.md §4):
  latent_memory       top-k latents from the question's own context sentences (paper protocol)
  latent_memory_bank  top-k latents from the whole exported bank, through its index (ScaNN)
  no_retrieval        the question alone
  full_context        every context sentence as raw text
  bm25_rag            top-k raw sentences of the question's context by BM25
  oracle              the gold supporting sentences as raw text
Token counts: `prompt_tokens` is the whole generator prompt; `context_tokens` counts only the
evidence (raw sentence tokens, or one per latent token), not the "Context i:" labels.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lm_jax.eval import bm25, metrics
from lm_jax.hf.tokenizer import encode
from lm_jax.models.generate import greedy_generate
from lm_jax.models.prompts import Prompt, PromptBuilder, pad_prompts
from lm_jax.sharding import replicated
from lm_jax.train.batches import supporting_texts

TEXT_METHODS = ("no_retrieval", "full_context", "bm25_rag", "oracle")


def evidence_id(text: str) -> str:
    """Stable bank id of a rendered evidence item ("Title: sentence"): deduplicates by content."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:20]


def _bucket(n: int, step: int = 64) -> int:
    return max(step, -(-n // step) * step)


class Runner:
    """Jitted, static-shape encode and generate functions over fixed parameters."""

    def __init__(self, model, comp_tok, gen_tok, trainable, frozen, *, max_evidence_len: int,
                 max_question_len: int, max_new_tokens: int, batch_size: int,
                 max_prompt_len: int, mesh=None):
        self.model, self.comp_tok, self.gen_tok = model, comp_tok, gen_tok
        self.trainable, self.frozen = trainable, frozen
        self.max_evidence_len, self.max_question_len = max_evidence_len, max_question_len
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.max_prompt_len = max_prompt_len
        self.builder = PromptBuilder(gen_tok, model.config.num_latent_tokens)
        self.pad_id = gen_tok.pad_token_id if gen_tok.pad_token_id is not None else 0
        eos = gen_tok.eos_token_id
        self.eos_id = model.config.generator.eos_token_id if eos is None else eos

        # Outputs come back replicated, so every process can read them even when the
        # parameters are sharded across hosts.
        jit = functools.partial(jax.jit, out_shardings=replicated(mesh)) if mesh is not None \
            else jax.jit

        @jit
        def _encode_items(trainable, frozen, ids, mask):
            z = model.encode_evidence(trainable, frozen, ids, mask)
            return z, model.retrieval_keys(trainable, z)

        @jit
        def _encode_queries(trainable, frozen, ids, mask):
            return model.encode_query(trainable, frozen, ids, mask)

        @functools.partial(jit, static_argnums=(7,))
        def _generate(trainable, frozen, ids, mask, slot_item, slot_tok, z_items, with_latents):
            embeds = emask = None
            if with_latents:
                embeds, emask = model.latent_prompt_embeds(trainable, z_items, slot_item,
                                                           slot_tok)
            return greedy_generate(model.generator, frozen["generator"], ids, mask,
                                   self.max_new_tokens, self.eos_id, self.pad_id, embeds, emask)

        bos, eos_c = comp_tok.bos_token_id, comp_tok.eos_token_id

        @jit
        def _recon_correct(trainable, frozen, ids, mask):
            z = model.encode_evidence(trainable, frozen, ids, mask)
            logits, targets, tmask = model.reconstruction(trainable, frozen, z, ids, mask, bos,
                                                          eos_c)
            return jnp.argmax(logits, -1) == targets, targets, tmask > 0

        self._encode_items, self._encode_queries, self._generate = (
            _encode_items, _encode_queries, _generate)
        self._recon_correct = _recon_correct

    def _batched(self, fn, ids, mask):
        outs = []
        n = len(ids)
        b = self.batch_size
        for s in range(0, n, b):
            i, m = ids[s:s + b], mask[s:s + b]
            pad = b - len(i)
            if pad:
                i = np.concatenate([i, np.repeat(i[-1:], pad, 0)])
                m = np.concatenate([m, np.repeat(m[-1:], pad, 0)])
            out = fn(self.trainable, self.frozen, jnp.asarray(i), jnp.asarray(m))
            outs.append(jax.tree.map(lambda x, k=b - pad: np.asarray(x)[:k], out))
        return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)

    def encode_items(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Rendered evidence texts [N] -> latents [N, T, H] fp32 and unit keys [N, R]."""
        ids, mask = encode(self.comp_tok, texts, self.max_evidence_len, add_special_tokens=True)
        return self._batched(self._encode_items, ids, mask)

    def reconstruction_report(self, texts: Sequence[str]) -> dict[str, float | None]:
        """Teacher-forced token accuracy of reconstructing texts from their latents (+ EOS),
        over all target tokens ("all") and per `metrics.TOKEN_CLASSES` (names, digits, other):
        what one latent keeps and what it loses."""
        ids, mask = encode(self.comp_tok, texts, self.max_evidence_len, add_special_tokens=True)
        correct, targets, tmask = self._batched(self._recon_correct, ids, mask)  # [N, L+1]
        correct, targets = correct[tmask], targets[tmask]
        cls = {t: metrics.token_class(self.comp_tok.decode([t]))
               for t in np.unique(targets).tolist()}  # decode each distinct token once
        return metrics.accuracy_by_class(correct.tolist(), [cls[t] for t in targets.tolist()])

    def reconstruction_accuracy(self, texts: Sequence[str]) -> float:
        """Teacher-forced token accuracy of reconstructing texts from their latents (+ EOS)."""
        return self.reconstruction_report(texts)["all"] or 0.0

    def encode_queries(self, questions: Sequence[str]) -> np.ndarray:
        """Questions [N] -> unit retrieval vectors [N, R]."""
        ids, mask = encode(self.comp_tok, questions, self.max_question_len,
                           add_special_tokens=True)
        return self._batched(self._encode_queries, ids, mask)

    def generate(self, prompts: list[Prompt], z_items: np.ndarray | None = None) -> list[str]:
        """Greedy answers for prompts; z_items [len(prompts), K, T, H] fill latent slots."""
        answers = []
        b = self.batch_size
        for s in range(0, len(prompts), b):
            part = prompts[s:s + b]
            length = min(_bucket(max(len(p) for p in part)), self.max_prompt_len)
            real = len(part)
            part = part + [part[-1]] * (b - real)
            arr = pad_prompts(part, length, left=True, pad_id=self.pad_id)
            if z_items is None:
                t, h = self.model.config.num_latent_tokens, self.model.config.compressor.hidden_size
                z = np.zeros((b, 1, t, h), np.float32)
            else:
                z = z_items[s:s + b]
                z = np.concatenate([z, np.repeat(z[-1:], b - real, 0)]) if real < b else z
            tokens, lengths = self._generate(
                self.trainable, self.frozen, jnp.asarray(arr["ids"]), jnp.asarray(arr["mask"]),
                jnp.asarray(arr["slot_item"]), jnp.asarray(arr["slot_tok"]), jnp.asarray(z),
                z_items is not None)
            tokens, lengths = np.asarray(tokens), np.asarray(lengths)
            for r in range(real):
                row = [int(x) for x in tokens[r, :lengths[r]] if x != self.eos_id]
                answers.append(self.gen_tok.decode(row, skip_special_tokens=True).strip())
        return answers


def _records(examples, preds, retrieved, gold, prompts, k, seconds):
    per_q_ms = 1000.0 * seconds / max(len(examples), 1)
    out = []
    for i, ex in enumerate(examples):
        rec = metrics.score_example(preds[i], ex.answer,
                                    retrieved[i] if retrieved is not None else None,
                                    gold[i] if gold is not None else None, k)
        rec.update(prompt_tokens=len(prompts[i]), context_tokens=prompts[i].context_tokens,
                   latency_ms=per_q_ms)
        out.append(rec)
    return out


def _gold_indices(ex) -> list[int]:
    return [j for j, e in enumerate(ex.evidence) if e.is_supporting]


def run_latent_memory(runner: Runner, examples, k: int):
    """Paper protocol: per question, top-k latents among its own context sentences.

    Returns (per-question records, predictions, retrieved sentence indices best first).
    """
    t0 = time.time()
    texts = [e.render() for ex in examples for e in ex.evidence]
    z, keys = runner.encode_items(texts)
    q = runner.encode_queries([ex.question for ex in examples])
    prompts, retrieved, z_rows = [], [], []
    start = 0
    for i, ex in enumerate(examples):
        n = len(ex.evidence)
        scores = keys[start:start + n] @ q[i]
        top = [int(j) for j in np.argsort(-scores, kind="stable")[:k]]
        retrieved.append(top)
        z_rows.append(z[start + np.asarray(top)])
        prompts.append(runner.builder.latent(ex.question, list(range(len(top)))))
        start += n
    kmax = max(len(r) for r in z_rows)
    z_items = np.stack([np.pad(r, ((0, kmax - len(r)), (0, 0), (0, 0))) for r in z_rows])
    preds = runner.generate(prompts, z_items)
    gold = [_gold_indices(ex) for ex in examples]
    records = _records(examples, preds, retrieved, gold, prompts, k, time.time() - t0)
    return records, preds, retrieved


def run_latent_memory_bank(runner: Runner, examples, k: int, bank, index):
    """Top-k latents from the global bank through its index."""
    t0 = time.time()
    q = runner.encode_queries([ex.question for ex in examples])
    rows, _ = index.search(q, k)
    ids = bank.ids
    retrieved = [[ids[r] for r in row] for row in rows]
    z_items = np.stack([bank.latents(np.asarray(row)) for row in rows]).astype(np.float32)
    prompts = [runner.builder.latent(ex.question, list(range(rows.shape[1]))) for ex in examples]
    preds = runner.generate(prompts, z_items)
    gold = [[evidence_id(e.render()) for e in ex.evidence if e.is_supporting] for ex in examples]
    return _records(examples, preds, retrieved, gold, prompts, k, time.time() - t0), preds


def run_text_method(runner: Runner, examples, method: str, k: int):
    """The raw-text baselines: no_retrieval, full_context, bm25_rag, oracle."""
    t0 = time.time()
    prompts, retrieved = [], []
    for ex in examples:
        texts = [e.render() for e in ex.evidence]
        if method == "no_retrieval":
            chosen = []
        elif method == "full_context":
            chosen = list(range(len(texts)))
        elif method == "bm25_rag":
            chosen, _ = bm25.bm25_top_k(ex.question, texts, k)
        elif method == "oracle":
            chosen = _gold_indices(ex)
        else:
            raise ValueError(f"unknown text method {method!r}")
        retrieved.append(chosen)
        prompts.append(runner.builder.text(ex.question, [texts[j] for j in chosen]))
    preds = runner.generate(prompts)
    with_retrieval = method == "bm25_rag"
    gold = [_gold_indices(ex) for ex in examples] if with_retrieval else None
    return _records(examples, preds, retrieved if with_retrieval else None, gold, prompts, k,
                    time.time() - t0), preds


def diagnostics(runner: Runner, examples, k: int, recall_ks=(2,), run=None) -> dict:
    """Latent Memory on held-out questions: QA F1/EM, supporting-sentence recall@k (also at
    each of `recall_ks`, over the question's own context) and reconstruction token accuracy of
    the supporting sentences, overall and by kind of token (`recon_token_acc/capitalized`,
    `/digits`, `/other`; `metrics.token_class`). `run`: a `run_latent_memory` result to reuse."""
    records, _, retrieved = run or run_latent_memory(runner, examples, k)
    out = metrics.aggregate(records)
    for rk in recall_ks:
        recalls = [metrics.recall_at_k(r, _gold_indices(ex), rk)
                   for r, ex in zip(retrieved, examples)]
        out[f"recall_at_{rk}"] = metrics.mean(recalls)
        # Per question type (HotpotQA: bridge / comparison): they fail for different reasons.
        for qtype in sorted({ex.type for ex in examples}):
            chosen = [i for i, ex in enumerate(examples) if ex.type == qtype]
            out[f"{qtype}/recall_at_{rk}"] = metrics.mean(recalls[i] for i in chosen)
            out[f"{qtype}/f1"] = metrics.mean(records[i]["f1"] for i in chosen)
    recon = runner.reconstruction_report(
        [e.render() for ex in examples for e in ex.evidence if e.is_supporting])
    out["recon_token_acc"] = recon["all"]
    for cls in metrics.TOKEN_CLASSES:
        out[f"recon_token_acc/{cls}"] = recon[cls]
    return out


def validate(runner: Runner, examples, k: int) -> dict:
    """Periodic validation during training (see `diagnostics`)."""
    return diagnostics(runner, examples, k)


__all__ = ["Runner", "run_latent_memory", "run_latent_memory_bank", "run_text_method",
           "validate", "diagnostics", "evidence_id", "TEXT_METHODS", "supporting_texts"]
