"""Builders on real benchmark files: read / kept / dropped per dataset, BM25 recall@k of gold.

    python -m lm_jax.bench.datasets --shared_dir=../shared/data [--wice_dir=DIR] [--k=5]

Each real file under shared_dir (see its README.md) is staged into a temp manual_dir under the
official file name (PopQA's JSON rows are written back as popQA.tsv), built with its builder,
and reported as one JSON line `{"bench": "datasets", "measure": "build", "dataset", "split",
"read", "kept", "dropped", "notes", "seconds"}`. Where a record marks its gold evidence
(HotpotQA, 2Wiki, MuSiQue: supporting sentences / paragraphs; WiCE: supporting sentences),
BM25 recall@k of that evidence is reported two ways (`"measure": "bm25_recall"`):

  * protocol "pool": rank-bm25 over the question's own candidates (the paper's protocol);
  * protocol "corpus": bm25s over ALL distinct evidence items of the split (one index), a
    small open-corpus stand-in.

Recall@k = |top-k & gold| / |gold| per question, averaged over questions with >= 1 gold
item in the pool. Never asserts on time.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence

import numpy as np

from lm_jax.bench._util import emit

# (alias, TFDS name, [(file under shared_dir, official name in manual_dir)])
SOURCES = [
    ("hotpotqa_fullwiki", "hotpot_qa/fullwiki",
     [("hotpotqa/hotpot_dev_fullwiki_v1.subset957.json", "hotpot_dev_fullwiki_v1.json")]),
    ("2wiki", "two_wiki_multihop_qa/default",
     [("2wikimultihopqa/2wikimultihopqa_dev.subset100.json", "dev.json")]),
    ("musique", "musique/ans",
     [("musique/musique_ans_v1.0_dev.subset50.jsonl", "musique_ans_v1.0_dev.jsonl")]),
    ("nq_open", "nq_open/default", [("nq_open/NQ-open.dev.jsonl", "NQ-open.dev.jsonl")]),
    ("nq_open_efficientqa", "nq_open/efficientqa",
     [("nq_open/NQ-open.efficientqa.dev.1.1.jsonl", "NQ-open.efficientqa.dev.1.1.jsonl")]),
    ("triviaqa_rc_web", "trivia_qa/rc_web",
     [("triviaqa/triviaqa_sample.json", "qa/web-dev.json")]),
    ("popqa", "pop_qa/default", [("popqa/popqa.subset200.json", "popQA.tsv")]),
    ("flashrag_nq", "flashrag/default",
     [("nq_open/flashrag_format/nq_test.subsample200.jsonl", "test.jsonl")]),
    ("flashrag_triviaqa", "flashrag/default",
     [("triviaqa/flashrag_format/triviaqa_test.subsample200.jsonl", "test.jsonl")]),
    ("flashrag_popqa", "flashrag/default",
     [("popqa/flashrag_format/popqa_test.subsample200.jsonl", "test.jsonl")]),
]


def _stage(src: str, dst: str) -> None:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.basename(dst) == "popQA.tsv":
        # The subset holds popQA.tsv's rows as JSON objects: write the TSV back.
        from lm_jax.data.builders.pop_qa import COLUMNS

        with open(src) as f:
            rows = json.load(f)
        with open(dst, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, delimiter="\t")
            w.writerow(COLUMNS)
            for r in rows:
                w.writerow([r[c] for c in COLUMNS])
    else:
        shutil.copyfile(src, dst)


def _recall(ranked: Sequence[int], gold: set[int], k: int) -> float:
    return len(set(ranked[:k]) & gold) / len(gold)


def pool_and_corpus_recall(pools: list[tuple[str, list[str], set[int]]], k: int,
                           workdir: str) -> dict[str, dict]:
    """Recall@k of gold items: per-question BM25 pools and one bm25s index over all items.

    pools: (query, candidate texts, indices of the gold candidates) per question.
    """
    from lm_jax.eval.bm25 import bm25_top_k
    from lm_jax.eval.bm25_corpus import CorpusBM25

    pools = [p for p in pools if p[2]]
    pool_r = [_recall(bm25_top_k(q, c, k)[0], g, k) for q, c, g in pools]
    texts: dict[str, int] = {}
    for _, cands, _ in pools:
        for c in cands:
            texts.setdefault(c, len(texts))
    index = CorpusBM25.build(list(texts), os.path.join(workdir, "bm25"))
    ranked, _ = index.search([q for q, _, _ in pools], k=k)
    corpus_r = [
        _recall([int(i) for i in row], {texts[c[j]] for j in g}, k)
        for row, (_, c, g) in zip(ranked, pools, strict=True)
    ]
    return {
        "pool": {"recall_at_k": float(np.mean(pool_r)), "n": len(pool_r)},
        "corpus": {"recall_at_k": float(np.mean(corpus_r)), "n": len(corpus_r),
                   "corpus_items": len(texts)},
    }


def _multihop_pools(data_dir: str, name: str, split: str):
    from lm_jax.data.records import load_examples

    out = []
    for ex in load_examples(data_dir, name, split):
        cands = [e.render() for e in ex.evidence]
        out.append((ex.question, cands, {i for i, e in enumerate(ex.evidence) if e.is_supporting}))
    return out


def _wice_pools(data_dir: str, name: str, split: str):
    import tensorflow_datasets as tfds

    src = tfds.builder(name, data_dir=data_dir).as_data_source(split=split)
    out = []
    for i in range(len(src)):
        r = src[i]
        ev = [s.decode("utf-8") for s in r["evidence"]]
        gold = {int(j) for j in r["supporting_sentences"]}
        out.append((r["claim"].decode("utf-8"), ev, gold))
    return out


def run(shared_dir: str, wice_dir: str | None, k: int, workdir: str) -> list[dict]:
    from lm_jax.data.prepare import prepare_dataset

    sources = list(SOURCES)
    if wice_dir:
        sources.append(("wice_claim", "wice/claim", [(os.path.join(wice_dir, "claim", "dev.jsonl"),
                                                      "claim/dev.jsonl")]))
    records = []
    for alias, name, files in sources:
        manual = os.path.join(workdir, alias, "manual")
        data = os.path.join(workdir, alias, "data")
        missing = [f for f, _ in files if not os.path.isfile(os.path.join(shared_dir, f))]
        if missing:
            records.append(emit("datasets", "skipped", dataset=alias, missing=missing))
            continue
        for src, dst in files:
            _stage(os.path.join(shared_dir, src), os.path.join(manual, dst))
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):  # TFDS prints progress to stdout
            report = prepare_dataset(name, manual, data, max_drop_fraction=1.0)
        seconds = time.perf_counter() - t0
        for split, rep in report["splits"].items():
            records.append(emit(
                "datasets", "build", dataset=alias, tfds_name=name, split=split,
                read=rep["read"], kept=rep["kept"], dropped=rep["dropped"], notes=rep["notes"],
                source_sha256=rep["source"]["sha256"], seconds=round(seconds, 2)))
            pools = None
            if name.split("/")[0] in ("hotpot_qa", "two_wiki_multihop_qa", "musique"):
                pools = _multihop_pools(data, name, split)
            elif name.startswith("wice"):
                pools = _wice_pools(data, name, split)
            if pools is None:
                continue
            for protocol, r in pool_and_corpus_recall(
                pools, k, os.path.join(workdir, alias)
            ).items():
                records.append(emit("datasets", "bm25_recall", dataset=alias, split=split,
                                    protocol=protocol, k=k, **r))
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared_dir", default=os.path.join("..", "shared", "data"))
    parser.add_argument("--wice_dir", default=None,
                        help="WiCE's data/entailment_retrieval folder (not in shared_dir)")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--workdir", default=None, help="default: a temp dir, removed after")
    args = parser.parse_args(argv)
    if args.workdir:
        run(args.shared_dir, args.wice_dir, args.k, args.workdir)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            run(args.shared_dir, args.wice_dir, args.k, tmp)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
