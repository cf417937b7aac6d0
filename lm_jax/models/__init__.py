"""lm_jax.models: the decoder family, LoRA and the Latent Memory composition."""
