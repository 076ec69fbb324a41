"""DVC stages `evaluate_vae@<name>` (dvc.yaml `foreach`): test scores of the VAE `name`."""

import sys

from mnist_ae.pipeline import evaluate_vae, run_stage

if __name__ == "__main__":
    name = sys.argv[1] if len(sys.argv) == 2 else ""
    run_stage(f"evaluate_vae@{name}", evaluate_vae.runner(name))
