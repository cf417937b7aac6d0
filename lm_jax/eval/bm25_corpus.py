"""BM25 over a whole passage corpus (open-corpus retrieval), through the `bm25s` library.

`eval/bm25.py` scores one question's ~40 own candidates with rank-bm25 (Python lists, fitted
per question: the paper's pool protocol). A corpus such as DPR's 21M Wikipedia passages needs
an index built once: `bm25s` stores it as a sparse (CSC) matrix of precomputed scores, saved
as .npy files that are memory-mapped at search time. Here the corpus is tokenised in chunks
and each document is kept as an int32 id array (not a Python list of strings), so indexing
holds ~4 bytes per token; searching holds only the mmapped matrix pages it touches.

Tokenizer: the same as eval/bm25.py (lowercase, maximal runs of letters/digits, no stop words,
no stemming), so the two BM25 paths see the same terms. Scoring: bm25s "lucene" variant
(k1 = 1.5, b = 0.75 by default; Lucene's idf log(1 + (N - df + 0.5) / (df + 0.5)), which,
unlike rank-bm25's Okapi idf, is never negative).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from lm_jax.eval.bm25 import tokenize

META_FILENAME = "lm_jax_bm25.json"


def _tokenizer():
    from bm25s.tokenization import Tokenizer

    return Tokenizer(lower=True, splitter=tokenize, stopwords=None)


class CorpusBM25:
    """A saved bm25s index over N passages; search returns passage positions 0..N-1."""

    def __init__(self, retriever, vocab: dict[str, int], meta: dict[str, Any]):
        self._retriever = retriever
        self._vocab = vocab
        self.meta = meta

    @property
    def num_docs(self) -> int:
        return int(self.meta["num_docs"])

    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        out_dir: str | os.PathLike,
        *,
        k1: float = 1.5,
        b: float = 0.75,
        chunk_size: int = 50_000,
        built_from: dict[str, Any] | None = None,
    ) -> CorpusBM25:
        """Indexes `texts` (any iterable, read chunk by chunk) into out_dir; returns the index.

        out_dir appears only when complete (built in a temp dir beside it, then renamed), with
        lm_jax_bm25.json recording the parameters, size and `built_from` (e.g. the corpus
        dataset name and its data report's sha256).
        """
        import bm25s

        out_dir = os.fspath(out_dir)
        tok = _tokenizer()
        ids: list[np.ndarray] = []
        it = iter(texts)
        while chunk := list(itertools.islice(it, chunk_size)):
            for doc in tok.tokenize(chunk, update_vocab=True, return_as="ids",
                                    show_progress=False):
                ids.append(np.asarray(doc, np.int32))
        if not ids:
            raise ValueError("CorpusBM25.build: the corpus is empty")
        vocab = tok.get_vocab_dict()
        retriever = bm25s.BM25(k1=k1, b=b, method="lucene")
        retriever.index((ids, vocab), show_progress=False)
        del ids
        meta = {
            "num_docs": retriever.scores["num_docs"],
            "vocab_size": len(vocab),
            "k1": k1,
            "b": b,
            "method": "lucene",
            "tokenizer": "lm_jax.eval.bm25.tokenize",
            "bm25s_version": bm25s.__version__,
            "built_from": built_from or {},
        }
        parent = os.path.dirname(os.path.abspath(out_dir))
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-bm25-", dir=parent)
        try:
            retriever.save(tmp)
            with open(os.path.join(tmp, META_FILENAME), "w") as f:
                json.dump(meta, f, indent=1)
            if os.path.exists(out_dir):
                shutil.rmtree(out_dir)
            os.replace(tmp, out_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls(retriever, vocab, meta)

    @classmethod
    def load(cls, index_dir: str | os.PathLike, mmap: bool = True) -> CorpusBM25:
        """Opens a saved index (memory-mapped by default)."""
        import bm25s

        index_dir = os.fspath(index_dir)
        meta_path = os.path.join(index_dir, META_FILENAME)
        if not os.path.isfile(meta_path):
            raise FileNotFoundError(f"{index_dir}: not a CorpusBM25 index (no {META_FILENAME})")
        with open(meta_path) as f:
            meta = json.load(f)
        retriever = bm25s.BM25.load(index_dir, mmap=mmap, show_progress=False)
        return cls(retriever, retriever.vocab_dict, meta)

    def search(self, queries: Sequence[str], k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Top-k passages per query, best first.

        Returns (indices [len(queries), min(k, N)] int64 passage positions,
        scores [len(queries), min(k, N)] float32). Query terms missing from the corpus are
        ignored; a query with no known term gets score-0 passages.
        """
        k = min(int(k), self.num_docs)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        empty = self._vocab.get("", None)
        q_ids = []
        for q in queries:
            ids = [self._vocab[t] for t in tokenize(q) if t in self._vocab]
            q_ids.append(ids or ([empty] if empty is not None else []))
        docs, scores = self._retriever.retrieve(
            q_ids, k=k, show_progress=False, n_threads=1
        )
        return np.asarray(docs, np.int64), np.asarray(scores, np.float32)


def corpus_texts(data_dir: str | os.PathLike, name: str = "dpr_corpus/passages",
                 split: str = "train", batch: int = 4096) -> Iterable[str]:
    """Passages of a prepared dpr_corpus dataset as "title: text", in corpus order."""
    import tensorflow_datasets as tfds

    import lm_jax.data.builders  # noqa: F401  (registers the builders)

    source = tfds.builder(name, data_dir=os.fspath(data_dir)).as_data_source(split=split)
    for start in range(0, len(source), batch):
        for r in source.__getitems__(list(range(start, min(start + batch, len(source))))):
            title, text = r["title"].decode("utf-8"), r["text"].decode("utf-8")
            yield f"{title}: {text}" if title else text
