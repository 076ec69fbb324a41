"""A/B benchmark: the VAE stage's epochs with and without XLA and several steps per call.

Usage: .venv/bin/python bench/vae_step_ab.py [--name likelihood] [--rounds 2] [--epochs 3]

Runs the stage's own function (`mnist_ae.pipeline.train_vae`, in a scratch workdir, on
data/mnist.npz: run `dvc repro prepare` first) for `epochs` epochs under each combination of
`steps_per_execution` (1, 10) and `jit_compile` (false, true); every other param is
params.yaml's. With `jit_compile: true` the VAE compiles its step's arithmetic with XLA and
keeps the random draws outside it (mnist_ae.vae.VariationalAutoencoder.compile). Rounds run
the four variants in alternating order (A B C D, D C B A, ...) in ONE process, so drifts in
the machine's speed hit all alike; the first epoch of each run (tracing, XLA compilation) is
dropped. Reports the median wall time AND process CPU time per epoch: on a shared host the
wall times scatter, the CPU time shows the work done. Also prints each run's final training
loss: the two XLA settings must agree closely; the steps per call leave it unchanged on
this data (the same steps in the same order).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import mnist_ae  # noqa: E402, F401  (sets TensorFlow's switches before TF is imported)

# isort: split
import keras  # noqa: E402
import yaml  # noqa: E402

from mnist_ae import artifacts, config  # noqa: E402
from mnist_ae.pipeline import train_vae  # noqa: E402

VARIANTS = [(1, False), (10, False), (1, True), (10, True)]  # (steps_per_execution, jit)


class _EpochTimer(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.started = (time.perf_counter(), time.process_time())

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.wall.append(time.perf_counter() - self.started[0])
        self.cpu.append(time.process_time() - self.started[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="likelihood", help="a train_vae.models entry")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="per run; the first is dropped")
    args = parser.parse_args()
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    mnist = artifacts.MNIST.at(ROOT)
    timings: dict[tuple[int, bool], tuple[list[float], list[float]]] = {
        variant: ([], []) for variant in VARIANTS
    }
    for round_index in range(args.rounds):
        for steps, jit in VARIANTS if round_index % 2 == 0 else VARIANTS[::-1]:
            settings = raw["train_vae"]["models"][args.name]
            settings.update(epochs=args.epochs, steps_per_execution=steps, jit_compile=jit)
            params = config.parse_params(raw)
            with tempfile.TemporaryDirectory(prefix="vae-ab-") as scratch:
                workdir = Path(scratch)
                (workdir / "data").mkdir()
                os.symlink(mnist, workdir / artifacts.MNIST.path)
                timer = _EpochTimer()
                result = train_vae.run(params, workdir, callbacks=[timer], name=args.name)
            timings[steps, jit][0].extend(timer.wall[1:])
            timings[steps, jit][1].extend(timer.cpu[1:])
            print(
                f"round {round_index + 1} steps_per_execution={steps:<2} jit_compile={jit!s:<5}"
                f" wall {[round(t, 2) for t in timer.wall]} cpu {[round(t, 2) for t in timer.cpu]}"
                f" final loss {result.history['loss'][-1]:.4f}",
                flush=True,
            )
    print("\nsteps_per_execution jit_compile  wall s/epoch (median)  CPU s/epoch (median)")
    for (steps, jit), (wall, cpu) in timings.items():
        print(
            f"{steps:>19} {jit!s:>11}  {statistics.median(wall):>21.2f}"
            f"  {statistics.median(cpu):>20.2f}"
        )


if __name__ == "__main__":
    main()
