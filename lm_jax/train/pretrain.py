"""Demo stage `generator`: teach tiny random LMs what the paper's pretrained ones already know.

`pretrain_generator` trains the reader; `pretrain_compressor` trains the separate compressor base
(see its docstring).

A tiny generator knows nothing, so the demo first trains it, all parameters, as a reader: the
generator's own prompt with a few raw contexts (the supporting sentences plus random distractors,
shuffled), then the answer and EOS. The loss is answer cross-entropy plus a small language-model
term on the prompt, so the same weights can also serve as the compressor's frozen base. The
result is saved as a Hugging Face checkpoint (`WORKDIR/generator`, written to a temp directory
and renamed), so later stages load it like any other model.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lm_jax.models.decoder import Decoder
from lm_jax.models.prompts import PromptBuilder
from lm_jax.train.losses import token_cross_entropy
from lm_jax.train.metrics_log import MetricLogger


def reader_example(example, builder: PromptBuilder, tokenizer, rng: np.random.Generator,
                   max_contexts: int, max_len: int):
    """(ids [max_len], loss weights by kind) for one reader example, right-padded.

    Returns ids, mask, answer_mask (targets that are answer tokens or EOS), prompt_mask.
    """
    positives = [e.render() for e in example.evidence if e.is_supporting]
    others = [e.render() for e in example.evidence if not e.is_supporting]
    extra = int(rng.integers(0, max(0, max_contexts - len(positives)) + 1))
    extra = min(extra, len(others))
    picked = positives + [others[i] for i in rng.choice(len(others), extra, replace=False)]
    contexts = [picked[i] for i in rng.permutation(len(picked))]
    prompt = builder.text(example.question, contexts).ids
    answer = list(tokenizer(example.answer, add_special_tokens=False)["input_ids"])
    answer.append(tokenizer.eos_token_id)
    seq = (prompt + answer)[-max_len:]
    n_prompt = len(seq) - len(answer)
    ids = np.zeros(max_len, np.int32)
    ids[:len(seq)] = seq
    mask = (np.arange(max_len) < len(seq)).astype(np.int32)
    # Target at position t is ids[t+1]; weight it by what that token is.
    tgt_pos = np.arange(max_len)
    answer_mask = ((tgt_pos >= n_prompt - 1) & (tgt_pos < len(seq) - 1)).astype(np.float32)
    prompt_mask = (tgt_pos < n_prompt - 1).astype(np.float32)
    return ids, mask, answer_mask, prompt_mask


def _loss(model, lm_weight, params, batch):
    out = model.apply({"params": params}, batch["ids"], attention_mask=batch["mask"])
    targets = jnp.pad(batch["ids"][:, 1:], ((0, 0), (0, 1)))
    ans_loss, ans_acc = token_cross_entropy(out.logits, targets, batch["answer_mask"])
    lm_loss, _ = token_cross_entropy(out.logits, targets, batch["prompt_mask"])
    loss = ans_loss + lm_weight * lm_loss
    return loss, dict(loss=loss, loss_answer=ans_loss, loss_lm=lm_loss, answer_acc=ans_acc)


def _fit(config, stage: str, pc, params, loss_fn, next_batch, logger: MetricLogger):
    """AdamW (warm-up + cosine, clip 1.0) on `loss_fn(params, batch) -> (loss, metrics)` for
    `pc.total_steps` batches from `next_batch()`; logs every `log_every` steps as `stage`."""
    warmup = min(pc.warmup_steps, pc.total_steps // 10)
    schedule = optax.warmup_cosine_decay_schedule(0.0, pc.learning_rate, warmup,
                                                  pc.total_steps, pc.learning_rate * 0.05)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=0.0))
    opt_state = tx.init(params)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(params, opt_state, batch):
        grads, metrics = jax.grad(loss_fn, has_aux=True)(params, batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, metrics

    t0 = time.time()
    for i in range(1, pc.total_steps + 1):
        params, opt_state, metrics = step(params, opt_state, next_batch())
        if i % config.log_every == 0 or i == pc.total_steps:
            m = {k: float(v) for k, v in metrics.items()}
            if not np.isfinite(m["loss"]):
                raise FloatingPointError(f"{stage} pretraining: loss is {m['loss']} at step {i}")
            m.update(learning_rate=float(schedule(i)), elapsed_s=time.time() - t0)
            logger.write(stage, i, m)
    return params


def _save_base(params, decoder_config, tokenizer, out_dir: str, arrays=None) -> None:
    """Writes an HF checkpoint (+ tokenizer, + named .npy arrays) to out_dir, via a temp dir."""
    from lm_jax.hf.checkpoint import save_params

    tmp = out_dir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    if jax.process_index() == 0:
        save_params(params, decoder_config, tmp)
        tokenizer.save_pretrained(tmp)
        for name, array in (arrays or {}).items():
            np.save(os.path.join(tmp, name), array)
        os.replace(tmp, out_dir)


def pretrain_generator(config, workdir: str, examples, tokenizer, decoder_config,
                       logger: MetricLogger) -> str:
    """Trains the reader and saves it to WORKDIR/generator; returns that directory."""
    out_dir = os.path.join(workdir, "generator")
    if os.path.exists(os.path.join(out_dir, "config.json")):
        return out_dir
    pc = config.pretrain_generator
    model = Decoder(decoder_config)
    rng = jax.random.key(config.seed + 1)
    params = nn.unbox(model.init(rng, jnp.zeros((1, 4), jnp.int32))["params"])
    builder = PromptBuilder(tokenizer, 1)
    data_rng = np.random.default_rng(config.seed)

    def next_batch():
        idx = data_rng.integers(0, len(examples), pc.batch_size)
        rows = [reader_example(examples[j], builder, tokenizer, data_rng, pc.max_contexts,
                               pc.max_len) for j in idx]
        return {k: jnp.asarray(np.stack([r[n] for r in rows]))
                for n, k in enumerate(("ids", "mask", "answer_mask", "prompt_mask"))}

    params = _fit(config, "generator", pc, params,
                  functools.partial(_loss, model, pc.lm_weight), next_batch, logger)
    _save_base(params, decoder_config, tokenizer, out_dir)
    return out_dir


MEM_EMBEDDING_FILE = "mem_embedding.npy"
READER_EMBEDDINGS = ("none", "init", "fixed")


def compressor_texts(examples, tokenizer, data_config, questions: bool):
    """The compressor stage's texts: every distinct training evidence item, and with `questions`
    every distinct training question, tokenized with BOS/EOS as the Latent Memory stage does.

    Returns:
      ids, mask [N, W] int32, right-padded; evidence truncated to `max_evidence_len`, questions
      to `max_question_len`, W the larger of the two when there are questions.
    """
    from lm_jax.hf.tokenizer import encode, pad_id

    texts = sorted({e.render() for x in examples for e in x.evidence})
    ids, mask = encode(tokenizer, texts, data_config.max_evidence_len, add_special_tokens=True)
    if not questions:
        return ids, mask
    q_ids, q_mask = encode(tokenizer, sorted({x.question for x in examples}),
                           data_config.max_question_len, add_special_tokens=True)
    width = max(ids.shape[1], q_ids.shape[1])
    pad = pad_id(tokenizer)

    def widen(a, value):
        return np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=value)

    return (np.concatenate([widen(ids, pad), widen(q_ids, pad)]),
            np.concatenate([widen(mask, 0), widen(q_mask, 0)]))


def pretrain_compressor(config, workdir: str, examples, tokenizer, decoder_config,
                        logger: MetricLogger) -> str:
    """Trains the demo's compressor base and saves it to WORKDIR/compressor; returns that dir.

    A frozen base has to know its language before LoRA can adapt it. A pretrained LLM does; a
    tiny one trained as a reader (or as a plain LM) treats the world's names as interchangeable
    and caps what one latent can hold (BENCHMARKS.md, "The compressor's base"). So the base is
    trained from random init, all weights and a MEM vector, on the single-vector reconstruction
    objective (the `reconstruct` path of METHOD.md §3 with the adapters at zero) over the
    training evidence. It is then frozen like any HF base; the MEM vector is saved beside it
    (`mem_embedding.npy`, [T, H]) and starts the Latent Memory stage's `mem_embedding`.

    `pretrain_compressor.reader_embeddings` (READER_EMBEDDINGS): "none" starts the token
    embeddings at random; "init" starts them from the reader's (WORKDIR/generator); "fixed"
    also keeps them. The embeddings are tied, so with the reader's z starts out in (or, fixed,
    stays in) the space the reader embeds its own tokens in, where `cross_proj` has to map it.
    With `pretrain_compressor.tie_embeddings=False` the base gets its own output head (random
    init, trained): the input embeddings can then stay the reader's while the reconstruction
    logits separate tokens the reader embeds alike. The saved config.json says so, and the
    Latent Memory stage loads the base as that (untied) architecture.

    `pretrain_compressor.questions` adds the training questions to the texts: the same base
    embeds them for retrieval (through the `query` adapter), so it should know that form too.
    """
    from lm_jax.train import build as build_lib

    out_dir = os.path.join(workdir, "compressor")
    if os.path.exists(os.path.join(out_dir, "config.json")):
        return out_dir
    pc = config.pretrain_compressor
    base_config = dataclasses.replace(decoder_config, tie_word_embeddings=pc.tie_embeddings)
    # validate_config requires share_base=False here, so the model has a compressor base.
    model = build_lib.build_latent_memory(config, base_config, decoder_config)
    trainable, frozen = model.split(nn.unbox(model.init(jax.random.key(config.seed + 2))))
    base = frozen["compressor"]
    fixed = {}
    if pc.reader_embeddings != "none":
        from lm_jax.hf.checkpoint import load_params

        reader = load_params(os.path.join(workdir, "generator"), decoder_config)
        if pc.reader_embeddings == "fixed":
            fixed = {"embed_tokens": reader["embed_tokens"]}
            base = {k: v for k, v in base.items() if k not in fixed}
        else:
            base = dict(base, embed_tokens=reader["embed_tokens"])
    params = {"base": base, "mem": trainable["heads"]["mem_embedding"]}
    ids, mask = compressor_texts(examples, tokenizer, config.data, pc.questions)

    def loss_fn(p, batch):
        t = dict(trainable, heads=dict(trainable["heads"], mem_embedding=p["mem"]))
        fr = {"compressor": {**p["base"], **fixed}}
        z = model.encode_evidence(t, fr, batch["ids"], batch["mask"])
        logits, targets, tmask = model.reconstruction(
            t, fr, z, batch["ids"], batch["mask"], tokenizer.bos_token_id, tokenizer.eos_token_id)
        loss, acc = token_cross_entropy(logits, targets, tmask)
        return loss, dict(loss=loss, recon_token_acc=acc)

    data_rng = np.random.default_rng(config.seed + 2)

    def next_batch():
        idx = data_rng.integers(0, len(ids), pc.batch_size)
        return {"ids": jnp.asarray(ids[idx]), "mask": jnp.asarray(mask[idx])}

    params = _fit(config, "compressor", pc, params, loss_fn, next_batch, logger)
    _save_base({**params["base"], **fixed}, base_config, tokenizer, out_dir,
               {MEM_EMBEDDING_FILE: np.asarray(params["mem"], np.float32)})
    return out_dir
