"""Dense retrieval with a BERT sentence encoder (all-MiniLM-L6-v2 recipe) in Flax.

Embedding = mean of the encoder's last hidden states over real tokens, L2-normalised
(sentence-transformers' Transformer -> Pooling(mean) -> Normalize), inputs truncated to
`max_length` tokens (all-MiniLM-L6-v2: 256). Score = cosine = dot product of unit rows; top-k
is exact (a matmul per query block). Qwen3-Embedding (last-token pooling over a QK-norm
decoder) is not here: it needs the QK-norm decoder another issue adds.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lm_jax.models.encoder import Encoder, EncoderConfig, mean_pool_normalize


class DenseEncoder:
    """texts -> unit embeddings [N, H] float32 (a tokenizer + Flax BERT + the pooling recipe)."""

    def __init__(self, config: EncoderConfig, params, tokenizer, max_length: int = 256,
                 batch_size: int = 64):
        if max_length > config.max_tokens:
            raise ValueError(f"max_length {max_length} > the encoder's {config.max_tokens}")
        self.config, self.params, self.tokenizer = config, params, tokenizer
        self.max_length, self.batch_size = max_length, batch_size
        model = Encoder(config)

        @jax.jit
        def embed(params, ids, mask):
            hidden = model.apply({"params": params}, ids, mask, classify=False)
            return mean_pool_normalize(hidden, mask)

        self._embed = embed

    @classmethod
    def from_pretrained(cls, model_dir: str | os.PathLike, **kwargs) -> DenseEncoder:
        """A local HF directory with config.json, model.safetensors and the tokenizer files."""
        from transformers import AutoTokenizer

        from lm_jax.hf.encoder_checkpoint import load_encoder_config, load_encoder_params

        model_dir = os.fspath(model_dir)
        config = load_encoder_config(model_dir)
        return cls(config, load_encoder_params(model_dir, config),
                   AutoTokenizer.from_pretrained(model_dir), **kwargs)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """[len(texts), hidden] float32 unit rows. Batches are padded to a multiple of 32
        tokens (few shapes -> few compilations)."""
        out = []
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(list(texts[start:start + self.batch_size]), truncation=True,
                                 max_length=self.max_length, padding=True,
                                 return_tensors="np")
            ids, mask = enc["input_ids"], enc["attention_mask"]
            t = min(self.max_length, -(-ids.shape[1] // 32) * 32)
            pad = t - ids.shape[1]
            if pad > 0:
                ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=self.config.pad_token_id)
                mask = np.pad(mask, ((0, 0), (0, pad)))
            out.append(np.asarray(self._embed(self.params, jnp.asarray(ids, jnp.int32),
                                              jnp.asarray(mask, jnp.int32))))
        if not out:
            return np.zeros((0, self.config.hidden_size), np.float32)
        return np.concatenate(out).astype(np.float32)


def dense_top_k(query_emb: np.ndarray, corpus_emb: np.ndarray, k: int = 5,
                block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by dot product: [Q, H] x [N, H] -> (indices [Q, min(k, N)] int64,
    scores [Q, min(k, N)] float32), best first, ties by lower index."""
    k = min(int(k), corpus_emb.shape[0])
    if k < 1:
        raise ValueError(f"k must be >= 1 and the corpus non-empty (k={k})")
    idx_out, sc_out = [], []
    for s in range(0, query_emb.shape[0], block):
        scores = query_emb[s:s + block] @ corpus_emb.T
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        idx_out.append(order)
        sc_out.append(np.take_along_axis(scores, order, axis=1))
    if not idx_out:
        return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
    return np.concatenate(idx_out).astype(np.int64), np.concatenate(sc_out).astype(np.float32)


def dense_retrieve(encoder: DenseEncoder, corpus: Sequence[str], queries: Sequence[str],
                   k: int = 5, corpus_emb: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Embeds the corpus (unless corpus_emb is given) and the queries; exact top-k."""
    if corpus_emb is None:
        corpus_emb = encoder.embed(corpus)
    return dense_top_k(encoder.embed(queries), corpus_emb, k)
