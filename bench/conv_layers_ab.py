"""A/B benchmark: conv denoiser training steps with and without the fused last layer.

Usage: .venv/bin/python bench/conv_layers_ab.py [--rounds 16] [--steps 20] [--batch-size 128]

`train_conv.fuse_last_upsampling` decides whether the denoiser's last UpSampling2D + Conv2D(1)
are trained as the two Keras layers ("plain") or as one models.UpsampledConv2D ("fused").
Both models are compiled as the stage compiles them (Adam, binary cross-entropy), start from
the same weights and train on the same cached batches of random MNIST-shaped data. Rounds of
`steps` steps alternate A B, B A, ... in ONE process, so drifts in the machine's speed hit
both alike; the first round (tracing) is dropped. Reports wall time AND the process's CPU
time per step: on a shared host that throttles the machine, wall times bunch at a few values
and the CPU time shows the work done. Prints medians, minimums and the median of the
per-round ratios fused/plain.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import mnist_ae  # noqa: F401  (sets TensorFlow's switches before TF is imported)

# isort: split
import numpy as np
import tensorflow as tf

from mnist_ae import models, training

VARIANTS = {"plain": False, "fused": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()

    training.make_deterministic(0)
    images = np.random.default_rng(0).random(
        (args.batch_size * args.steps, 28, 28, 1), dtype=np.float32
    )
    batches = tf.data.Dataset.from_tensor_slices((images, images)).batch(args.batch_size).cache()
    built = {name: models.build_conv_denoiser(32, fuse) for name, fuse in VARIANTS.items()}
    built["fused"].set_weights(built["plain"].get_weights())
    for model in built.values():
        training._compile(model, models.make_optimizer("adam", 0.003), 1, "auto")

    per_step: dict[str, dict[str, list[float]]] = {
        clock: {name: [] for name in VARIANTS} for clock in ("wall", "cpu")
    }
    names = list(VARIANTS)
    for round_ in range(args.rounds + 1):
        for name in names if round_ % 2 == 0 else names[::-1]:
            wall, cpu = time.perf_counter(), time.process_time()
            built[name].fit(batches, epochs=1, verbose=0)
            if round_:  # round 0 traces and allocates
                per_step["wall"][name].append((time.perf_counter() - wall) / args.steps * 1e3)
                per_step["cpu"][name].append((time.process_time() - cpu) / args.steps * 1e3)

    print(f"{args.rounds} rounds of {args.steps} steps, batch {args.batch_size}; ms per step:")
    for clock, times in per_step.items():
        for name, values in times.items():
            print(
                f"  {clock:>4} {name:>5}: median {statistics.median(values):6.1f}, "
                f"min {min(values):6.1f}"
            )
        ratios = [f / p for p, f in zip(times["plain"], times["fused"], strict=True)]
        quartiles = statistics.quantiles(ratios, n=4)
        print(
            f"  {clock:>4} fused / plain per round: median {statistics.median(ratios):.3f} "
            f"(quartiles {quartiles[0]:.3f} - {quartiles[2]:.3f})"
        )


if __name__ == "__main__":
    main()
