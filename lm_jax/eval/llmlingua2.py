"""LLMLingua-2 prompt compression (Pan et al., 2024) with its XLM-RoBERTa token classifier in Flax.

The classifier gives each token a probability of label 1 ("keep"). As in the LLMLingua-2
code, probabilities are aggregated per word (whitespace-separated word = the SentencePiece
tokens from one "▁" to the next; word probability = mean of its tokens'), a word is kept
when its probability reaches the `100 * (1 - rate)` percentile of the context's word
probabilities, and the kept words are joined with single spaces in their original order.
`rate` = 0.2 / 0.1 / 0.05 are the paper's 5x / 10x / 20x baselines; the rate is applied to
words (the kept share of classifier tokens is reported as `token_rate`).

Contexts longer than the classifier's window (512 tokens with [CLS]/[SEP]) are split into
chunks of whole words, each ending at a sentence end ("." / "!" / "?" / newline) when one
fits (LLMLingua-2's chunk_end_tokens), and every chunk is classified separately; the percentile
is taken over the whole context.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lm_jax.models.encoder import Encoder, EncoderConfig

_SENTENCE_END = (".", "!", "?", "\n")


@dataclasses.dataclass(frozen=True)
class Compressed:
    """A compressed context: `text`, and how much of the original it keeps."""

    text: str
    kept_words: int
    total_words: int
    kept_tokens: int
    total_tokens: int

    @property
    def token_rate(self) -> float:
        return self.kept_tokens / max(self.total_tokens, 1)


class TokenKeepClassifier:
    """An XLM-RoBERTa (or BERT) token classifier + its fast tokenizer: words -> keep prob."""

    def __init__(self, config: EncoderConfig, params, tokenizer, max_tokens: int = 512,
                 keep_label: int = 1):
        if config.num_labels < 2:
            raise ValueError("TokenKeepClassifier needs a token-classification checkpoint "
                             f"(num_labels >= 2, got {config.num_labels})")
        self.config, self.params, self.tokenizer = config, params, tokenizer
        self.max_tokens = min(max_tokens, config.max_tokens)
        self.keep_label = keep_label
        model = Encoder(config)

        @jax.jit
        def keep_prob(params, ids, mask):
            logits = model.apply({"params": params}, ids, mask)
            return jax.nn.softmax(logits, axis=-1)[..., keep_label]

        self._keep_prob = keep_prob

    @classmethod
    def from_pretrained(cls, model_dir: str | os.PathLike, **kwargs) -> TokenKeepClassifier:
        """A local HF directory (e.g. llmlingua-2-xlm-roberta-large-meetingbank)."""
        from transformers import AutoTokenizer

        from lm_jax.hf.encoder_checkpoint import load_encoder_config, load_encoder_params

        model_dir = os.fspath(model_dir)
        config = load_encoder_config(model_dir)
        return cls(config, load_encoder_params(model_dir, config),
                   AutoTokenizer.from_pretrained(model_dir), **kwargs)

    def _word_tokens(self, words: Sequence[str]) -> list[list[int]]:
        enc = self.tokenizer(list(words), add_special_tokens=False)
        return [list(ids) for ids in enc["input_ids"]]

    def chunks(self, words: Sequence[str]) -> list[tuple[int, int]]:
        """Word ranges [start, end) whose tokens fit the window minus [CLS]/[SEP], cut after
        the last sentence-ending word that fits (else at the budget)."""
        budget = self.max_tokens - 2
        counts = [min(len(t), budget) for t in self._word_tokens(words)]
        out, start = [], 0
        while start < len(words):
            end, used, last_end = start, 0, None
            while end < len(words) and used + counts[end] <= budget:
                used += counts[end]
                end += 1
                if words[end - 1].endswith(_SENTENCE_END):
                    last_end = end
            if end < len(words) and last_end is not None:
                end = last_end
            out.append((start, end))
            start = end
        return out

    def word_keep_probs(self, words: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(keep probability per word [W] float32, tokens per word [W] int)."""
        toks = self._word_tokens(words)
        budget = self.max_tokens - 2
        probs = np.zeros(len(words), np.float32)
        cls_id, sep_id = self.tokenizer.cls_token_id, self.tokenizer.sep_token_id
        for start, end in self.chunks(words):
            ids, owner = [cls_id], [-1]
            for w in range(start, end):
                ids += toks[w][:budget]
                owner += [w] * len(toks[w][:budget])
            ids.append(sep_id)
            owner.append(-1)
            t = -(-len(ids) // 64) * 64  # few shapes -> few compilations
            arr = np.full((1, t), self.config.pad_token_id, np.int32)
            arr[0, :len(ids)] = ids
            mask = np.zeros((1, t), np.int32)
            mask[0, :len(ids)] = 1
            p = np.asarray(self._keep_prob(self.params, jnp.asarray(arr), jnp.asarray(mask)))[0]
            owner = np.asarray(owner)
            for w in range(start, end):
                sel = owner == w
                probs[w] = p[: len(owner)][sel].mean() if sel.any() else 0.0
        return probs, np.asarray([len(t) for t in toks])

    def compress(self, context: str, rate: float) -> Compressed:
        """Keeps about `rate` of the context's words (those the classifier rates highest)."""
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"rate must be in (0, 1], got {rate}")
        words = context.split()
        if not words:
            return Compressed("", 0, 0, 0, 0)
        probs, counts = self.word_keep_probs(words)
        threshold = np.percentile(probs, 100.0 * (1.0 - rate))
        keep = probs >= threshold
        return Compressed(
            text=" ".join(w for w, k in zip(words, keep, strict=True) if k),
            kept_words=int(keep.sum()), total_words=len(words),
            kept_tokens=int(counts[keep].sum()), total_tokens=int(counts.sum()),
        )
