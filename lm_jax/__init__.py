"""lm_jax: Latent Memory question answering in JAX/Flax."""

__version__ = "0.1.0"
