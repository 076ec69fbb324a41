"""Data-parallel training (`distribute` in each training section): the strategy each value
picks, and the three training stages under tf.distribute.MirroredStrategy on this CPU split into
two logical devices (tests/distributed_stages.py, in a subprocess of its own)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from mnist_ae import training

TESTS = Path(__file__).resolve().parent
STAGES = ["train_dense", "train_conv", "train_vae@likelihood"]
# How close two replicas' training comes to one device's, on the same global batches. The
# dense and conv models differ only in float summation order. The VAE's replicas each draw
# their own binarisation and code noise (one device draws one stream for the whole batch), so
# its curves differ by sampling noise: 1.3 % at most in these two epochs.
TOLERANCE = {"train_dense": 1e-4, "train_conv": 1e-4, "train_vae@likelihood": 0.03}


@pytest.fixture(scope="module")
def distributed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("distributed") / "runs.json"
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent / "src")}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [sys.executable, str(TESTS / "distributed_stages.py"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("stage", STAGES)
def test_mirrored_training_runs_on_both_devices_and_matches_one_device(
    distributed: dict, stage: str
) -> None:
    runs = distributed[stage]
    assert runs["none"]["replicas"] == 1 and runs["mirrored"]["replicas"] == 2
    for curve in ("loss", "val_loss"):
        np.testing.assert_allclose(
            runs["mirrored"]["history"][curve],
            runs["none"]["history"][curve],
            rtol=TOLERANCE[stage],
        )
    # Not the same bits as one device: the gradients are summed across the replicas.
    assert runs["mirrored"]["weights_sha256"] != runs["none"]["weights_sha256"]


@pytest.mark.parametrize("stage", STAGES)
def test_mirrored_training_is_byte_reproducible(distributed: dict, stage: str) -> None:
    runs = distributed[stage]
    assert runs["mirrored_again"] == runs["mirrored"]


def test_each_replica_draws_its_own_vae_noise_and_one_device_draws_as_before(
    distributed: dict,
) -> None:
    seeds = distributed["seeds"]
    first, second = seeds["replicas"]
    assert first != second  # not the same noise for two different images
    assert seeds["one_device"] == seeds["plain"]  # unchanged bits without a strategy


ONE_CPU_NO_GPU = pytest.mark.skipif(
    bool(tf.config.list_logical_devices("GPU")), reason="this process sees a GPU"
)


@ONE_CPU_NO_GPU
def test_none_and_auto_without_several_gpus_are_one_device() -> None:
    for distribute in ("none", "auto"):
        strategy = training.distribution_strategy(distribute)
        assert strategy is tf.distribute.get_strategy()
        assert strategy.num_replicas_in_sync == 1


def test_auto_mirrors_over_every_gpu_when_there_are_several(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gpus = [tf.config.LogicalDevice(f"/device:GPU:{index}", "GPU") for index in range(2)]
    monkeypatch.setattr(
        tf.config, "list_logical_devices", lambda kind=None: gpus if kind == "GPU" else []
    )
    created: list[tuple[str, ...]] = []
    monkeypatch.setattr(training, "_mirrored", lambda devices: created.append(devices))
    training.distribution_strategy("auto")
    assert created == [("/device:GPU:0", "/device:GPU:1")]


@ONE_CPU_NO_GPU
def test_mirrored_without_a_gpu_uses_the_cpu_and_one_strategy_per_process() -> None:
    strategy = training.distribution_strategy("mirrored")
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    assert strategy.extended.worker_devices == ("/job:localhost/replica:0/task:0/device:CPU:0",)
    assert training.distribution_strategy("mirrored") is strategy


def test_an_unknown_strategy_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="distribute must be auto, none or mirrored, not 'tpu'"):
        training.distribution_strategy("tpu")
