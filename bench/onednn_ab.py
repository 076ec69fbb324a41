"""A/B benchmark: TensorFlow training-step time with oneDNN kernels on vs off.

Usage: .venv/bin/python bench/onednn_ab.py [--repeats 3] [--steps 60]
Each measurement is a fresh subprocess (TF_ENABLE_ONEDNN_OPTS only works before TF is
imported), on and off interleaved so drifts in the machine's speed hit both alike. Times
`steps` training steps of each model after one warm-up epoch, on random MNIST-shaped data.
Prints every measurement and the medians, in ms per step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
import numpy as np, keras, tensorflow as tf
from tensorflow.python.util import _pywrap_util_port as port
from mnist_ae import models
steps = int(sys.argv[1])
results = {"onednn": bool(port.IsMklEnabled())}
keras.utils.set_random_seed(0)
for name, batch, build, shape in (
    ("dense", 256, lambda: models.build_dense_autoencoder(32)[0], (784,)),
    ("conv", 128, lambda: models.build_conv_denoiser(32), (28, 28, 1)),
):
    x = np.random.default_rng(0).random((batch * steps, *shape), dtype=np.float32)
    model = build()
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(x, x, batch_size=batch, epochs=1, verbose=0)  # warm-up: tracing, allocation
    start = time.perf_counter()
    model.fit(x, x, batch_size=batch, epochs=1, verbose=0)
    results[name] = (time.perf_counter() - start) / steps * 1000
print(json.dumps(results))
"""


def measure(onednn: bool, steps: int) -> dict:
    """One fresh-process measurement with oneDNN on or off."""
    env = {
        **os.environ,
        "TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": "src",
    }
    # Import TF via the child script, not mnist_ae first, so the env var above decides.
    output = subprocess.run(
        [sys.executable, "-c", CHILD, str(steps)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    """Run the interleaved A/B and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    arguments = parser.parse_args()
    runs: dict[bool, list[dict]] = {True: [], False: []}
    for repeat in range(arguments.repeats):
        for onednn in (True, False):
            result = measure(onednn, arguments.steps)
            runs[onednn].append(result)
            print(f"repeat {repeat + 1} onednn={onednn}: {result}", flush=True)
    for onednn, results in runs.items():
        dense = statistics.median(r["dense"] for r in results)
        conv = statistics.median(r["conv"] for r in results)
        print(
            f"oneDNN {'on ' if onednn else 'off'}: dense {dense:.1f} ms/step (batch 256), "
            f"conv {conv:.1f} ms/step (batch 128), medians of {len(results)}"
        )


if __name__ == "__main__":
    main()
