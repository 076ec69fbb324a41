"""Seeding and fitting: `model.fit` on an in-memory tf.data feed, with resumable checkpoints.

Two properties matter more than anything else here:
- Determinism: the batch order of epoch `e` is a stateless function of (seed, e), and TF op
  determinism is on, so the same params give byte-identical weights run after run.
- Resumability: after every completed epoch the weights, the optimizer's state (its learning
  rate included), the history (every curve the model logs), the early-stopping and
  learning-rate-reduction state and the model's random-number state
  (SeedGenerators) go to ONE checkpoint file, written atomically. A stage killed
  mid-epoch (SIGTERM, SIGKILL, Ctrl-C, a crash) resumes from the last completed epoch when it
  is run again with the same params and inputs — and, because the batch order depends only on
  (seed, epoch), it ends with exactly the weights an uninterrupted run would have.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

from mnist_ae import io
from mnist_ae.models import make_optimizer

log = logging.getLogger(__name__)

# Checkpoints live in the stage's working copy (not a DVC output, ignored by git). Queued
# experiments run in their own temporary copies, so they never share a checkpoint.
CHECKPOINT_DIR = Path(".checkpoints")
_CHECKPOINT_FORMAT = 1


def make_deterministic(seed: int) -> None:
    """Seed Python, NumPy and TF from one value and make TF ops deterministic.

    With this, the same params give byte-identical weights run after run on one machine,
    which keeps DVC's cache honest. (Different CPUs or a GPU may still give other bits.)
    """
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def distribution_strategy(distribute: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy a training section's `distribute` names; build and fit the
    model inside its `scope()`.

    "none": TF's default strategy, one device. "mirrored": tf.distribute.MirroredStrategy,
    one replica per visible GPU, or per logical CPU device where there is no GPU (one, unless
    the process split its CPU with tf.config.set_logical_device_configuration, as the tests
    do). "auto": mirrored when more than one GPU is visible, else none. Keras splits each
    global batch between the replicas and sums their gradients, so `batch_size` means what
    it means on one device.
    """
    if distribute not in ("auto", "none", "mirrored"):
        raise ValueError(f"distribute must be auto, none or mirrored, not {distribute!r}")
    gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
    if distribute == "none" or (distribute == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy()
    devices = gpus or [device.name for device in tf.config.list_logical_devices("CPU")]
    return _mirrored(tuple(devices))


@functools.cache
def _mirrored(devices: tuple[str, ...]) -> tf.distribute.MirroredStrategy:
    """One MirroredStrategy per process and device set: a second one numbers its collective
    all-reduces from the start again, and they clash with the first's in TF's runtime ("Shape
    mismatch in the collective instance") when one process trains several models."""
    return tf.distribute.MirroredStrategy(list(devices))


@dataclass(frozen=True)
class FitResult:
    """Per-epoch history and a summary of one training run."""

    history: dict[str, list[float]]  # loss, val_loss (and any other logged curve), per epoch
    epochs_run: int
    best_epoch: int  # 1-based epoch whose weights the model holds at the end
    best_val_loss: float
    resumed_epochs: int = 0  # epochs restored from a checkpoint rather than run in this process

    def summary(self, model: keras.Model) -> dict[str, float | int]:
        """Headline numbers of this run, for the DVC metrics file and MLflow."""
        return {
            "parameters": int(model.count_params()),
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "best_val_loss": self.best_val_loss,
            # Training loss of the weights kept (the best epoch's, not the last one's).
            "best_epoch_loss": self.history["loss"][self.best_epoch - 1],
        }


def split_validation(
    inputs: np.ndarray, targets: np.ndarray, validation_samples: int
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Hold out the LAST `validation_samples` training examples for validation."""
    if not 0 < validation_samples < len(inputs):
        raise ValueError(
            f"validation_samples must be between 1 and {len(inputs) - 1} "
            f"(the training set has {len(inputs)} samples), got {validation_samples}"
        )
    cut = len(inputs) - validation_samples
    return (inputs[:cut], targets[:cut]), (inputs[cut:], targets[cut:])


def fingerprint(
    *parts: Any, files: Iterable[Path | str] = (), arrays: Iterable[np.ndarray] = ()
) -> str:
    """A digest of JSON-able values, file contents and arrays (dtype, shape and bytes)."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    for path in files:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def resume_key(
    seed: int,
    settings: Mapping[str, Any],
    data_files: Iterable[Path | str],
    code_files: Iterable[Path | str] = (),
    arrays: Iterable[np.ndarray] = (),
) -> str:
    """What a checkpoint must match to be resumed: seed, the stage's params but `epochs`, its
    input data (the files, and the arrays fit() gets from them: a change in preprocessing,
    such as the VAE's `binarize`, is a change of data too), the model and training code
    (models.py, training.py and `code_files`), and the Keras/TensorFlow versions.

    Not `epochs`: the batch order of an epoch depends only on (seed, epoch), so the first k
    epochs are the same whatever the total, and a run stopped at epoch k resumes to any
    total >= k (fit() starts over for a smaller one), ending with the bits of a run that was
    never stopped. Stop a 100-epoch run at epoch 30, decide 50 are enough, resume.
    """
    settings = {key: value for key, value in settings.items() if key != "epochs"}
    code = [Path(__file__).with_name(name) for name in ("models.py", "training.py")]
    versions = (keras.__version__, tf.__version__)
    files = [*data_files, *code, *code_files]
    return fingerprint(seed, settings, versions, files=files, arrays=arrays)


def remove_checkpoint(path: Path | str) -> None:
    """Delete a stage's checkpoint once its outputs are all written (then nothing is lost)."""
    Path(path).unlink(missing_ok=True)


def training_batches(
    inputs: np.ndarray, targets: np.ndarray, batch_size: int, seed: int, epoch: tf.Variable
) -> tf.data.Dataset:
    """One epoch of shuffled (input, target) batches, re-iterable, read from memory.

    The order is a stateless shuffle keyed by (seed, current value of `epoch`), so it does not
    depend on how many epochs this process has run — the key to exact resumption. The arrays
    are held once as tensors and batches are gathered inside the graph: no per-batch Python.
    """
    inputs_tensor = tf.constant(inputs)
    targets_tensor = tf.constant(targets)
    count = len(inputs)
    steps = math.ceil(count / batch_size)

    def epoch_order(_: tf.Tensor) -> tf.data.Dataset:
        key = tf.stack([tf.constant(seed, tf.int64), epoch.read_value()])
        order = tf.random.experimental.stateless_shuffle(tf.range(count, dtype=tf.int64), key)
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    def gather(indices: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.gather(inputs_tensor, indices), tf.gather(targets_tensor, indices)

    dataset = tf.data.Dataset.from_tensors(0).flat_map(epoch_order)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(steps))
    return dataset.map(gather).prefetch(tf.data.AUTOTUNE)


def validation_batches(inputs: np.ndarray, targets: np.ndarray, batch_size: int) -> Any:
    """The held-out slice in fixed order, cached as tensors (evaluated once per epoch)."""
    dataset = tf.data.Dataset.from_tensor_slices((inputs, targets)).batch(batch_size)
    return dataset.cache().prefetch(tf.data.AUTOTUNE)


@dataclass
class _TrainingState:
    """What must survive an interruption, besides the weights and the optimizer."""

    history: dict[str, list[float]] = field(default_factory=lambda: {"loss": [], "val_loss": []})
    best_epoch: int = 0
    best_val_loss: float = math.inf
    best_weights: list[np.ndarray] | None = None
    lr_reductions: list[int] = field(default_factory=list)  # epochs after which it was cut

    @property
    def epochs_done(self) -> int:
        return len(self.history["val_loss"])


@dataclass(frozen=True)
class ReduceLr:
    """Multiply the learning rate by `factor` after `patience` epochs without val_loss
    improvement, counted from the best epoch or the last reduction, whichever is later (as
    keras.callbacks.ReduceLROnPlateau with min_delta 0 and no cooldown)."""

    patience: int
    factor: float


class _Checkpointer(keras.callbacks.Callback):
    """Record each epoch, keep the best weights, stop early, reduce the learning rate on a
    plateau, checkpoint, and set the shuffle key.

    Early stopping and the plateau rule live here rather than in keras.callbacks.EarlyStopping
    and ReduceLROnPlateau because their state (best weights, epochs without improvement, the
    reductions so far) has to be checkpointed to survive a restart.
    """

    def __init__(
        self,
        state: _TrainingState,
        epoch_variable: tf.Variable,
        checkpoint: Path | None,
        key: str,
        patience: int | None,
        reduce_lr: ReduceLr | None = None,
    ) -> None:
        super().__init__()
        self.state = state
        self.epoch_variable = epoch_variable
        self.checkpoint = checkpoint
        self.key = key
        self.patience = patience
        self.reduce_lr = reduce_lr

    def on_epoch_begin(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.epoch_variable.assign(epoch)

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        logs = logs if logs is not None else {}
        state = self.state
        if self.reduce_lr is not None:
            # The rate this epoch ran at, as a curve (the dict is the one later callbacks get:
            # MLflow's per-epoch logging).
            logs["learning_rate"] = float(np.asarray(self.model.optimizer.learning_rate))
        # loss and val_loss, then whatever else the model logs (the VAE: its ELBO's terms).
        for name in ("loss", "val_loss", *sorted(set(logs) - {"loss", "val_loss"})):
            state.history.setdefault(name, []).append(float(logs[name]))
        val_loss = state.history["val_loss"][-1]
        if not math.isfinite(val_loss):
            self.model.stop_training = True  # fit() raises: a diverged model is no result
            return
        if val_loss < state.best_val_loss:
            state.best_val_loss, state.best_epoch = val_loss, epoch + 1
            if self.patience is not None:
                state.best_weights = [np.array(w) for w in self.model.get_weights()]
        if self.patience is not None and epoch + 1 - state.best_epoch >= self.patience:
            self.model.stop_training = True
        elif self.reduce_lr is not None:
            self._reduce_on_plateau(epoch + 1, self.reduce_lr)
        if self.checkpoint is not None:
            _save_checkpoint(self.checkpoint, self.key, self.model, state)

    def _reduce_on_plateau(self, done: int, rule: ReduceLr) -> None:
        state = self.state
        if done - max([state.best_epoch, *state.lr_reductions]) < rule.patience:
            return
        rate = self.model.optimizer.learning_rate
        old = float(np.asarray(rate))
        rate.assign(old * rule.factor)
        state.lr_reductions.append(done)
        log.info(
            "epoch %d: val_loss has not improved for %d epochs; learning rate %.3g -> %.3g",
            done,
            rule.patience,
            old,
            old * rule.factor,
        )


def _save_checkpoint(path: Path, key: str, model: keras.Model, state: _TrainingState) -> None:
    meta = {
        "format": _CHECKPOINT_FORMAT,
        "key": key,
        "history": state.history,
        "best_epoch": state.best_epoch,
        "best_val_loss": state.best_val_loss if state.best_epoch else None,
        "has_best_weights": state.best_weights is not None,
        "lr_reductions": state.lr_reductions,
    }
    arrays = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    arrays |= {f"weight_{i:04d}": np.asarray(w) for i, w in enumerate(model.get_weights())}
    for i, variable in enumerate(_random_state(model)):
        arrays[f"random_{i:04d}"] = np.asarray(variable)
    for i, variable in enumerate(model.optimizer.variables):
        arrays[f"optimizer_{i:04d}"] = np.asarray(variable)
    for i, weight in enumerate(state.best_weights or []):
        arrays[f"best_{i:04d}"] = weight
    io.save_arrays(path, arrays)  # one atomic file: never half old, half new


def _random_state(model: keras.Model) -> list[Any]:
    """The model's SeedGenerator states (the VAE's sampling noise): not weights, but a resumed
    run needs them to draw the noise an uninterrupted run would have drawn."""
    weights = {id(weight) for weight in model.weights}
    return [variable for variable in model.variables if id(variable) not in weights]


def _restore_checkpoint(
    path: Path, key: str, model: keras.Model, epochs: int
) -> _TrainingState | None:
    """Load a checkpoint into `model` (built and compiled); None if absent, not for this run,
    or holding more than `epochs` epochs (a run cannot be rewound)."""
    if not path.exists():
        return None
    try:
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        meta = json.loads(arrays["meta"].tobytes())
    except Exception as exc:  # a checkpoint is a cache: a damaged one is discarded, not fatal
        log.warning("ignoring unreadable checkpoint %s (%s); starting from epoch 1", path, exc)
        return None
    if meta.get("format") != _CHECKPOINT_FORMAT or meta.get("key") != key:
        log.info("ignoring checkpoint %s: it belongs to other params or inputs", path)
        return None
    done = len(meta["history"]["val_loss"])
    if done > epochs:
        log.info("ignoring checkpoint %s: it holds %d epochs, more than %d", path, done, epochs)
        return None

    def numbered(prefix: str) -> list[np.ndarray]:
        return [arrays[name] for name in sorted(arrays) if name.startswith(prefix)]

    model.optimizer.build(model.trainable_variables)
    weights, slots, random = numbered("weight_"), numbered("optimizer_"), numbered("random_")
    state_variables = [*model.optimizer.variables, *_random_state(model)]
    expected = [tuple(v.shape) for v in [*model.weights, *state_variables]]
    if len(weights) != len(model.weights) or [a.shape for a in weights + slots + random] != (
        expected
    ):
        log.warning("ignoring checkpoint %s: it does not match this model", path)
        return None
    model.set_weights(weights)
    for variable, value in zip(state_variables, slots + random, strict=True):
        variable.assign(value)
    state = _TrainingState(
        history={name: [float(v) for v in values] for name, values in meta["history"].items()},
        best_epoch=int(meta["best_epoch"]),
        best_val_loss=math.inf if meta["best_val_loss"] is None else meta["best_val_loss"],
        best_weights=numbered("best_") if meta["has_best_weights"] else None,
        lr_reductions=[int(epoch) for epoch in meta.get("lr_reductions", [])],
    )
    return state


def _compile(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    steps_per_execution: int,
    jit_compile: bool | str,
) -> None:
    """model.compile with binary cross-entropy, allowing XLA under op determinism.

    Keras turns `jit_compile=True` off whenever TF op determinism is on, because some ops have
    no deterministic XLA kernel. Our layers (Dense, Conv2D, pooling, upsampling) do: with
    XLA, training gives the same bits run after run (tested). So determinism is lifted for
    the compile call only; it is back on before the step function is traced and run.
    """
    lift = jit_compile is True and tf_config.is_op_determinism_enabled()
    if lift:
        tf_config.disable_op_determinism()
    try:
        model.compile(
            optimizer=optimizer,
            loss="binary_crossentropy",
            steps_per_execution=steps_per_execution,
            jit_compile=jit_compile,
        )
    finally:
        if lift:
            tf_config.enable_op_determinism()


def fit(
    model: keras.Model,
    inputs: np.ndarray,
    targets: np.ndarray,
    *,
    optimizer: str,
    learning_rate: float,
    epochs: int,
    batch_size: int,
    validation_samples: int,
    early_stopping_patience: int | None = None,
    reduce_lr_patience: int | None = None,
    reduce_lr_factor: float = 0.2,
    seed: int = 0,
    checkpoint: Path | str | None = None,
    resume_key: str = "",
    steps_per_execution: int = 1,
    jit_compile: bool | str = "auto",
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> FitResult:
    """Compile with binary cross-entropy and fit, validating on a held-out training slice.

    The test set is never used here: it is kept for the evaluate stage, so early stopping
    cannot select on it. With `reduce_lr_patience`, the learning rate is multiplied by
    `reduce_lr_factor` on each plateau of that many epochs (ReduceLr); the history then has a
    `learning_rate` curve. With `checkpoint`, progress is saved after every epoch and a matching
    checkpoint (same `resume_key`) is resumed from. The caller removes it (remove_checkpoint)
    once its outputs are written, so a kill while saving them does not lose the training.
    """
    (fit_inputs, fit_targets), (val_inputs, val_targets) = split_validation(
        inputs, targets, validation_samples
    )
    if batch_size > len(fit_inputs):
        raise ValueError(
            f"batch_size {batch_size} is larger than the {len(fit_inputs)} training samples "
            "left after the validation split"
        )
    replicas = model.distribute_strategy.num_replicas_in_sync
    if replicas > 1:
        # Keras 3 fails with either under a MirroredStrategy over several devices ("You must
        # feed a value for placeholder tensor", keras-team/keras#19246); both are speed only.
        if steps_per_execution > 1 or jit_compile is True:
            log.info(
                "training on %d replicas: 1 step per call and no XLA, whatever "
                "steps_per_execution and jit_compile say (keras-team/keras#19246)",
                replicas,
            )
        steps_per_execution, jit_compile = 1, False
    _compile(model, make_optimizer(optimizer, learning_rate), steps_per_execution, jit_compile)
    checkpoint_path = Path(checkpoint) if checkpoint is not None else None
    state = None
    if checkpoint_path is not None:
        state = _restore_checkpoint(checkpoint_path, resume_key, model, epochs)
    state = state or _TrainingState()
    resumed = state.epochs_done
    stopped_early = (
        early_stopping_patience is not None
        and resumed > 0
        and resumed - state.best_epoch >= early_stopping_patience
    )
    if resumed:
        log.info("resuming from checkpoint %s after epoch %d of %d", checkpoint, resumed, epochs)
    epoch_variable = tf.Variable(0, dtype=tf.int64, trainable=False)
    reduce_lr = (
        ReduceLr(reduce_lr_patience, reduce_lr_factor) if reduce_lr_patience is not None else None
    )
    recorder = _Checkpointer(
        state, epoch_variable, checkpoint_path, resume_key, early_stopping_patience, reduce_lr
    )
    if resumed < epochs and not stopped_early:
        model.fit(
            training_batches(fit_inputs, fit_targets, batch_size, seed, epoch_variable),
            epochs=epochs,
            initial_epoch=resumed,
            shuffle=False,  # the dataset shuffles, by (seed, epoch)
            validation_data=validation_batches(val_inputs, val_targets, max(batch_size, 1024)),
            callbacks=[recorder, *callbacks],
            verbose=2,
        )
    diverged = [i for i, value in enumerate(state.history["val_loss"]) if not math.isfinite(value)]
    if diverged:
        raise ValueError(
            f"training diverged: val_loss is {state.history['val_loss'][diverged[0]]} at epoch "
            f"{diverged[0] + 1}; lower the learning rate"
        )
    if early_stopping_patience is not None and state.best_weights is not None:
        model.set_weights(state.best_weights)
    best_epoch = state.best_epoch if early_stopping_patience is not None else state.epochs_done
    return FitResult(
        history=state.history,
        epochs_run=state.epochs_done,
        best_epoch=best_epoch,
        best_val_loss=state.history["val_loss"][best_epoch - 1],
        resumed_epochs=resumed,
    )
