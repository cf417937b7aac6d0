"""HotpotQA TFDS builder (`hotpot_qa/distractor`, `hotpot_qa/fullwiki`)."""

from lm_jax.data.builders.hotpot_qa.hotpot_qa import HotpotQa

__all__ = ["HotpotQa"]
