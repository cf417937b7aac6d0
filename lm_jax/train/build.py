"""Builds what a run needs from its config: mesh, tokenizers, model, sharded parameters.

Validation happens here, before anything is compiled: a bad config fails with a message that
names the key (`--config.<key>`) to fix.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from lm_jax import sharding
from lm_jax.data.examples import NEGATIVE_SAMPLING
from lm_jax.data.synthetic import NAME_STYLES
from lm_jax.models.config import DecoderConfig
from lm_jax.models.latent_memory import LatentMemory, LatentMemoryConfig, paper_adapters


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key."""


KNOWN_METHODS = ("latent_memory", "latent_memory_bank", "no_retrieval", "full_context",
                 "bm25_rag", "oracle")


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Static checks of a config (no files read, nothing compiled)."""
    d, m, o = config.data, config.model, config.optim

    def need(cond, key, msg):
        if not cond:
            raise ConfigError(f"--config.{key}: {msg}")

    for key in ("total_steps", "log_every", "ckpt_every", "eval_every"):
        need(config[key] > 0, key, f"must be positive, got {config[key]}")
    need(d.batch_size > 0, "data.batch_size", "must be positive")
    need(o.accum_steps >= 1, "optim.accum_steps", "must be >= 1")
    need(d.batch_size % o.accum_steps == 0, "data.batch_size",
         f"{d.batch_size} is not divisible by optim.accum_steps={o.accum_steps}")
    for key in ("max_positives", "max_negatives", "max_evidence_len", "max_question_len",
                "max_student_len", "max_teacher_len", "max_answer_len"):
        need(d[key] > 0, f"data.{key}", f"must be positive, got {d[key]}")
    need(d.distill_tokens >= 2, "data.distill_tokens", "must be >= 2 (one forced token)")
    need(d.negatives in NEGATIVE_SAMPLING, "data.negatives",
         f"must be one of {NEGATIVE_SAMPLING}, got {d.negatives!r}")
    need(d.max_extra_negatives <= d.max_negatives, "data.max_extra_negatives",
         f"{d.max_extra_negatives} exceeds data.max_negatives={d.max_negatives}")
    need(m.init in ("hf", "random"), "model.init", f"must be 'hf' or 'random', got {m.init!r}")
    need(m.num_latent_tokens >= 1, "model.num_latent_tokens", "must be >= 1")
    need(m.retrieval_dim > 0, "model.retrieval_dim", "must be positive")
    need(m.lora_rank > 0, "model.lora_rank", "must be positive")
    need(0.0 <= m.lora_dropout < 1.0, "model.lora_dropout", "must be in [0, 1)")
    for key in ("dtype", "param_dtype"):
        need(m[key] in ("float32", "bfloat16", "float16"), f"model.{key}",
             f"unsupported dtype {m[key]!r}")
    if m.share_base and m.init == "hf":
        need(m.compressor == m.generator, "model.share_base",
             "share_base needs model.compressor == model.generator")
    if m.init == "random" or config.pretrain_generator.enabled:
        a = m.arch
        for key in ("hidden_size", "intermediate_size", "num_layers", "num_heads",
                    "num_kv_heads", "head_dim"):
            need(a[key] > 0, f"model.arch.{key}", "must be set for model.init='random'")
        need(a.num_heads % a.num_kv_heads == 0, "model.arch.num_heads",
             f"{a.num_heads} is not a multiple of num_kv_heads={a.num_kv_heads}")
        pc = config.pretrain_generator
        need(not pc.enabled or pc.total_steps > 0, "pretrain_generator.total_steps",
             "must be positive when the generator stage is enabled")
        need(d.max_teacher_len + d.distill_tokens <= a.max_position_embeddings,
             "data.max_teacher_len", "teacher prompt + distill tokens exceed "
             f"model.arch.max_position_embeddings={a.max_position_embeddings}")
    cc = config.pretrain_compressor
    if cc.enabled:
        need(config.pretrain_generator.enabled, "pretrain_compressor.enabled",
             "needs pretrain_generator.enabled (both are demo stages on the same architecture)")
        need(not m.share_base, "pretrain_compressor.enabled",
             "needs model.share_base=False (the compressor gets a base of its own)")
        need(cc.total_steps > 0 and cc.batch_size > 0, "pretrain_compressor.total_steps",
             "total_steps and batch_size must be positive")
        from lm_jax.train.pretrain import READER_EMBEDDINGS

        need(cc.reader_embeddings in READER_EMBEDDINGS, "pretrain_compressor.reader_embeddings",
             f"must be one of {READER_EMBEDDINGS}, got {cc.reader_embeddings!r}")
    unknown = [x for x in config.eval.methods if x not in KNOWN_METHODS]
    need(not unknown, "eval.methods", f"unknown methods {unknown}; known: {KNOWN_METHODS}")
    need(config.eval.k > 0, "eval.k", "must be positive")
    if config.data.synthetic:
        need(d.num_train_questions > 0, "data.num_train_questions", "must be positive")
        need(d.num_eval_questions > 0, "data.num_eval_questions", "must be positive")
    need(d.synthetic_names in NAME_STYLES, "data.synthetic_names",
         f"must be one of {NAME_STYLES}, got {d.synthetic_names!r}")


def make_mesh(config):
    """The mesh of `config.mesh` over all devices, or the first `mesh.num_devices`."""
    mc = config.mesh
    if mc.num_devices and jax.process_count() > 1:
        raise ConfigError("--config.mesh.num_devices: a device subset is single-process only; "
                          "leave it 0 in multi-process runs")
    devices = jax.devices()[:mc.num_devices] if mc.num_devices else None
    return sharding.make_mesh(mc.data, mc.fsdp, mc.tensor, devices=devices)


def check_mesh_fits(config, mesh) -> None:
    """The micro-batch must split evenly over the data-parallel devices."""
    dp = mesh.shape["data"] * mesh.shape["fsdp"]
    micro = config.data.batch_size // config.optim.accum_steps
    if micro % dp:
        raise ConfigError(
            f"--config.data.batch_size: micro-batch {micro} (batch_size / accum_steps) is not "
            f"divisible by the {dp} data-parallel devices (mesh data x fsdp)")


def random_arch(config, vocab_size: int) -> DecoderConfig:
    a = config.model.arch
    return DecoderConfig(
        model_type="llama", vocab_size=vocab_size, hidden_size=a.hidden_size,
        intermediate_size=a.intermediate_size, num_layers=a.num_layers, num_heads=a.num_heads,
        num_kv_heads=a.num_kv_heads, head_dim=a.head_dim, rms_norm_eps=1e-5,
        rope_theta=a.rope_theta, max_position_embeddings=a.max_position_embeddings,
        tie_word_embeddings=a.tie_word_embeddings, dtype=config.model.dtype,
        param_dtype=config.model.param_dtype, remat=config.model.remat)


def model_dirs(config, workdir: str) -> tuple[str, str]:
    """Local directories of compressor and generator (HF ids are resolved to snapshots)."""
    from lm_jax.hf.checkpoint import resolve_model_dir

    m = config.model
    if m.init == "random":
        return "", ""
    default = os.path.join(workdir, "generator")  # the demo's pretrained reader
    comp_default = (os.path.join(workdir, "compressor") if config.pretrain_compressor.enabled
                    else default)
    gen = resolve_model_dir(m.generator or default, flag_name="--config.model.generator")
    comp = resolve_model_dir(m.compressor or comp_default, flag_name="--config.model.compressor")
    return comp, gen


@dataclasses.dataclass
class Components:
    model: LatentMemory
    mesh: Any
    compressor_tokenizer: Any
    generator_tokenizer: Any
    trainable: dict
    frozen: dict
    trainable_shardings: Any
    frozen_shardings: Any


def build_latent_memory(config, comp_cfg: DecoderConfig, gen_cfg: DecoderConfig) -> LatentMemory:
    m = config.model
    adapters = paper_adapters(m.lora_rank, m.lora_alpha, m.lora_dropout, m.lora_encoder_mlp)
    return LatentMemory(LatentMemoryConfig(
        compressor=comp_cfg, generator=gen_cfg, adapters=adapters,
        num_latent_tokens=m.num_latent_tokens, retrieval_dim=m.retrieval_dim,
        share_base=m.share_base))


def _start_mem_embedding(trainable: dict, comp_dir: str, train_sh) -> dict:
    """Starts `mem_embedding` from the MEM vector saved with a pretrained compressor base."""
    from lm_jax.train.pretrain import MEM_EMBEDDING_FILE

    path = os.path.join(comp_dir, MEM_EMBEDDING_FILE) if comp_dir else ""
    if not path or not os.path.exists(path):
        return trainable
    current = trainable["heads"]["mem_embedding"]
    saved = np.load(path)
    if saved.shape != current.shape:
        raise ValueError(f"{path}: MEM embedding of shape {saved.shape}, the model needs "
                         f"{current.shape} (model.num_latent_tokens x hidden size)")
    saved = saved.astype(current.dtype)
    # From every process's own copy of the file, so it also works on a multi-host mesh.
    heads = dict(trainable["heads"], mem_embedding=jax.make_array_from_callback(
        saved.shape, train_sh["heads"]["mem_embedding"], lambda index: saved[index]))
    return dict(trainable, heads=heads)


def build(config, workdir: str, mesh=None, tokenizers=None) -> Components:
    """Mesh, tokenizers, model and parameters placed with their shardings.

    Base weights come from the HF checkpoints (streamed, one tensor at a time); adapters and
    heads are initialised directly on their shardings (the unused base initialisers are dead
    code that XLA removes).
    """
    from lm_jax.hf.checkpoint import load_hf_config, load_params
    from lm_jax.hf.tokenizer import load_tokenizer

    validate_config(config)
    m = config.model
    mesh = mesh or make_mesh(config)
    check_mesh_fits(config, mesh)
    overrides = dict(dtype=m.dtype, param_dtype=m.param_dtype, remat=m.remat)
    comp_dir, gen_dir = model_dirs(config, workdir)
    if tokenizers is not None:
        comp_tok, gen_tok = tokenizers
    elif m.init == "random":
        comp_tok = gen_tok = load_tokenizer(m.tokenizer or os.path.join(workdir, "tokenizer"),
                                            flag_name="--config.model.tokenizer")
    else:
        gen_tok = load_tokenizer(gen_dir, flag_name="--config.model.generator")
        comp_tok = gen_tok if comp_dir == gen_dir else load_tokenizer(
            comp_dir, flag_name="--config.model.compressor")
    if m.init == "random":
        comp_cfg = gen_cfg = random_arch(config, len(gen_tok))
    else:
        gen_cfg = load_hf_config(gen_dir, **overrides)
        comp_cfg = gen_cfg if comp_dir == gen_dir else load_hf_config(comp_dir, **overrides)
    model = build_latent_memory(config, comp_cfg, gen_cfg)

    rng = jax.random.key(config.seed)
    abstract = jax.eval_shape(model.init, rng)
    with sharding.use_mesh(mesh):
        shardings = sharding.logical_to_sharding(abstract, mesh)
    train_sh, frozen_sh = model.split(shardings)

    def init_trainable(r):
        return model.split(nn.unbox(model.init(r)))[0]

    def init_frozen(r):
        return model.split(nn.unbox(model.init(r)))[1]

    trainable = jax.jit(init_trainable, out_shardings=train_sh)(rng)
    trainable = _start_mem_embedding(trainable, comp_dir, train_sh)
    if m.init == "random":
        frozen = jax.jit(init_frozen, out_shardings=frozen_sh)(rng)
    else:
        frozen = {"generator": load_params(gen_dir, gen_cfg, frozen_sh["generator"])}
        if not m.share_base:
            frozen["compressor"] = load_params(comp_dir, comp_cfg, frozen_sh["compressor"])
    return Components(model, mesh, comp_tok, gen_tok, trainable, frozen, train_sh, frozen_sh)
