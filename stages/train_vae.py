"""DVC stages `train_vae@<name>` (dvc.yaml `foreach`): the VAE `name` of train_vae.models."""

import sys

from mnist_ae.pipeline import run_stage, train_vae

if __name__ == "__main__":
    name = sys.argv[1] if len(sys.argv) == 2 else ""
    run_stage(f"train_vae@{name}", train_vae.runner(name))
