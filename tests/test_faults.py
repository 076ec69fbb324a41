"""Faults end to end, on copies of the shrunk repository: a training stage killed mid-epoch
(SIGTERM, SIGKILL, Ctrl-C) and resumed by the next `dvc repro`; corrupt inputs between stages;
an unreachable tracking server. Real subprocesses, real signals."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from mnist_ae import artifacts, io
from pipeline_repo import (
    CHECKPOINT,
    OUTPUTS,
    SIGNAL_AFTER_EPOCH,
    UNENDING,
    Pipeline,
    checkpointed_epochs,
    start_unending_training,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def long_conv(pristine: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """A copy whose conv denoiser trains without early stopping, so a run of 10,000 epochs
    cannot end before the signal lands, on any machine."""
    pipe = pristine.clone(tmp_path_factory.mktemp("faults") / "repo")
    pipe.edit_params("train_conv", "early_stopping_patience", None)
    return pipe


def _interrupt_training(pipe: Pipeline, sig: signal.Signals) -> tuple[int, str]:
    """Start training for UNENDING epochs, wait until its checkpoint holds SIGNAL_AFTER_EPOCH
    epochs, then signal the stage process (for SIGINT: the whole process group, as Ctrl-C in a
    terminal does). Returns the epochs checkpointed and dvc's stderr."""
    process = start_unending_training(pipe)
    checkpoint = pipe.root / CHECKPOINT
    try:
        # The stage is DVC's own child: `exec` in its command leaves no shell in between.
        stage = [
            child
            for child in psutil.Process(process.pid).children()
            if "stages/train_conv.py" in child.cmdline()
        ]
        assert len(stage) == 1, psutil.Process(process.pid).children(recursive=True)
        if sig == signal.SIGINT:
            os.killpg(process.pid, signal.SIGINT)
        else:
            stage[0].send_signal(sig)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:  # a failed check must not leave a run behind for the next
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode != 0
    done = checkpointed_epochs(checkpoint)
    assert SIGNAL_AFTER_EPOCH <= done < UNENDING
    return done, stderr


def _resume(pipe: Pipeline, done: int) -> int:
    """Resume to two epochs more than were done (the checkpoint resumes to any total); return
    the total. --force: an earlier test may have left dvc.lock with the same epoch count."""
    epochs = done + 2
    pipe.edit_params("train_conv", "epochs", epochs)
    ran, result = pipe.repro("--force", "--single-item", "train_conv")
    assert ran == ["train_conv"]
    resumed = f"resuming from checkpoint {pipe.root / CHECKPOINT} after epoch {done} of {epochs}"
    assert resumed in result.stderr
    assert not (pipe.root / CHECKPOINT).exists()
    history = io.read_history_csv(artifacts.CONV_HISTORY.at(pipe.root))
    assert len(history["val_loss"]) == epochs
    io.load_model(artifacts.CONV_DENOISER.at(pipe.root))  # a valid model
    run = pipe.runs()[-1]
    assert run.info.status == "FINISHED"
    assert run.data.tags["conv.resumed_after_epoch"] == str(done)
    steps = [m.step for m in pipe.client().get_metric_history(run.info.run_id, "conv.val_loss")]
    assert sorted(steps) == list(range(1, epochs + 1))
    return epochs


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_print_one_line_and_the_next_repro_resumes(
    long_conv: Pipeline, sig: signal.Signals
) -> None:
    done, stderr = _interrupt_training(long_conv, sig)
    assert "Traceback" not in stderr
    expected = {
        signal.SIGTERM: "train_conv: terminated by SIGTERM; run it again to resume",
        signal.SIGINT: "train_conv: interrupted by Ctrl-C; run it again to resume",
    }[sig]
    stage_lines = [line for line in stderr.splitlines() if line.startswith("train_conv:")]
    assert stage_lines == [expected], stderr
    _resume(long_conv, done)


def test_sigkill_then_repro_resumes_to_the_same_model_as_an_uninterrupted_run(
    long_conv: Pipeline,
) -> None:
    done, _ = _interrupt_training(long_conv, signal.SIGKILL)
    _resume(long_conv, done)
    resumed = artifacts.CONV_DENOISER.at(long_conv.root).read_bytes()
    ran, _ = long_conv.repro("--force", "--single-item", "train_conv")
    assert ran == ["train_conv"]
    assert artifacts.CONV_DENOISER.at(long_conv.root).read_bytes() == resumed


def _digests(root: Path) -> dict[str, str]:
    return {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in OUTPUTS}


def _run_stage(pipe: Pipeline, stage: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, f"stages/{stage}.py"],
        cwd=pipe.root,
        env={**pipe.env, "PYTHONPATH": "src", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _wrong_dtype(path: Path) -> None:
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["x_train"] = arrays["x_train"].astype(np.float64)
    io.save_arrays(path, arrays)


def _wrong_shape(path: Path) -> None:
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["x_train_noisy"] = arrays["x_train_noisy"][:, :27]
    io.save_arrays(path, arrays)


def _not_a_zip(path: Path) -> None:
    path.write_text("not a keras archive")


@pytest.mark.parametrize(
    ("stage", "damaged", "damage", "message"),
    [
        (
            "train_conv",
            artifacts.NOISY.path,
            _truncate,
            "data/noisy.npz: unreadable or truncated .npz",
        ),
        ("train_dense", artifacts.MNIST.path, _wrong_dtype, "array 'x_train' should be uint8"),
        (
            "train_conv",
            artifacts.NOISY.path,
            _wrong_shape,
            "array 'x_train_noisy' should be float32",
        ),
        ("evaluate", artifacts.CONV_DENOISER.path, _not_a_zip, "models/conv_denoiser.keras"),
    ],
)
def test_corrupt_input_fails_in_one_line_and_touches_no_output(
    pristine: Pipeline, tmp_path: Path, stage: str, damaged: str, damage, message: str
) -> None:
    pipe = pristine.clone(tmp_path / "repo")
    damage(pipe.root / damaged)
    before = _digests(pipe.root)
    result = _run_stage(pipe, stage)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{stage}: error: "), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert _digests(pipe.root) == before


def test_unreachable_tracking_server_fails_fast_before_training(
    pristine: Pipeline, tmp_path: Path
) -> None:
    pipe = pristine.clone(tmp_path / "repo")
    before = _digests(pipe.root)
    with socket_closed_port() as port:
        started = time.monotonic()
        result = _run_stage(pipe, "train_conv", MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}")
        elapsed = time.monotonic() - started
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        f"train_conv: error: MLflow tracking server http://127.0.0.1:{port} is unreachable "
        "([Errno 111] Connection refused); start it or unset MLFLOW_TRACKING_URI "
        "(set MNIST_AE_DEBUG=1 for a traceback)"
    ]
    assert "Epoch 1/" not in result.stdout  # no training started
    assert not (pipe.root / CHECKPOINT).exists()
    assert _digests(pipe.root) == before
    # Importing TensorFlow dominates; MLflow's own retries would take minutes.
    assert elapsed < 60


class socket_closed_port:  # noqa: N801 (used as a context manager)
    """A local TCP port that nothing listens on, for as long as the block runs."""

    def __enter__(self) -> int:
        import socket

        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        return self.socket.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self.socket.close()
