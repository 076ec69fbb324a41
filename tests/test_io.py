"""Atomic, deterministic writers and checked readers."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from mnist_ae import io, models, training


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_npz_is_deterministic_and_numpy_readable(tmp_path: Path) -> None:
    arrays = {"x": np.arange(12, dtype=np.uint8).reshape(3, 4), "y": np.ones(3, np.float32)}
    io.save_arrays(tmp_path / "a.npz", arrays)
    io.save_arrays(tmp_path / "b.npz", arrays)
    assert _digest(tmp_path / "a.npz") == _digest(tmp_path / "b.npz")
    with np.load(tmp_path / "a.npz") as loaded:
        np.testing.assert_array_equal(loaded["x"], arrays["x"])


def test_load_arrays_checks_dtype_shape_and_truncation(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    io.save_arrays(path, {"x": np.zeros((2, 28, 28), np.float64)})
    with pytest.raises(io.CorruptInputError, match="should be float32 of shape \\('N', 28, 28\\)"):
        io.load_arrays(path, {"x": (np.float32, (None, 28, 28))})
    with pytest.raises(io.CorruptInputError, match="missing arrays \\['y'\\]"):
        io.load_arrays(path, {"y": (np.float64, (None,))})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(io.CorruptInputError, match="unreadable or truncated"):
        io.load_arrays(path, {"x": (np.float64, (None, 28, 28))})
    with pytest.raises(io.CorruptInputError, match="missing; run the stage"):
        io.load_arrays(tmp_path / "absent.npz", {"x": (np.float64, (None,))})


def test_atomic_write_leaves_target_untouched_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    io.write_json(target, {"a": 1})
    before = target.read_bytes()
    with pytest.raises(RuntimeError), io.atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.json"]


def test_atomic_writes_get_a_new_files_permissions(tmp_path: Path) -> None:
    """Not mkstemp's owner-only 0600: what any new file gets under the umask."""
    previous = os.umask(0o027)
    try:
        io.write_bytes(tmp_path / "result.png", b"png")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "result.png").stat().st_mode) == 0o640


def test_keras_archive_is_byte_identical_for_identical_weights(tmp_path: Path) -> None:
    paths = []
    for attempt in range(2):  # rebuilt from scratch: new Python object ids each time
        training.make_deterministic(3)
        autoencoder, _, _decoder = models.build_dense_autoencoder(8)
        path = tmp_path / f"ae{attempt}.keras"
        io.save_model(autoencoder, path)
        paths.append(path)
    assert _digest(paths[0]) == _digest(paths[1])
    loaded = io.load_model(paths[0])
    np.testing.assert_array_equal(loaded.get_weights()[0], autoencoder.get_weights()[0])


def test_load_model_refuses_non_zip(tmp_path: Path) -> None:
    bogus = tmp_path / "model.keras"
    bogus.write_text("not a model")
    with pytest.raises(io.CorruptInputError, match=r"not a \.keras archive"):
        io.load_model(bogus)


def test_history_csv_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "history.csv"
    io.write_history_csv(path, {"loss": [0.5, 0.25], "val_loss": [0.6, 0.3]})
    assert path.read_text().splitlines()[0] == "epoch,loss,val_loss"
    assert io.read_history_csv(path) == {
        "epoch": [1, 2],
        "loss": [0.5, 0.25],
        "val_loss": [0.6, 0.3],
    }
