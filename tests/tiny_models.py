"""The shared shrink of the demo config used by the training tests: random-init one-layer
models and the smallest batches the three losses accept, so a run takes seconds."""


def shrink_to_tiny(c) -> None:
    """Mutates an unlocked ConfigDict in place (model size, negatives, distillation, eval)."""
    c.pretrain_generator.enabled = False
    c.pretrain_compressor.enabled = False
    c.model.share_base = True  # one random base: the tests of a separate one build it themselves
    c.model.init = "random"
    c.model.arch.update(dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                             num_kv_heads=1, head_dim=16))
    c.model.retrieval_dim = 16
    c.model.lora_rank = 4
    c.data.max_negatives = 2
    c.data.max_extra_negatives = 1
    c.data.distill_tokens = 3
    c.eval.val_questions = 4
    c.eval.batch_size = 4
