"""DVC stage `check_params`: validate the whole params.yaml, before any other stage runs.

Every other stage depends on only the params keys it reads, so a typo (`noise.noise_facter`),
an unknown or deleted section, or a bad value of a key no stage reads would change no stage's
params, and `dvc repro` would say "up to date". This stage depends on the whole file; every
other stage depends on its output, whose bytes never change: `dvc repro <any stage>` runs the
check first, and passing it re-runs nothing downstream.
"""

from pathlib import Path

from mnist_ae import artifacts
from mnist_ae.cli import run_stage
from mnist_ae.config import Params


def check(params: Params) -> None:
    """run_stage validated every section before calling this: record that it passed."""
    artifacts.PARAMS_CHECKED.write(Path.cwd(), artifacts.PARAMS_CHECKED_TEXT)


if __name__ == "__main__":
    run_stage("check_params", check)
