"""Train the small byte-level BPE tokenizer of the embedded demo and save it as an HF directory.

The result loads with `transformers.AutoTokenizer.from_pretrained(out_dir)`:
  * special tokens: `<|pad|>` (id 0), `<|bos|>`, `<|eos|>`, `<|mem|>` and the chat-role tokens
    `<|system|>`, `<|user|>`, `<|assistant|>`, `<|end|>`; bos/eos/pad are set in
    tokenizer_config.json;
  * encoding adds `<|bos|>` in front by default (as Llama does), nothing at the end, and
    a prefix space ("Quenby" -> "ĠQuen", "by"), so decoded text may start with a space;
  * a Jinja `chat_template`: `<|bos|><|system|>...<|end|><|user|>...<|end|>` and, with
    `add_generation_prompt=True`, a trailing `<|assistant|>`. An assistant turn ends with
    `<|end|>`, so generation should stop at `<|end|>` or `<|eos|>` (see STOP_TOKENS).

Training is deterministic: the corpus is de-duplicated in first-seen order and the BPE
trainer breaks ties deterministically, so the same texts give byte-identical files.

Synthetic names: plain BPE would merge frequent *training* names into whole tokens that
test-world names never use, so test names would need pieces whose embeddings training never
touched. With `syllables` (the CLI passes the synthetic inventory), a second pre-tokenizer
cuts every word made only of those syllables into its syllables ("ĠZorvex" -> "ĠZor", "vex"),
so merges never cross a syllable boundary of a name and both worlds share the same pieces;
a few primer texts make every syllable a token in each of its three positions. Digits are
always split one by one (years never seen in training use seen tokens).
Other words are unaffected unless they end in syllables ("Ġsculptor" -> "Ġsculp", "tor"),
which is harmless and the same in both worlds.

CLI: python -m lm_jax.data.tokenizer_train --corpus=FILE.json --out_dir=DIR [--vocab_size=N]
     [--names=words|syllables|none]
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

PAD, BOS, EOS, MEM = "<|pad|>", "<|bos|>", "<|eos|>", "<|mem|>"
SYSTEM, USER, ASSISTANT, END = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
SPECIAL_TOKENS = (PAD, BOS, EOS, MEM, SYSTEM, USER, ASSISTANT, END)
STOP_TOKENS = (END, EOS)

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown chat role: ' + message['role']) }}"
    "{% endif %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)

DEFAULT_VOCAB_SIZE = 2048  # an upper bound: the demo's corpus saturates at about 1,200
DEFAULT_MIN_FREQUENCY = 2


def corpus_texts(records: Iterable[dict[str, Any]]) -> Iterator[str]:
    """The texts the models will see, from HotpotQA-format records: questions, answers and
    rendered evidence "Title: sentence"."""
    for r in records:
        yield r["question"]
        yield r["answer"]
        for title, sents in r["context"]:
            for s in sents:
                if s.strip():
                    yield f"{title}: {s.strip()}"


def syllable_split_pattern(syllables: Iterable[str]) -> str:
    """Regex isolating each syllable of a byte-level pre-token made only of `syllables`.

    A syllable (with an optional leading "Ġ", ByteLevel's space) matches only if the rest of
    the pre-token up to its end is syllables too (a lookahead; Onig has no unbounded
    lookbehind). Longest syllables first, so the regex prefers "tan" over "ta".
    """
    syls = sorted({s.lower() for s in syllables}, key=lambda x: (-len(x), x))
    if not syls or not all(re.fullmatch("[a-z]+", s) for s in syls):
        raise ValueError(f"syllables must be non-empty lowercase ASCII words, got {syls[:5]}")
    alt = "|".join(syls)
    return f"(?i:\u0120?(?:{alt})(?=(?:{alt})*$))"


def train_tokenizer(
    texts: Iterable[str],
    out_dir: str | os.PathLike,
    vocab_size: int = DEFAULT_VOCAB_SIZE,
    min_frequency: int = DEFAULT_MIN_FREQUENCY,
    syllables: Iterable[str] | None = None,
    words: Iterable[str] | None = None,
):
    """Trains a byte-level BPE on `texts`, saves an HF tokenizer directory, returns it loaded.

    Args:
      texts: training texts (duplicates are removed, first occurrence order kept).
      out_dir: directory to write (tokenizer.json, tokenizer_config.json, ...).
      vocab_size: upper bound of the vocabulary incl. 256 byte tokens and the specials.
      min_frequency: a pair needs this many occurrences (in the de-duplicated corpus) to merge.
      syllables: if given, name words made of these syllables are split into them before
        BPE (see the module doc); the synthetic world's inventory is `synthetic.SYLLABLES`.
      words: if given, primer texts repeat each of these words, so that with a large enough
        vocabulary every one becomes a single token ("ĠThorne"), however rare in `texts`
        (the synthetic "words" style's name words: `synthetic.NAME_WORDS`).
    Returns:
      the `transformers` tokenizer loaded back from `out_dir` with AutoTokenizer.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    unique = list(dict.fromkeys(t for t in texts if t))
    if not unique:
        raise ValueError("train_tokenizer: no non-empty training text")
    tok = Tokenizer(models.BPE())
    # Digits one by one: a year never seen in training still uses seen tokens.
    steps = [
        # A prefix space: a word has one form at the start of a text ("Title: ...", the
        # question, the answer) and inside it ("ĠZorvex"), as in Llama's tokenizers.
        pre_tokenizers.ByteLevel(add_prefix_space=True),
        pre_tokenizers.Digits(individual_digits=True),
    ]
    if syllables is not None:
        syllables = sorted(set(syllables))
        steps.append(
            pre_tokenizers.Split(Regex(syllable_split_pattern(syllables)), behavior="isolated")
        )
        # Every syllable in both its forms (word-initial "ĠZor", inside a name "zor"), at
        # least min_frequency times, so each becomes a token however small the corpus.
        for x in syllables:
            unique += [" ".join([x.capitalize() + x] * (k + 1)) for k in range(min_frequency)]
    for w in sorted(set(words or ())):
        unique += [" ".join([w] * (k + 1)) for k in range(min_frequency)]
    tok.pre_tokenizer = pre_tokenizers.Sequence(steps)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(unique, trainer=trainer, length=len(unique))
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
            ),
        ]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        extra_special_tokens=[MEM, SYSTEM, USER, ASSISTANT, END],
        model_max_length=2048,
        clean_up_tokenization_spaces=False,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    wrapped.save_pretrained(out_dir)
    return AutoTokenizer.from_pretrained(out_dir)


def name_style_options(names: str) -> dict[str, Any]:
    """`train_tokenizer` keyword arguments for a synthetic name style (NAME_STYLES or 'none')."""
    from lm_jax.data import synthetic

    if names == "words":
        return {"words": synthetic.NAME_WORDS}
    if names == "syllables":
        return {"syllables": synthetic.SYLLABLES}
    if names == "none":
        return {}
    raise ValueError(f"unknown name style {names!r}; use one of {synthetic.NAME_STYLES} or 'none'")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train the demo byte-level BPE tokenizer.")
    parser.add_argument("--corpus", required=True, help="HotpotQA-format JSON file")
    parser.add_argument("--out_dir", required=True)
    parser.add_argument("--vocab_size", type=int, default=DEFAULT_VOCAB_SIZE)
    parser.add_argument("--min_frequency", type=int, default=DEFAULT_MIN_FREQUENCY)
    parser.add_argument(
        "--names",
        choices=("syllables", "words", "none"),
        default="syllables",
        help="the synthetic world's name style: 'words' makes every name word one token, "
        "'syllables' splits name words into syllables, 'none' is a plain BPE",
    )
    args = parser.parse_args(argv)
    with open(args.corpus, encoding="utf-8") as f:
        records = json.load(f)
    tokenizer = train_tokenizer(
        corpus_texts(records), args.out_dir, args.vocab_size, args.min_frequency,
        **name_style_options(args.names),
    )
    print(json.dumps({"out_dir": args.out_dir, "vocab_size": len(tokenizer)}))


if __name__ == "__main__":
    main()
