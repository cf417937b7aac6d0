"""Generator prompts (METHOD.md §2), assembled on the host as token ids with latent slots.

A prompt is the generator's own chat template around a user turn:
  latent:  "Latent context 1: <z1>\\nLatent context 2: <z2>\\n...Question: {q}"
  text:    "Context 1: {evidence}\\nContext 2: ...\\nQuestion: {q}"     (teacher and RAG baselines)
  none:    "Question: {q}"                                              (no retrieval)
where each <zi> is `num_latent_tokens` slots that `LatentMemory.latent_prompt_embeds` fills with
projected latents. Templates are rendered once around a placeholder; the pieces between slots are
tokenized separately, so a slot never merges with neighbouring text.
"""

from __future__ import annotations

import dataclasses

import numpy as np

SYSTEM_PROMPT = ("You are a helpful assistant. Answer the question concisely (a few words or a "
                 "short phrase) based on the provided context.")
_USER = "\u0000USER\u0000"


@dataclasses.dataclass(frozen=True)
class _Slot:
    """A latent item's place in a prompt (num_latent_tokens positions)."""

    item: int


@dataclasses.dataclass
class Prompt:
    """A prompt as parallel lists: token ids and, per position, the latent slot (or -1)."""

    ids: list[int]
    slot_item: list[int]
    slot_tok: list[int]
    context_tokens: int  # evidence tokens (a latent token counts as one)

    def __len__(self):
        return len(self.ids)


class PromptBuilder:
    """Builds latent, text and question-only prompts for one generator tokenizer."""

    def __init__(self, tokenizer, num_latent_tokens: int = 1, system: str = SYSTEM_PROMPT):
        from lm_jax.hf.tokenizer import render_chat

        self.tokenizer = tokenizer
        self.num_latent_tokens = num_latent_tokens
        text = render_chat(tokenizer, _USER, system=system, add_generation_prompt=True)
        if text.count(_USER) != 1:
            raise ValueError("the chat template must place the user text exactly once")
        prefix, suffix = text.split(_USER)
        self.prefix = self._tok(prefix)
        self.suffix = self._tok(suffix)

    def _tok(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def _assemble(self, pieces) -> Prompt:
        ids, item, tok = list(self.prefix), [-1] * len(self.prefix), [-1] * len(self.prefix)
        context = 0
        for piece in pieces:
            if isinstance(piece, _Slot):
                for j in range(self.num_latent_tokens):
                    ids.append(0)
                    item.append(piece.item)
                    tok.append(j)
                context += self.num_latent_tokens
            else:
                text, is_context = piece
                t = self._tok(text)
                ids += t
                item += [-1] * len(t)
                tok += [-1] * len(t)
                context += len(t) if is_context else 0
        ids += self.suffix
        item += [-1] * len(self.suffix)
        tok += [-1] * len(self.suffix)
        return Prompt(ids, item, tok, context)

    def latent(self, question: str, items: list[int]) -> Prompt:
        """Prompt whose i-th context is the latent of item `items[i]`."""
        pieces = []
        for i, it in enumerate(items):
            pieces += [(f"Latent context {i + 1}: ", False), _Slot(it), ("\n", False)]
        pieces.append((f"Question: {question}", False))
        return self._assemble(pieces)

    def text(self, question: str, contexts: list[str]) -> Prompt:
        """Prompt with raw evidence strings as contexts (an empty list: no retrieval)."""
        pieces = []
        for i, ctx in enumerate(contexts):
            pieces += [(f"Context {i + 1}: ", False), (ctx, True), ("\n", False)]
        pieces.append((f"Question: {question}", False))
        return self._assemble(pieces)


def pad_prompts(prompts: list[Prompt], length: int, left: bool, pad_id: int = 0):
    """Stacks prompts into static arrays, truncating from the left when too long.

    Returns dict of int32 arrays [N, length]: ids, mask, slot_item, slot_tok.
    """
    n = len(prompts)
    out = {k: np.full((n, length), -1 if k.startswith("slot") else 0, np.int32)
           for k in ("ids", "mask", "slot_item", "slot_tok")}
    out["ids"][:] = pad_id
    for r, p in enumerate(prompts):
        ids, item, tok = p.ids[-length:], p.slot_item[-length:], p.slot_tok[-length:]
        sl = slice(length - len(ids), length) if left else slice(0, len(ids))
        out["ids"][r, sl] = ids
        out["mask"][r, sl] = 1
        out["slot_item"][r, sl] = item
        out["slot_tok"][r, sl] = tok
    return out
