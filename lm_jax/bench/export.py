r"""Bank-export benchmark: evidence items/s and stored bytes per item, per latent dtype.

    python -m lm_jax.bench.export --config=configs/hotpotqa.py:demo
    python -m lm_jax.bench.export --config=configs/hotpotqa.py:demo --workdir=/tmp/wd2   # trained

Without --workdir: the demo-size compressor (`model.arch` of the config, its LoRA adapters and
heads) with RANDOM weights, over the distinct evidence sentences of a synthetic test world of
`--num_questions` questions, tokenized by a BPE tokenizer trained on that corpus (as the demo's
data stage does; `--tokenizer=DIR` uses an existing one). With --workdir: the trained run's
tokenizer, compressor and checkpoint (`lm_jax.pipeline._Session`) and its export split.

Measures, one JSON line each (`"bench": "export"`):
  encode      items/s of the compressor alone (tokenize + jitted encode, `Runner.encode_items`),
              after a compile warm-up (compile seconds reported)
  export      per latent dtype (bfloat16, int8, float32): items/s of the whole export stage
              (`lm_jax.memory.export.export_stage`: encode, quantize, write parts with checksums
              and fsync, finalize) into a fresh temporary directory; stored latent bytes per item
              (`latent_bytes_per_item`, int8 scales included), key bytes, the bank's
              bytes_per_item (latent + key) and the measured bytes on disk per item (all files,
              texts included); the same figures for the paper's compressor width (H=2048, R=512)
  error       reconstruction error of bfloat16 and int8 latents against float32: relative L2
              error ||z_q - z|| / ||z|| (mean and max over items), max absolute error, cosine
              (mean and min); also checked against the latents read back from the written bank
  summary     all of the above in one line
Never asserts on time.
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import tempfile
import time

import numpy as np

from lm_jax.bench._util import emit, load_config_file, loadavg, machine

BENCH = "export"
DTYPES = ("bfloat16", "int8", "float32")
PAPER_HIDDEN, PAPER_RETRIEVAL_DIM = 2048, 512


def synthetic_examples(num_questions: int, seed: int = 0):
    """QAExamples of a synthetic test world (the demo's evaluation data, generated in memory)."""
    from lm_jax.data import synthetic
    from lm_jax.data.records import from_hotpot_json

    return [from_hotpot_json(r) for r in synthetic.generate(num_questions, seed, "test")]


def random_runner(config, examples, tokenizer_dir: str | None, tmp: str, seed: int = 0):
    """A Runner over the demo-size model with random weights (and a tokenizer for it)."""
    import flax.linen as nn
    import jax

    from lm_jax.data import synthetic
    from lm_jax.data.tokenizer_train import train_tokenizer
    from lm_jax.eval.evaluate import Runner
    from lm_jax.hf.tokenizer import load_tokenizer
    from lm_jax.train import build as build_lib

    if tokenizer_dir:
        tok = load_tokenizer(tokenizer_dir, flag_name="--tokenizer")
    else:
        texts = [e.render() for ex in examples for e in ex.evidence]
        texts += [ex.question for ex in examples] + [ex.answer for ex in examples]
        tok = train_tokenizer(texts, os.path.join(tmp, "tokenizer"),
                              syllables=synthetic.SYLLABLES)
    arch = build_lib.random_arch(config, len(tok))
    model = build_lib.build_latent_memory(config, arch, arch)
    params = nn.unbox(jax.jit(model.init)(jax.random.key(seed)))
    # LoRA B is zero at init (adapters are the identity); perturb it so adapters matter.
    params = jax.tree_util.tree_map_with_path(
        lambda p, x: x + 0.02 if jax.tree_util.keystr(p).endswith("_b']") else x, params)
    trainable, frozen = model.split(params)
    d, e = config.data, config.eval
    return Runner(model, tok, tok, trainable, frozen, max_evidence_len=d.max_evidence_len,
                  max_question_len=d.max_question_len, max_new_tokens=e.max_new_tokens,
                  batch_size=e.batch_size, max_prompt_len=e.max_prompt_len)


def quantization_error(z: np.ndarray, dtype: str) -> dict:
    """Error of `dtype` storage (quantize + dequantize) against the float32 latents z [n, T, H]."""
    from lm_jax.memory.bank import dequantize_latents, quantize_latents

    stored, scales = quantize_latents(z, dtype)
    zq = dequantize_latents(stored, scales, dtype)
    return _error(z, zq)


def _error(z: np.ndarray, zq: np.ndarray) -> dict:
    a = z.reshape(len(z), -1).astype(np.float64)
    b = zq.reshape(len(zq), -1).astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    rel = np.linalg.norm(b - a, axis=1) / np.maximum(na, 1e-30)
    cos = np.sum(a * b, axis=1) / np.maximum(na * nb, 1e-30)
    return dict(rel_l2_mean=float(rel.mean()), rel_l2_max=float(rel.max()),
                max_abs=float(np.abs(b - a).max()), cosine_mean=float(cos.mean()),
                cosine_min=float(cos.min()))


def _dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def _file_bytes(path: str, names: tuple[str, ...]) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs
               if f in names)


def run(config, workdir: str | None = None, num_questions: int = 200,
        dtypes=DTYPES, tokenizer: str | None = None, seed: int = 0) -> list[dict]:
    """Runs the benchmark and returns the JSON records it printed."""
    from lm_jax.memory import bank as bank_lib
    from lm_jax.memory.export import corpus_items, export_stage

    records = []

    def out(measure, **fields):
        records.append(emit(BENCH, measure, **fields))

    tmp = tempfile.mkdtemp(prefix="bench_export_")
    try:
        t0 = time.perf_counter()
        if workdir:
            from lm_jax.pipeline import _Session

            session = _Session(config, workdir)
            runner, examples = session.runner, session.export_examples()
            source = f"trained: {os.path.abspath(workdir)}"
        else:
            examples = synthetic_examples(num_questions, seed)
            runner = random_runner(config, examples, tokenizer, tmp, seed)
            source = f"random weights, synthetic test world of {num_questions} questions"
        setup_s = time.perf_counter() - t0
        model_cfg = runner.model.config
        h, t = model_cfg.compressor.hidden_size, model_cfg.num_latent_tokens
        r = model_cfg.retrieval_dim
        items = corpus_items(examples)
        texts = [text for _, _, text in items]
        out("config", source=source, **machine(), num_items=len(items), hidden_size=h,
            num_latent_tokens=t, retrieval_dim=r, max_evidence_len=runner.max_evidence_len,
            encode_batch_size=runner.batch_size, export_batch_size=config.export.batch_size,
            setup_s=round(setup_s, 3), loadavg=loadavg())

        t0 = time.perf_counter()
        runner.encode_items(texts[:runner.batch_size])
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        z, _ = runner.encode_items(texts)
        encode_s = time.perf_counter() - t0
        out("encode", items=len(texts), seconds=round(encode_s, 3),
            items_per_s=round(len(texts) / encode_s, 1), compile_s=round(compile_s, 3))

        exports = {}
        for dtype in dtypes:
            cfg = copy.deepcopy(config)
            cfg.export.latent_dtype = dtype
            wd = os.path.join(tmp, f"wd-{dtype}")
            os.makedirs(wd)
            t0 = time.perf_counter()
            path = export_stage(cfg, wd, runner, examples)
            seconds = time.perf_counter() - t0
            bank = bank_lib.LatentBank.load(path)
            n = bank.num_items
            read_back = bank.latents(np.arange(n))
            latent_disk = _file_bytes(path, ("latents.npy", "scales.npy"))
            rec = dict(
                latent_dtype=dtype, items=n, seconds=round(seconds, 3),
                items_per_s=round(n / seconds, 1),
                latent_bytes_per_item=bank_lib.latent_bytes_per_item(dtype, t, h),
                key_bytes_per_item=4 * bank.key_dim,
                bank_bytes_per_item=bank.bytes_per_item,
                disk_latent_bytes_per_item=round(latent_disk / n, 1),
                disk_bytes_per_item=round(_dir_bytes(path) / n, 1),
                paper_latent_bytes_per_item=bank_lib.latent_bytes_per_item(dtype, 1, PAPER_HIDDEN),
                paper_bytes_per_item=(bank_lib.latent_bytes_per_item(dtype, 1, PAPER_HIDDEN)
                                      + 4 * PAPER_RETRIEVAL_DIM),
                read_back_error=_error(z, read_back) if dtype != "float32" else
                dict(max_abs=float(np.abs(read_back - z).max())),
            )
            out("export", **rec)
            exports[dtype] = rec
            del bank

        errors = {d: quantization_error(z, d) for d in ("bfloat16", "int8")}
        for dtype, err in errors.items():
            out("error", latent_dtype=dtype, reference="float32", **err)
        out("summary", num_items=len(texts), hidden_size=h, encode_items_per_s=round(
            len(texts) / encode_s, 1),
            export_items_per_s={d: e["items_per_s"] for d, e in exports.items()},
            bytes_per_item={d: e["bank_bytes_per_item"] for d, e in exports.items()},
            latent_bytes_per_item={d: e["latent_bytes_per_item"] for d, e in exports.items()},
            paper_bytes_per_item={d: e["paper_bytes_per_item"] for d, e in exports.items()},
            rel_l2_error={d: e["rel_l2_mean"] for d, e in errors.items()},
            loadavg=loadavg())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return records


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/hotpotqa.py:demo", help="config path[:variant]")
    p.add_argument("--workdir", default=None,
                   help="a trained run: use its tokenizer, checkpoint and export split")
    p.add_argument("--num_questions", type=int, default=200,
                   help="random mode: questions of the synthetic test world")
    p.add_argument("--tokenizer", default=None, help="random mode: an existing tokenizer dir")
    p.add_argument("--dtypes", default=",".join(DTYPES), help="latent dtypes to export")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    config = load_config_file(args.config)
    return run(config, args.workdir, args.num_questions, tuple(args.dtypes.split(",")),
               args.tokenizer, args.seed)


if __name__ == "__main__":
    main()
