"""Open-corpus scale: a synthetic DPR-layout corpus through the dpr_corpus build and BM25 index.

    python -m lm_jax.bench.corpus --num_passages=1000000 [--words=100] [--workdir=DIR]

Writes `passages.tsv` (header `id\\ttext\\ttitle`, DPR's layout; `--words` words per passage
drawn from a Zipf(1.1) law over a 50,000-word synthetic vocabulary, deterministic in --seed),
then runs each phase in its own process and reports its wall time and peak resident memory
(`ru_maxrss` of that process, from os.wait4) as one JSON line:

  generate  the TSV                                      (bytes)
  build     prepare_dataset("dpr_corpus/passages")      (ArrayRecord bytes, read/kept)
  bm25      CorpusBM25.build over corpus_texts()         (index bytes, vocab)
  search    CorpusBM25.load(mmap) + 1,000 queries, k=5   (queries/s)

Never asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from lm_jax.bench._util import emit, loadavg

_SYLLABLES = ("ka", "lo", "mi", "ren", "sa", "tu", "vel", "dor", "an", "ix", "bo", "ne", "qua",
              "ri", "sho", "th", "ul", "ze", "pa", "gri")


def vocabulary(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    words: set[str] = set()
    while len(words) < n:
        k = int(rng.integers(1, 4))
        words.add("".join(_SYLLABLES[i] for i in rng.integers(0, len(_SYLLABLES), k + 1)))
    return sorted(words)


def write_corpus(path: str, num_passages: int, words: int, seed: int) -> int:
    vocab = np.asarray(vocabulary(50_000, seed), dtype=object)
    rng = np.random.default_rng(seed + 1)
    with open(path, "w", encoding="utf-8") as f:
        f.write("id\ttext\ttitle\n")
        for start in range(0, num_passages, 10_000):
            n = min(10_000, num_passages - start)
            ranks = np.minimum(rng.zipf(1.1, (n, words + 2)) - 1, len(vocab) - 1)
            for j in range(n):
                w = vocab[ranks[j]]
                f.write(f"{start + j + 1}\t{' '.join(w[2:])}\t{w[0].title()} {w[1]}\n")
    return os.path.getsize(path)


def _dir_bytes(d: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)


def phase(name: str, workdir: str, args) -> dict:
    """Runs one phase in this process; returns its measurements."""
    tsv = os.path.join(workdir, "manual", "passages.tsv")
    data = os.path.join(workdir, "data")
    if name == "generate":
        os.makedirs(os.path.dirname(tsv), exist_ok=True)
        return {"tsv_bytes": write_corpus(tsv, args.num_passages, args.words, args.seed)}
    if name == "build":
        import contextlib

        from lm_jax.data.prepare import prepare_dataset

        with contextlib.redirect_stdout(sys.stderr):
            rep = prepare_dataset("dpr_corpus/passages", os.path.dirname(tsv), data)
        split = rep["splits"]["train"]
        return {"read": split["read"], "kept": split["kept"], "dataset_bytes": _dir_bytes(data)}
    from lm_jax.eval.bm25_corpus import CorpusBM25, corpus_texts

    index_dir = os.path.join(workdir, "bm25")
    if name == "bm25":
        ix = CorpusBM25.build(corpus_texts(data), index_dir, chunk_size=args.chunk_size,
                              built_from={"dataset": "dpr_corpus/passages"})
        return {"num_docs": ix.num_docs, "vocab": ix.meta["vocab_size"],
                "index_bytes": _dir_bytes(index_dir)}
    if name == "search":
        ix = CorpusBM25.load(index_dir, mmap=True)
        vocab = vocabulary(50_000, args.seed)
        rng = np.random.default_rng(7)
        queries = [" ".join(vocab[i] for i in rng.integers(0, 5000, 4)) for _ in range(1000)]
        t0 = time.perf_counter()
        idx, _ = ix.search(queries, k=5)
        dt = time.perf_counter() - t0
        return {"queries": len(queries), "qps": round(len(queries) / dt, 1),
                "top1_valid": bool((idx[:, 0] >= 0).all())}
    raise ValueError(f"unknown phase {name!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_passages", type=int, default=1_000_000)
    parser.add_argument("--words", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk_size", type=int, default=50_000)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--phases", default="generate,build,bm25,search")
    parser.add_argument("--_phase", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix="lm_jax_corpus_")
    if args._phase:  # child: one phase, its result as the last stdout line
        print(json.dumps(phase(args._phase, workdir, args)))
        return 0
    for name in args.phases.split(","):
        cmd = [sys.executable, "-m", "lm_jax.bench.corpus", f"--_phase={name}",
               f"--workdir={workdir}", f"--num_passages={args.num_passages}",
               f"--words={args.words}", f"--seed={args.seed}", f"--chunk_size={args.chunk_size}"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - t0
        if proc.returncode:
            emit("corpus", name, error=f"exit status {proc.returncode}")
            return 1
        result = json.loads(out.strip().splitlines()[-1])
        emit("corpus", name, num_passages=args.num_passages, words=args.words,
             seconds=round(seconds, 1), peak_rss_mb=round(usage.ru_maxrss / 1024, 1),
             loadavg=loadavg(), cpus=os.cpu_count(), **result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
