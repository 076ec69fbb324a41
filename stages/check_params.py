"""DVC stage `check_params`: validate the whole params.yaml, before any other stage runs.

Every other stage depends on only the params keys it reads, so a typo (`noise.noise_facter`),
an unknown or deleted section, or a bad value of a key no stage reads would change no stage's
params, and `dvc repro` would say "up to date". This stage depends on the whole file, so any
change to it runs this check; it has no outputs, so nothing downstream re-runs because of it.
"""

from mnist_ae.cli import run_stage
from mnist_ae.config import Params


def check(params: Params) -> None:
    """Nothing left to do: run_stage validated every section before calling this."""


if __name__ == "__main__":
    run_stage("check_params", check)
