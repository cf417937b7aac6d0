r"""Train-step benchmark: step time, tokens/s, model FLOPs and MFU of the jitted Latent Memory step.

    python -m lm_jax.bench.train_step --config=configs/hotpotqa.py:demo --size=demo
    python -m lm_jax.bench.train_step --config=configs/hotpotqa.py:demo --size=paper_shaped
    python -m lm_jax.bench.train_step --config=configs/hotpotqa.py --size=paper   # accelerator

The model is built from shapes alone with RANDOM weights (no checkpoint, no tokenizer, no data):
the step's cost does not depend on the weights' values. The batch is random token ids with the
static shapes of the real pipeline (`make_step_batch`, real-token counts drawn like HotpotQA's).
The step is `lm_jax.train.step.make_train_step` over `latent_memory_losses`, jitted exactly like
`lm_jax.train.loop` does (explicit in/out shardings on a mesh of all devices, trainable state
donated), compiled ahead of time; then W warm-up steps and M timed steps (each blocked on).

Sizes (`--size`):
  demo          the config's own tiny models (`model.arch`, its dtype/remat/share_base) and the
                config's batch shapes, LoRA rank and latent count. Vocabulary: `--vocab_size`, else
                `model.arch.vocab_size`, else 1024 (the demo tokenizer's upper bound).
  paper_shaped  the paper's structure scaled to run a few steps on a 2-core CPU: a separate
                compressor (hidden 256, 2 layers, 4 heads / 1 kv, head_dim 64, mlp 1024, tied
                vocab 4096) and generator (hidden 512, 4 layers, 4/1 heads, head_dim 128, mlp 1792,
                untied vocab 4096): the 1B:8B ratios of width (1:2), depth (1:2), GQA (4:1), head
                dims (64/128), mlp/hidden (4 and 3.5). bf16 + remat, LoRA r=16 alpha=32 dropout
                0.05 (alpha/r = 2 as in the paper), P=4 positives, N=8 negatives, up to 3 extra
                student negatives, D=16 distill tokens, batch 4 = 2 x accumulation 2, lengths a
                quarter to a sixth of the paper's (evidence 32, question 16, student 48, teacher
                128), retrieval dim 128.
  paper         Llama-3.2-1B compressor (hidden 2048, 16 layers, 32/8 heads, head_dim 64, mlp 8192,
                tied vocab 128256) + Llama-3.1-8B generator (4096, 32 layers, 32/8 heads, head_dim
                128, mlp 14336, untied vocab 128256), bf16, remat, LoRA r=64 alpha=128 dropout 0.05,
                retrieval dim 512, and the paper config's shapes (batch 32 = 8 x accumulation 4,
                P=4, N=8, evidence 128, question 64, student 256, teacher 768, D=16; equal to
                configs/hotpotqa.py's default variant). On a CPU it is not run: one JSON line says
                it needs an accelerator (its FLOP count is still printed).
`--batch_size` / `--accum_steps` override any size's batch (e.g. to fit a smaller accelerator).

Model FLOPs per step (`step_flops`; MFU convention: no remat recompute, static padded shapes).
Per token, a matmul with P weights costs 2P forward; backward costs 2P for the activation
gradient and 2P for the weight gradient. So, with T latent tokens, E = B(P+N) evidence items,
Pc/Pg the compressor/generator parameters without embeddings (`DecoderConfig.num_params(False)`),
A_x the parameters of LoRA adapter x (r * (in + out) per adapted projection, times layers), Vc/Vg
the vocabulary projections (hidden x vocab), H/G/R the compressor/generator/retrieval widths and
M = (H + G) // 2:
  compressor, compress adapter   (4 Pc + 6 A_compress) x E (Le + T)     frozen base: fwd + act-grad
  compressor, query adapter      (4 Pc + 6 A_query)    x B (Lq + T)     adapters: fwd + both grads
  reconstruction, decode adapter (4 Pc + 6 A_decode)   x E (T + Le)  +  4 Vc x E (T + Le) (lm head)
  heads (trainable)              6 H R (E + B)  (retrieval_proj)  +  6 B E R / A  (InfoNCE logits,
                                 A = accumulation steps)  +  6 (H M + M G) E T  (cross_proj)
  student (frozen generator, gradients pass)  4 Pg x B Ss  +  4 Vg x B D  (logits at D positions)
  teacher (frozen generator, no gradient)     2 Pg x B St  +  2 Vg x B D
  attention, per sequence of length S and per pass: 4 x layers x S^2 x heads x head_dim forward
                                 (QK^T and PV, the full S x S product as computed); x 3 where
                                 gradients pass (no weights, but both inputs need gradients),
                                 x 1 for the teacher.
Ss / St are the student / teacher sequence lengths including the D-1 forced answer tokens.
Embedding lookups, norms, softmax, the losses and the optimizer update are not counted.

MFU = model FLOPs per step / step time / peak. Peak: the accelerator's bf16 dense spec per chip
(TPU v4 275, v5e 197, v5p 459, v6e 918; H100 SXM 989, H100 PCIe 756, H200 989, A100 312 TFLOP/s)
times the device count; on a CPU a peak MEASURED in the same run: the best of a few large float32
`jnp.dot` timings (all devices of a CPU share its cores, so it is the host's peak), and, when the
model computes in another dtype, that dtype's measured peak too (`mfu_bfloat16_peak`).

Prints one JSON line per measurement (`"bench": "train_step"`): config, flops, compile (init,
lower and compile seconds, `memory_analysis` sizes and estimated peak, XLA's own flop count:
it includes remat recompute and counts a loop body, e.g. the accumulation scan, once), peak,
steps (per-step times) and a final summary. Never asserts on time.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import statistics
import time

import numpy as np

from lm_jax.bench._util import emit, load_config_file, loadavg, machine
from lm_jax.models import latent_memory as lm_lib
from lm_jax.models.config import DecoderConfig
from lm_jax.models.latent_memory import LatentMemory, LatentMemoryConfig, paper_adapters

BENCH = "train_step"
SIZES = ("demo", "paper_shaped", "paper", "tiny")
DEMO_VOCAB = 1024

# bf16 dense TFLOP/s per chip, matched against jax's device_kind (first match wins).
PEAK_TFLOPS = (
    ("v6 lite", 918.0), ("v6e", 918.0), ("v5 lite", 197.0), ("v5e", 197.0), ("v5p", 459.0),
    ("v5", 459.0), ("v4", 275.0), ("h200", 989.0), ("h100 pcie", 756.0), ("h100", 989.0),
    ("a100", 312.0),
)


@dataclasses.dataclass(frozen=True)
class StepShapes:
    """Static shapes of one train-step batch (global, all hosts together)."""

    batch_size: int
    accum_steps: int
    max_positives: int
    max_negatives: int
    evidence_len: int
    question_len: int
    student_len: int      # prompt part; the batch adds distill_tokens - 1 forced tokens
    teacher_len: int
    distill_tokens: int   # D: positions compared by the distillation loss
    max_extra_negatives: int

    @property
    def student_seq(self) -> int:
        return self.student_len + self.distill_tokens - 1

    @property
    def teacher_seq(self) -> int:
        return self.teacher_len + self.distill_tokens - 1

    @classmethod
    def from_config(cls, config) -> StepShapes:
        d = config.data
        return cls(d.batch_size, config.optim.accum_steps, d.max_positives, d.max_negatives,
                   d.max_evidence_len, d.max_question_len, d.max_student_len, d.max_teacher_len,
                   d.distill_tokens, d.max_extra_negatives)


PAPER_SHAPES = StepShapes(batch_size=32, accum_steps=4, max_positives=4, max_negatives=8,
                          evidence_len=128, question_len=64, student_len=256, teacher_len=768,
                          distill_tokens=16, max_extra_negatives=3)
PAPER_SHAPED_SHAPES = StepShapes(batch_size=4, accum_steps=2, max_positives=4, max_negatives=8,
                                 evidence_len=32, question_len=16, student_len=48,
                                 teacher_len=128, distill_tokens=16, max_extra_negatives=3)
# For tests: every part of the step at the smallest size that still exercises it.
TINY_SHAPES = StepShapes(batch_size=8, accum_steps=1, max_positives=2, max_negatives=2,
                         evidence_len=8, question_len=6, student_len=16, teacher_len=20,
                         distill_tokens=3, max_extra_negatives=1)

_LLAMA3_ROPE_1B = (("factor", 32.0), ("high_freq_factor", 4.0), ("low_freq_factor", 1.0),
                   ("original_max_position_embeddings", 8192), ("rope_type", "llama3"))
_LLAMA3_ROPE_8B = (("factor", 8.0), ("high_freq_factor", 4.0), ("low_freq_factor", 1.0),
                   ("original_max_position_embeddings", 8192), ("rope_type", "llama3"))
_BF16 = dict(dtype="bfloat16", param_dtype="bfloat16", remat=True)

PAPER_COMPRESSOR = DecoderConfig(  # Llama-3.2-1B(-Instruct)
    model_type="llama", vocab_size=128256, hidden_size=2048, intermediate_size=8192,
    num_layers=16, num_heads=32, num_kv_heads=8, head_dim=64, rms_norm_eps=1e-5,
    rope_theta=500000.0, rope_scaling=_LLAMA3_ROPE_1B, max_position_embeddings=131072,
    tie_word_embeddings=True, bos_token_id=128000, eos_token_id=128009, **_BF16)
PAPER_GENERATOR = DecoderConfig(  # Llama-3.1-8B(-Instruct)
    model_type="llama", vocab_size=128256, hidden_size=4096, intermediate_size=14336,
    num_layers=32, num_heads=32, num_kv_heads=8, head_dim=128, rms_norm_eps=1e-5,
    rope_theta=500000.0, rope_scaling=_LLAMA3_ROPE_8B, max_position_embeddings=131072,
    tie_word_embeddings=False, bos_token_id=128000, eos_token_id=128009, **_BF16)
PAPER_SHAPED_COMPRESSOR = DecoderConfig(
    model_type="llama", vocab_size=4096, hidden_size=256, intermediate_size=1024, num_layers=2,
    num_heads=4, num_kv_heads=1, head_dim=64, rope_theta=500000.0, max_position_embeddings=4096,
    tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, **_BF16)
PAPER_SHAPED_GENERATOR = DecoderConfig(
    model_type="llama", vocab_size=4096, hidden_size=512, intermediate_size=1792, num_layers=4,
    num_heads=4, num_kv_heads=1, head_dim=128, rope_theta=500000.0, max_position_embeddings=4096,
    tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, **_BF16)
TINY_MODEL = DecoderConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=1,
                           num_heads=4, num_kv_heads=2, head_dim=8, bos_token_id=1,
                           eos_token_id=2)


@dataclasses.dataclass(frozen=True)
class Setup:
    """What one benchmark size builds: the model config and the batch shapes."""

    size: str
    model: LatentMemoryConfig
    shapes: StepShapes


def make_setup(config, size: str, vocab_size: int = 0, batch_size: int = 0,
               accum_steps: int = 0, dtype: str | None = None) -> Setup:
    """The model config and batch shapes of `size` (see the module docstring)."""
    m = config.model
    if size == "demo":
        from lm_jax.train.build import random_arch

        vocab = vocab_size or m.arch.vocab_size or DEMO_VOCAB
        comp = gen = random_arch(config, vocab)
        comp = gen = comp.replace(bos_token_id=1, eos_token_id=2)
        lm = LatentMemoryConfig(comp, gen, paper_adapters(m.lora_rank, m.lora_alpha,
                                                          m.lora_dropout),
                                num_latent_tokens=m.num_latent_tokens,
                                retrieval_dim=m.retrieval_dim, share_base=m.share_base)
        shapes = StepShapes.from_config(config)
    elif size == "paper_shaped":
        lm = LatentMemoryConfig(PAPER_SHAPED_COMPRESSOR, PAPER_SHAPED_GENERATOR,
                                paper_adapters(16, 32.0, 0.05), retrieval_dim=128)
        shapes = PAPER_SHAPED_SHAPES
    elif size == "paper":
        lm = LatentMemoryConfig(PAPER_COMPRESSOR, PAPER_GENERATOR, paper_adapters(64, 128.0, 0.05),
                                retrieval_dim=512)
        shapes = PAPER_SHAPES
    elif size == "tiny":
        tiny = TINY_MODEL.replace(vocab_size=vocab_size or TINY_MODEL.vocab_size)
        lm = LatentMemoryConfig(tiny, tiny, paper_adapters(4, 8.0, 0.0), retrieval_dim=16,
                                share_base=True)
        shapes = TINY_SHAPES
    else:
        raise ValueError(f"--size={size!r}: choose one of {SIZES}")
    if dtype:
        numerics = dict(dtype=dtype, param_dtype=dtype)
        comp, gen = lm.compressor.replace(**numerics), lm.generator.replace(**numerics)
        lm = dataclasses.replace(lm, compressor=comp, generator=gen)
    if batch_size or accum_steps:
        shapes = dataclasses.replace(shapes, batch_size=batch_size or shapes.batch_size,
                                     accum_steps=accum_steps or shapes.accum_steps)
    if shapes.batch_size % shapes.accum_steps:
        raise ValueError(f"batch size {shapes.batch_size} is not divisible by accumulation "
                         f"steps {shapes.accum_steps}")
    return Setup(size, lm, shapes)


# --------------------------------------------------------------------------- FLOPs


_PROJ_DIMS = {
    "q_proj": lambda c: (c.hidden_size, c.num_heads * c.head_dim),
    "k_proj": lambda c: (c.hidden_size, c.num_kv_heads * c.head_dim),
    "v_proj": lambda c: (c.hidden_size, c.num_kv_heads * c.head_dim),
    "o_proj": lambda c: (c.num_heads * c.head_dim, c.hidden_size),
    "gate_proj": lambda c: (c.hidden_size, c.intermediate_size),
    "up_proj": lambda c: (c.hidden_size, c.intermediate_size),
    "down_proj": lambda c: (c.intermediate_size, c.hidden_size),
}


def adapter_params(cfg: DecoderConfig, spec) -> int:
    """Parameters of one LoRA adapter over `cfg`: r * (in + out) per adapted projection."""
    per_layer = sum(spec.rank * sum(_PROJ_DIMS[t](cfg)) for t in spec.targets)
    return cfg.num_layers * per_layer


def attention_flops(cfg: DecoderConfig, seq_len: int) -> int:
    """Forward attention FLOPs of one sequence: QK^T and PV over the full S x S product."""
    return 4 * cfg.num_layers * seq_len * seq_len * cfg.num_heads * cfg.head_dim


def step_flops(lm: LatentMemoryConfig, s: StepShapes) -> dict[str, int]:
    """Model FLOPs of one train step (the whole global batch), by part; key `total` sums them.

    The formula is in the module docstring.
    """
    c, g = lm.compressor, lm.generator
    t = lm.num_latent_tokens
    b = s.batch_size
    e = b * (s.max_positives + s.max_negatives)
    se, sq, sr = s.evidence_len + t, s.question_len + t, t + s.evidence_len
    ss, st, d = s.student_seq, s.teacher_seq, s.distill_tokens
    pc, pg = c.num_params(include_embeddings=False), g.num_params(include_embeddings=False)
    vc, vg = c.vocab_size * c.hidden_size, g.vocab_size * g.hidden_size
    a = {spec.name: adapter_params(c, spec) for spec in lm.adapters}
    h, gw, r = c.hidden_size, g.hidden_size, lm.retrieval_dim
    mid = (h + gw) // 2
    out = dict(
        compress_dense=(4 * pc + 6 * a[lm_lib.COMPRESS]) * e * se,
        compress_attention=3 * attention_flops(c, se) * e,
        query_dense=(4 * pc + 6 * a[lm_lib.QUERY]) * b * sq,
        query_attention=3 * attention_flops(c, sq) * b,
        recon_dense=(4 * pc + 6 * a[lm_lib.DECODE]) * e * sr,
        recon_attention=3 * attention_flops(c, sr) * e,
        recon_vocab=4 * vc * e * sr,
        heads=(6 * h * r * (e + b) + 6 * b * e * r // s.accum_steps
               + 6 * (h * mid + mid * gw) * e * t),
        student_dense=4 * pg * b * ss,
        student_attention=3 * attention_flops(g, ss) * b,
        student_vocab=4 * vg * b * d,
        teacher_dense=2 * pg * b * st,
        teacher_attention=attention_flops(g, st) * b,
        teacher_vocab=2 * vg * b * d,
    )
    out["total"] = sum(out.values())
    return out


def step_tokens(batch: dict) -> int:
    """Real (unpadded) tokens of a step batch, counted like `lm_jax.train.loop`."""
    return int(sum(np.asarray(batch[k]).sum() for k in
                   ("pos_mask", "neg_mask", "question_mask", "student_mask", "teacher_mask")))


def step_positions(s: StepShapes, num_latent_tokens: int = 1) -> int:
    """Padded token positions the step processes (compressor passes counted once per pass)."""
    e = s.batch_size * (s.max_positives + s.max_negatives)
    t = num_latent_tokens
    return (2 * e * (s.evidence_len + t) + s.batch_size * (s.question_len + t)
            + s.batch_size * (s.student_seq + s.teacher_seq))


# --------------------------------------------------------------------------- batch


def make_step_batch(s: StepShapes, vocab_size: int, num_latent_tokens: int = 1,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """A random global step batch with the static shapes of `lm_jax.train.batches`.

    Real lengths are drawn from [half, full] of each field (HotpotQA-like padding), 2..P
    positives and 1..N negatives are valid, student prompts hold latent slots for the positives
    and up to `max_extra_negatives` negatives, and both prompts end with D-1 forced tokens.
    """
    r = np.random.default_rng(seed)
    b, p, n, t = s.batch_size, s.max_positives, s.max_negatives, num_latent_tokens
    lo_id = min(3, vocab_size - 1)

    def ids(*shape):
        return r.integers(lo_id, vocab_size, shape).astype(np.int32)

    def packed(shape, valid=None):
        length = shape[-1]
        lens = r.integers(max(1, length // 2), length + 1, shape[:-1])
        if valid is not None:
            lens = np.where(valid, lens, 0)
        mask = (np.arange(length) < lens[..., None]).astype(np.int32)
        return np.where(mask == 1, ids(*shape), 0).astype(np.int32), mask

    n_pos = r.integers(min(2, p), p + 1, b)
    n_neg = r.integers(1, n + 1, b)
    pos_valid = np.arange(p)[None, :] < n_pos[:, None]
    neg_valid = np.arange(n)[None, :] < n_neg[:, None]
    q_ids, q_mask = packed((b, s.question_len))
    pos_ids, pos_mask = packed((b, p, s.evidence_len), pos_valid)
    neg_ids, neg_mask = packed((b, n, s.evidence_len), neg_valid)

    d = s.distill_tokens
    forced = ids(b, d - 1)

    def prompt(length, items_per_row):
        """Left-padded prompts [b, length + d - 1] with latent slots, plus the forced tokens."""
        out_ids = np.zeros((b, length), np.int32)
        out_mask = np.zeros((b, length), np.int32)
        slot_item = np.full((b, length), -1, np.int32)
        slot_tok = np.full((b, length), -1, np.int32)
        for row in range(b):
            items = items_per_row[row] if items_per_row is not None else []
            need = 2 + len(items) * (t + 1)
            real = int(r.integers(min(length, max(need, length // 2)), length + 1))
            start = length - real
            out_ids[row, start:] = ids(real)
            out_mask[row, start:] = 1
            pos = start + 1
            for item in items:
                if pos + t > length:
                    break
                slot_item[row, pos:pos + t] = item
                slot_tok[row, pos:pos + t] = np.arange(t)
                pos += t + 1
        tail = np.full((b, d - 1), -1, np.int32)
        return (np.concatenate([out_ids, forced], 1),
                np.concatenate([out_mask, np.ones((b, d - 1), np.int32)], 1),
                np.concatenate([slot_item, tail], 1), np.concatenate([slot_tok, tail], 1),
                np.tile(np.arange(length - 1, length + d - 1, dtype=np.int32), (b, 1)))

    items = []
    for row in range(b):
        extra = int(r.integers(0, min(s.max_extra_negatives, int(n_neg[row])) + 1))
        chosen = list(range(int(n_pos[row]))) + [p + j for j in range(extra)]
        items.append([int(i) for i in r.permutation(chosen)])
    st_ids, st_mask, st_item, st_tok, st_out = prompt(s.student_len, items)
    te_ids, te_mask, _, _, te_out = prompt(s.teacher_len, None)
    eos_at = r.integers(1, d + 1, b)
    return dict(
        question_ids=q_ids, question_mask=q_mask,
        pos_ids=pos_ids, pos_mask=pos_mask, pos_valid=pos_valid,
        neg_ids=neg_ids, neg_mask=neg_mask, neg_valid=neg_valid,
        student_ids=st_ids, student_mask=st_mask, student_slot_item=st_item,
        student_slot_tok=st_tok, student_out_pos=st_out,
        teacher_ids=te_ids, teacher_mask=te_mask, teacher_out_pos=te_out,
        distill_mask=(np.arange(d)[None, :] < eos_at[:, None]).astype(np.float32),
    )


# --------------------------------------------------------------------------- peak


def measure_matmul_peak(dtype: str = "float32", sizes=(1024, 2048), repeats: int = 3) -> float:
    """Best FLOP/s of jitted square `jnp.dot`s of the given sizes (after one warm-up call)."""
    import jax
    import jax.numpy as jnp

    best = 0.0
    dot = jax.jit(jnp.dot)
    for n in sizes:
        x = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(dtype)
        dot(x, x).block_until_ready()
        for _ in range(repeats):
            t0 = time.perf_counter()
            dot(x, x).block_until_ready()
            best = max(best, 2.0 * n ** 3 / (time.perf_counter() - t0))
    return best


def spec_peak_tflops(device_kind: str) -> float | None:
    """bf16 dense TFLOP/s per chip from the spec table, or None for an unknown device."""
    kind = device_kind.lower()
    for key, tflops in PEAK_TFLOPS:
        if key in kind:
            return tflops
    return None


# --------------------------------------------------------------------------- run


def _memory(compiled) -> dict | None:
    try:
        mem = compiled.memory_analysis()
    except Exception:  # not every backend implements it
        return None
    if mem is None:
        return None
    out = {}
    for f in ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes",
              "temp_size_in_bytes", "generated_code_size_in_bytes"):
        v = getattr(mem, f, None)
        if v is not None:
            out[f.replace("_size_in_bytes", "_bytes")] = int(v)
    # Donated inputs alias outputs: the live peak is arguments + outputs - aliases + temps.
    if {"argument_bytes", "output_bytes", "temp_bytes"} <= set(out):
        total = (out["argument_bytes"] + out["output_bytes"] - out.get("alias_bytes", 0)
                 + out["temp_bytes"])
        out["estimated_peak_gib"] = round(total / 2**30, 4)
    return out


def _xla_flops(compiled) -> float | None:
    try:
        cost = compiled.cost_analysis()
    except Exception:
        return None
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"])


def _describe(cfg: DecoderConfig) -> dict:
    return dict(hidden=cfg.hidden_size, layers=cfg.num_layers, heads=cfg.num_heads,
                kv_heads=cfg.num_kv_heads, head_dim=cfg.head_dim, mlp=cfg.intermediate_size,
                vocab=cfg.vocab_size, tied=cfg.tie_word_embeddings, dtype=cfg.dtype,
                remat=cfg.remat, params=cfg.num_params())


def run(config, size: str = "demo", steps: int = 5, warmup: int = 2, *, vocab_size: int = 0,
        batch_size: int = 0, accum_steps: int = 0, dtype: str | None = None,
        peak_sizes=(1024, 2048), peak_tflops: float | None = None,
        profile_dir: str | None = None, seed: int = 0) -> list[dict]:
    """Runs the benchmark and returns the JSON records it printed."""
    import jax

    from lm_jax import sharding
    from lm_jax.train.loop import _place_opt_state, opt_state_shardings
    from lm_jax.train.step import LossConfig, latent_memory_losses, make_optimizer, make_train_step

    records = []

    def out(measure, **fields):
        records.append(emit(BENCH, measure, **fields))

    setup = make_setup(config, size, vocab_size, batch_size, accum_steps, dtype)
    lm, shapes = setup.model, setup.shapes
    model = LatentMemory(lm)
    flops = step_flops(lm, shapes)
    host = machine()
    adapters = {spec.name: adapter_params(lm.compressor, spec) for spec in lm.adapters}
    out("config", size=size, **host, shapes=dataclasses.asdict(shapes),
        compressor=_describe(lm.compressor), generator=_describe(lm.generator),
        share_base=lm.share_base, num_latent_tokens=lm.num_latent_tokens,
        retrieval_dim=lm.retrieval_dim, adapter_params=adapters,
        lora_rank=lm.adapters[0].rank, mesh=dict(config.mesh), loadavg=loadavg())
    out("flops", model_flops_per_step=flops["total"],
        breakdown={k: v for k, v in flops.items() if k != "total"})
    if size == "paper" and host["platform"] == "cpu":
        out("skipped", size=size, reason="the paper config needs an accelerator (GPU/TPU): "
            f"{lm.compressor.num_params() + lm.generator.num_params():,} bf16 parameters and "
            f"{flops['total'] / 1e15:.1f} PFLOP per step; this machine has only a CPU. The same "
            "command runs it where jax sees a GPU or TPU.")
        return records

    # ------------------------------------------------------------------ mesh, parameters
    mc = config.mesh
    devices = jax.devices()[:mc.num_devices] if mc.get("num_devices") else None
    mesh = sharding.make_mesh(mc.data, mc.fsdp, mc.tensor, devices=devices)
    dp = mesh.shape["data"] * mesh.shape["fsdp"]
    micro = shapes.batch_size // shapes.accum_steps
    if micro % dp:
        raise ValueError(f"micro-batch {micro} (batch / accumulation) does not divide over the "
                         f"{dp} data-parallel devices; pass --batch_size")
    rng = jax.random.key(seed)
    abstract = jax.eval_shape(model.init, rng)
    with sharding.use_mesh(mesh):
        shardings = sharding.logical_to_sharding(abstract, mesh)
    train_sh, frozen_sh = model.split(shardings)
    import flax.linen as nn

    t0 = time.perf_counter()
    trainable, frozen = jax.jit(lambda r: model.split(nn.unbox(model.init(r))),
                                out_shardings=(train_sh, frozen_sh))(rng)
    jax.block_until_ready((trainable, frozen))
    init_s = time.perf_counter() - t0
    n_trainable = int(sum(x.size for x in jax.tree.leaves(trainable)))
    n_frozen = int(sum(x.size for x in jax.tree.leaves(frozen)))

    o = config.optim
    tx, _ = make_optimizer(o.learning_rate, max(steps + warmup, 1), o.end_learning_rate,
                           0, o.weight_decay, o.grad_clip)
    opt_state = _place_opt_state(jax.jit(tx.init)(trainable), train_sh, mesh)

    # ------------------------------------------------------------------ batch, compile
    full = make_step_batch(shapes, lm.generator.vocab_size, lm.num_latent_tokens, seed)
    rows = shapes.batch_size // jax.process_count()
    lo = jax.process_index() * rows
    local = {k: v[lo:lo + rows] for k, v in full.items()}
    batch = sharding.make_global_batch(local, mesh)
    tokens = step_tokens(full)
    positions = step_positions(shapes, lm.num_latent_tokens)

    loss_fn = functools.partial(latent_memory_losses, model, LossConfig(**config.loss),
                                lm.compressor.bos_token_id, lm.compressor.eos_token_id)
    step_fn = make_train_step(loss_fn, tx, shapes.accum_steps)
    batch_sh = jax.tree.map(lambda x: sharding.data_sharding(mesh, x.ndim), local)
    opt_sh = opt_state_shardings(opt_state, train_sh, mesh)
    repl = sharding.replicated(mesh)
    jitted = jax.jit(step_fn, in_shardings=(train_sh, opt_sh, frozen_sh, batch_sh, repl),
                     out_shardings=(train_sh, opt_sh, repl), donate_argnums=(0, 1))
    with sharding.use_mesh(mesh):
        t0 = time.perf_counter()
        lowered = jitted.lower(trainable, opt_state, frozen, batch, jax.random.fold_in(rng, 0))
        lower_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        compiled = lowered.compile()
        compile_s = time.perf_counter() - t0
    xla_flops = _xla_flops(compiled)
    out("compile", init_s=round(init_s, 3), lower_s=round(lower_s, 3),
        compile_s=round(compile_s, 3), memory=_memory(compiled), xla_flops=xla_flops,
        trainable_params=n_trainable, frozen_params=n_frozen,
        devices=mesh.devices.size, mesh_shape=dict(mesh.shape))

    # ------------------------------------------------------------------ peak
    platform = host["platform"]
    compute_dtype = lm.generator.dtype
    peak_dtype = None
    if peak_tflops:
        peak, source = peak_tflops * 1e12 * mesh.devices.size, "--peak_tflops"
    elif platform == "cpu":
        peak = measure_matmul_peak("float32", peak_sizes)
        source = f"measured: best float32 jnp.dot of sizes {list(peak_sizes)}"
        if compute_dtype != "float32":
            peak_dtype = measure_matmul_peak(compute_dtype, peak_sizes)
    else:
        spec = spec_peak_tflops(host["device_kind"])
        peak = spec * 1e12 * mesh.devices.size if spec else None
        source = f"spec table: {spec} TFLOP/s bf16 x {mesh.devices.size} chips" if spec else \
            f"unknown device {host['device_kind']!r}: pass --peak_tflops"
    out("peak", peak_flops=peak, source=source,
        **({f"peak_flops_{compute_dtype}": peak_dtype} if peak_dtype else {}))

    # ------------------------------------------------------------------ steps
    times, metrics = [], None
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        trainable, opt_state, metrics = compiled(trainable, opt_state, frozen, batch,
                                                 jax.random.fold_in(rng, i + 1))
        jax.block_until_ready((trainable, metrics))
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    loss = float(jax.device_get(metrics["loss"]))
    out("steps", warmup=warmup, steps=steps, step_times_s=[round(x, 4) for x in times],
        loss=loss)
    if profile_dir:
        with jax.profiler.trace(profile_dir):
            for i in range(2):
                trainable, opt_state, metrics = compiled(trainable, opt_state, frozen, batch,
                                                         jax.random.fold_in(rng, 10_000 + i))
            jax.block_until_ready(metrics)
        out("profile", profile_dir=profile_dir, steps=2)

    median = statistics.median(times) if times else float("nan")
    achieved = flops["total"] / median
    summary = dict(
        size=size, device_kind=host["device_kind"], devices=mesh.devices.size,
        step_time_s=round(median, 4), step_time_mean_s=round(statistics.fmean(times), 4),
        step_time_min_s=round(min(times), 4), steps=steps, warmup=warmup,
        tokens_per_step=tokens, tokens_per_s=round(tokens / median, 1),
        positions_per_step=positions, positions_per_s=round(positions / median, 1),
        model_flops_per_step=flops["total"], model_tflops_per_s=round(achieved / 1e12, 5),
        xla_flops_per_step=xla_flops, peak_flops=peak,
        mfu=round(achieved / peak, 5) if peak else None,
        compile_s=round(compile_s, 3), loss=loss, loadavg=loadavg())
    if peak_dtype:
        summary[f"mfu_{compute_dtype}_peak"] = round(achieved / peak_dtype, 5)
    out("summary", **summary)
    return records


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/hotpotqa.py:demo",
                   help="config file path[:variant] (its optim, loss, mesh; demo's shapes)")
    p.add_argument("--size", default="demo", choices=SIZES)
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before")
    p.add_argument("--vocab_size", type=int, default=0, help="demo/tiny vocabulary override")
    p.add_argument("--batch_size", type=int, default=0, help="global batch override")
    p.add_argument("--accum_steps", type=int, default=0, help="accumulation override")
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16"),
                   help="compute and parameter dtype override")
    p.add_argument("--peak_tflops", type=float, default=None,
                   help="per-device peak override (TFLOP/s)")
    p.add_argument("--peak_sizes", default="1024,2048",
                   help="CPU peak: square matmul sizes to time")
    p.add_argument("--profile_dir", default=None, help="also trace 2 steps with jax.profiler")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    config = load_config_file(args.config)
    return run(config, args.size, args.steps, args.warmup, vocab_size=args.vocab_size,
               batch_size=args.batch_size, accum_steps=args.accum_steps, dtype=args.dtype,
               peak_sizes=tuple(int(x) for x in args.peak_sizes.split(",")),
               peak_tflops=args.peak_tflops, profile_dir=args.profile_dir, seed=args.seed)


if __name__ == "__main__":
    main()
