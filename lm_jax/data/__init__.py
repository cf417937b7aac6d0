"""Data: raw files -> TFDS (validated ArrayRecord) -> Grain batches. See docs/data.md.

Modules (imported on demand; none of them needs TensorFlow):
  builders/         TFDS builders (`import lm_jax.data.builders` registers hotpot_qa)
  records.py        QAExample / EvidenceItem, the normalised record view
  examples.py       EvidenceEncoder: QAExample -> fixed-shape token arrays
  pipeline.py       make_train_iterator: sharded, deterministic, checkpointable batches
  prepare.py        prepare_dataset / prepare_synthetic and the prepare CLI
  synthetic.py      the seeded fictional multi-hop world (HotpotQA format)
  tokenizer_train.py  the demo byte-level BPE tokenizer
"""
