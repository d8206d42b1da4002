"""jaxsal: saliency maps for image classifiers in JAX."""

__version__ = "0.1.0"
