"""Run the training stages on a CPU split into two logical devices (tests/test_distribute.py).

A TF process fixes its devices when the runtime starts, so this runs in a subprocess of its
own: `python tests/distributed_stages.py OUT.json`. For each training stage (the dense
autoencoder, the conv denoiser, the likelihood VAE), on a small slice of the real MNIST,
shrunk, it runs the stage's library function three times: `distribute: none` (one device),
then `mirrored` twice (one replica per logical CPU). OUT.json gets, per stage and run, the
number of replicas the model trained on, its per-epoch history and the SHA-256 of its weights.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import tensorflow as tf

LOGICAL_CPUS = 2
tf.config.set_visible_devices([], "GPU")  # the CPU's two halves, even on a machine with a GPU
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * LOGICAL_CPUS
)

import keras  # noqa: E402  (after the device split, which must come first)

from mnist_ae import training, vae  # noqa: E402
from mnist_ae.config import load_params  # noqa: E402
from mnist_ae.pipeline import add_noise, prepare, train_conv, train_dense, train_vae  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Small enough for seconds per run; global batches that two replicas split unevenly at the
# end of an epoch (560 training images, batch 96: the last batch holds 80).
TRAINING = {"epochs": 2, "batch_size": 96, "validation_samples": 40}
RUNS = [("none", "none"), ("mirrored", "mirrored"), ("mirrored_again", "mirrored")]


class _Trained(keras.callbacks.Callback):
    """Records how many replicas the model trained on, and its weights at the end."""

    def __init__(self) -> None:
        super().__init__()
        self.replicas = 0
        self.weights_sha256 = ""

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.replicas = self.model.distribute_strategy.num_replicas_in_sync

    def on_train_end(self, logs: dict | None = None) -> None:
        digest = hashlib.sha256()
        for weights in self.model.get_weights():
            digest.update(weights.tobytes())
        self.weights_sha256 = digest.hexdigest()


def main(out: Path) -> None:
    params = load_params(REPO / "params.yaml")
    prepared = params.prepare.model_copy(update={"train_samples": 600, "test_samples": 16})
    vaes = params.train_vae.models
    small_vae = vaes.likelihood.model_copy(update={"hidden": [64], "latent_dim": 8})
    params = params.model_copy(
        update={
            "prepare": prepared,
            "train_conv": params.train_conv.model_copy(update={"filters": 8}),
            "train_vae": params.train_vae.model_copy(
                update={"models": vaes.model_copy(update={"likelihood": small_vae})}
            ),
        }
    )
    stages = {
        "train_dense": ("train_dense", train_dense.run, None),
        "train_conv": ("train_conv", train_conv.run, None),
        "train_vae@likelihood": ("train_vae", train_vae.runner("likelihood"), "likelihood"),
    }
    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        prepare.run(params, workdir)
        add_noise.run(params, workdir)
        for stage, (section, run, vae_name) in stages.items():
            results[stage] = {}
            for label, distribute in RUNS:
                if vae_name:
                    settings = params.train_vae.models.likelihood
                else:
                    settings = getattr(params, section)
                changed = settings.model_copy(update={**TRAINING, "distribute": distribute})
                if vae_name:
                    models = params.train_vae.models.model_copy(update={vae_name: changed})
                    update = {"train_vae": params.train_vae.model_copy(update={"models": models})}
                else:
                    update = {section: changed}
                trained = _Trained()
                result = run(params.model_copy(update=update), workdir, callbacks=[trained])
                results[stage][label] = {
                    "replicas": trained.replicas,
                    "history": result.history,
                    "weights_sha256": trained.weights_sha256,
                }
    results["seeds"] = _seed_draws()
    out.write_text(json.dumps(results, indent=1))


def _seed_draws() -> dict[str, list]:
    """The VAE's seed generator: what each replica draws under the strategy, and what it draws
    on one device beside a plain SeedGenerator of the same seed."""
    strategy = training.distribution_strategy("mirrored")
    with strategy.scope():
        generator = vae._ReplicaSeedGenerator(7, name="probe")

    @tf.function
    def draws() -> object:
        return strategy.run(lambda: keras.random.normal((4,), seed=generator))

    per_replica = strategy.experimental_local_results(draws())
    one_device = keras.random.normal((4,), seed=vae._ReplicaSeedGenerator(7, name="one"))
    plain = keras.random.normal((4,), seed=keras.random.SeedGenerator(7, name="plain"))
    return {
        "replicas": [draw.numpy().tolist() for draw in per_replica],
        "one_device": one_device.numpy().tolist(),
        "plain": plain.numpy().tolist(),
    }


if __name__ == "__main__":
    main(Path(sys.argv[1]))
