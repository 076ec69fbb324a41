"""Shared test set-up: never touch a real tracking server.

TensorFlow's switches are set by importing mnist_ae (see its __init__).
"""

import os

import mnist_ae  # noqa: F401  (sets TensorFlow switches before any test imports TF)

os.environ.pop("MLFLOW_TRACKING_URI", None)
