"""Tokenizers and chat templates: the one place that turns (system, user) text into a prompt.

Every prompt that reaches a generator goes through `render_chat`, so baselines, Latent Memory and
evaluation format questions identically for a given tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Used when a tokenizer has no chat template (base models, tiny test tokenizers):
#
#   System: {system}\n\n          (only when a system text is given)
#   User: {user}\n\n
#   Assistant:                    (only with add_generation_prompt)
FALLBACK_SYSTEM = "System: {system}\n\n"
FALLBACK_USER = "User: {user}\n\n"
FALLBACK_GENERATION_PROMPT = "Assistant:"


class TokenizerError(ValueError):
    """A tokenizer that cannot be loaded from the given directory or id."""


def load_tokenizer(dir_or_id: str, flag_name: str = "--tokenizer"):
    """Loads a `transformers` tokenizer from a local directory or a Hugging Face model id.

    Ids are resolved like checkpoints (`lm_jax.hf.checkpoint.resolve_model_dir`), so offline runs
    only read the local cache and say which flag to point at a local directory.

    Raises:
      ModelNotFoundError: unresolvable id; TokenizerError: no loadable tokenizer in the directory.
    """
    import transformers

    from lm_jax.hf.checkpoint import resolve_model_dir

    path = resolve_model_dir(dir_or_id, flag_name=flag_name)
    try:
        return transformers.AutoTokenizer.from_pretrained(path)
    except Exception as e:  # transformers raises OSError, ValueError, KeyError, ...
        raise TokenizerError(f"{flag_name}={dir_or_id}: no loadable tokenizer in {path} "
                             f"({type(e).__name__}: {e})") from None


def _fallback(user: str, system: str | None, add_generation_prompt: bool) -> str:
    text = FALLBACK_SYSTEM.format(system=system) if system else ""
    text += FALLBACK_USER.format(user=user)
    return text + (FALLBACK_GENERATION_PROMPT if add_generation_prompt else "")


def _apply(tokenizer, messages, add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False,
                                         add_generation_prompt=add_generation_prompt)


def render_chat(tokenizer, user: str, system: str | None = None,
                add_generation_prompt: bool = True) -> str:
    """Formats one user turn (optionally after a system text) with the tokenizer's chat template.

    Templates without a system role (they raise on it, or silently drop its text) get the system
    text folded into the user turn as `system + "\\n\\n" + user`. A tokenizer without a chat
    template gets the plain format documented at `FALLBACK_SYSTEM` (module top).

    Returns:
      The prompt string, including the template's special tokens (so encode it with
      `add_special_tokens=False`).
    """
    if not getattr(tokenizer, "chat_template", None):
        return _fallback(user, system, add_generation_prompt)
    if system:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        try:
            text = _apply(tokenizer, messages, add_generation_prompt)
        except Exception:  # jinja2's TemplateError from raise_exception, or a template bug
            text = None
        if text is not None and system.strip() in text:
            return text
        user = f"{system}\n\n{user}"
    return _apply(tokenizer, [{"role": "user", "content": user}], add_generation_prompt)


def pad_id(tokenizer) -> int:
    """The id right-padding uses: the pad token, else EOS, else 0 (masked out either way)."""
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0


def encode(tokenizer, texts: Sequence[str], max_len: int,
           add_special_tokens: bool) -> tuple[np.ndarray, np.ndarray]:
    """Tokenizes, truncates on the right to `max_len` and right-pads.

    Args:
      texts: N strings.
      add_special_tokens: whether the tokenizer adds BOS/EOS (False for `render_chat` output,
        which already carries them).

    Returns:
      ids [N, max_len] int32 (pad id where mask is 0) and mask [N, max_len] int32.
    """
    pad = pad_id(tokenizer)
    rows = tokenizer(list(texts), add_special_tokens=add_special_tokens)["input_ids"]
    ids = np.full((len(rows), max_len), pad, np.int32)
    mask = np.zeros((len(rows), max_len), np.int32)
    for i, row in enumerate(rows):
        row = row[:max_len]
        ids[i, :len(row)] = row
        mask[i, :len(row)] = 1
    return ids, mask
