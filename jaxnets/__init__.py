"""jaxnets: analyse and compress convolutional networks in JAX/Flax."""

__version__ = "0.1.0"
