"""Shared test set-up: quiet TensorFlow, never touch a real tracking server."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as the stages do (mnist_ae.cli)
os.environ.pop("MLFLOW_TRACKING_URI", None)
