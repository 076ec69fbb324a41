"""Autoencoders on MNIST: the classic Keras walkthrough as a reproducible DVC + MLflow pipeline."""

__version__ = "0.1.0"
