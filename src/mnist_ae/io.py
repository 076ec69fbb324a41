"""Disk I/O for pipeline outputs: atomic, byte-deterministic writers and checked readers.

Every writer goes to a temporary file beside the target and renames it into place, so an
interrupted stage never leaves a half-written file that looks complete. Every writer is also
byte-deterministic (no timestamps), so identical contents give identical DVC hashes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Zip entries carry a modification time; a fixed one keeps archives byte-identical.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class CorruptInputError(ValueError):
    """An input file produced by an earlier stage is missing, truncated or malformed."""


@contextlib.contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent
    )
    os.close(handle)
    temporary = Path(name)
    # mkstemp makes it 0600; the result gets the permissions of any new file (umask applied).
    umask = os.umask(0o022)
    os.umask(umask)
    temporary.chmod(0o666 & ~umask)
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes(target: Path | str, payload: bytes) -> None:
    """Write bytes atomically."""
    with atomic_path(target) as temporary:
        temporary.write_bytes(payload)


def write_json(target: Path | str, payload: Mapping[str, Any]) -> None:
    """Write JSON atomically with sorted keys, so equal data gives equal bytes."""
    text = json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n"
    write_bytes(target, text.encode("utf-8"))


def read_json(path: Path | str) -> dict[str, Any]:
    """Read a JSON object written by an earlier stage."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorruptInputError(f"{path}: missing; run the stage that produces it") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptInputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise CorruptInputError(f"{path}: expected a JSON object")
    return payload


def write_text(target: Path | str, text: str) -> None:
    """Write UTF-8 text atomically."""
    write_bytes(target, text.encode("utf-8"))


def _csv_cell(value: float) -> str:
    """Integers as integers, floats at full precision (repr round-trips exactly)."""
    return str(value) if isinstance(value, int) else repr(float(value))


def write_table_csv(target: Path | str, rows: Sequence[Mapping[str, float]]) -> None:
    """Write rows of numbers as CSV, columns in the first row's order (a DVC plot source)."""
    if not rows:
        raise ValueError("no rows to write")
    columns = list(rows[0])
    lines = [",".join(columns)]
    for row in rows:
        if list(row) != columns:
            raise ValueError(f"row columns {list(row)} differ from {columns}")
        lines.append(",".join(_csv_cell(row[column]) for column in columns))
    write_text(target, "\n".join(lines) + "\n")


def read_table_csv(path: Path | str) -> list[dict[str, float]]:
    """Read a CSV of numbers with a header row, as written by `write_table_csv`."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").strip().splitlines()
        header = lines[0].split(",")
        rows = [[float(cell) for cell in line.split(",")] for line in lines[1:]]
    except FileNotFoundError:
        raise CorruptInputError(f"{path}: missing; run the stage that produces it") from None
    except (OSError, IndexError, ValueError, UnicodeDecodeError) as exc:
        raise CorruptInputError(f"{path}: not a CSV of numbers ({exc})") from None
    if not rows or any(len(row) != len(header) for row in rows):
        raise CorruptInputError(f"{path}: not a CSV of numbers (ragged or empty)")
    return [dict(zip(header, row, strict=True)) for row in rows]


def write_history_csv(target: Path | str, history: Mapping[str, Sequence[float]]) -> None:
    """Write a per-epoch training history as CSV with an `epoch` column (1-based)."""
    columns = sorted(history)
    lengths = {len(history[column]) for column in columns}
    if len(lengths) != 1:
        raise ValueError(f"history columns differ in length: {sorted(lengths)}")
    rows = [
        {"epoch": index + 1, **{column: history[column][index] for column in columns}}
        for index in range(lengths.pop())
    ]
    write_table_csv(target, rows)


def read_history_csv(path: Path | str) -> dict[str, list[float]]:
    """Read a history CSV written by `write_history_csv` (epoch column included)."""
    rows = read_table_csv(path)
    if "epoch" not in rows[0]:
        raise CorruptInputError(f"{path}: not a history CSV (no epoch column)")
    return {name: [row[name] for row in rows] for name in rows[0]}


def save_arrays(target: Path | str, arrays: Mapping[str, np.ndarray]) -> None:
    """Save arrays as an uncompressed .npz (np.load-compatible) with fixed zip timestamps.

    numpy.savez stamps each member with the current time, which would change the DVC hash of
    identical data; this writes the same format deterministically.
    """
    with (
        atomic_path(target) as temporary,
        zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_STORED) as archive,
    ):
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(
                    member, np.asarray(arrays[name], order="C"), allow_pickle=False
                )


def load_arrays(
    path: Path | str, expected: Mapping[str, tuple[np.dtype, tuple[int | None, ...]]]
) -> dict[str, np.ndarray]:
    """Load named arrays from an .npz and check each one's dtype and shape.

    `expected` maps a name to (dtype, shape) where None in the shape matches any length.
    """
    path = Path(path)
    try:
        # Our own handle: np.load leaves its file open when a damaged archive fails to open.
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as archive:
            missing = sorted(set(expected) - set(archive.files))
            if missing:
                raise CorruptInputError(f"{path}: missing arrays {missing}")
            arrays = {name: archive[name] for name in expected}
    except FileNotFoundError:
        raise CorruptInputError(f"{path}: missing; run the stage that produces it") from None
    except CorruptInputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise CorruptInputError(f"{path}: unreadable or truncated .npz ({exc})") from None
    for name, (dtype, shape) in expected.items():
        array = arrays[name]
        shape_ok = array.ndim == len(shape) and all(
            want is None or want == got for want, got in zip(shape, array.shape, strict=True)
        )
        if array.dtype != np.dtype(dtype) or not shape_ok:
            want_shape = tuple("N" if size is None else size for size in shape)
            raise CorruptInputError(
                f"{path}: array '{name}' should be {np.dtype(dtype)} of shape {want_shape}, "
                f"found {array.dtype} of shape {array.shape}"
            )
    return arrays


def _renumber_shared_objects(node: Any, numbering: dict[int, int]) -> Any:
    """Replace Keras' `shared_object_id` values (Python id()s, i.e. memory addresses) by
    1, 2, 3... in order of first appearance; equal ids stay equal, so sharing is preserved."""
    if isinstance(node, dict):
        renumbered = {}
        for key, value in node.items():
            if key == "shared_object_id" and isinstance(value, int):
                value = numbering.setdefault(value, len(numbering) + 1)
            else:
                value = _renumber_shared_objects(value, numbering)
            renumbered[key] = value
        return renumbered
    if isinstance(node, list):
        return [_renumber_shared_objects(value, numbering) for value in node]
    return node


def _normalised_keras_archive(source: Path) -> bytes:
    """Rewrite a .keras zip so identical weights give identical bytes.

    Removes the save date, renumbers the memory addresses Keras records as shared-object ids,
    and fixes every member's timestamp.
    """
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(source) as original,
        zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as normalised,
    ):
        for entry in original.infolist():
            payload = original.read(entry.filename)
            if entry.filename == "metadata.json":
                metadata = json.loads(payload)
                metadata.pop("date_saved", None)  # the only time-dependent field
                payload = json.dumps(metadata, sort_keys=True).encode("utf-8")
            elif entry.filename == "config.json":
                config = _renumber_shared_objects(json.loads(payload), {})
                payload = json.dumps(config).encode("utf-8")
            info = zipfile.ZipInfo(entry.filename, date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            normalised.writestr(info, payload)
    return buffer.getvalue()


def save_model(model: Any, target: Path | str) -> None:
    """Save a Keras model as a byte-deterministic .keras archive, atomically."""
    target = Path(target)
    with tempfile.TemporaryDirectory() as scratch:
        plain = Path(scratch) / "model.keras"
        model.save(plain)
        write_bytes(target, _normalised_keras_archive(plain))


def load_model(path: Path | str) -> Any:
    """Load a .keras model in safe mode (no arbitrary code), with a clear error if corrupt."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise CorruptInputError(f"{path}: missing; run the stage that produces it")
    if not zipfile.is_zipfile(path):
        raise CorruptInputError(f"{path}: not a .keras archive (not a zip file)")
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a damaged archive
        raise CorruptInputError(f"{path}: cannot load Keras model ({exc})") from None


def save_figure(figure: Any, target: Path | str, dpi: int) -> None:
    """Save a matplotlib figure as PNG atomically, without version/time metadata, and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(target) as temporary:
        figure.savefig(temporary, format="png", dpi=dpi, metadata={"Software": None})
    plt.close(figure)
