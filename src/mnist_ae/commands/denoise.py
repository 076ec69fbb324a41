"""`mnist-ae denoise` and `mnist-ae reconstruct`: the trained models on your own digit images.

Each IMAGE (PNG, JPEG or BMP: a photo or scan of one digit, any size, dark on light or light on
dark) is prepared as MNIST's digits were (mnist_ae.images), noised if --add-noise says so, and
run through the model: the conv denoiser for `denoise`, the dense autoencoder for
`reconstruct`. For an input STEM.jpg, --out gets STEM.panel.png (the original, the digit as
MNIST, noisy, the result, side by side) and the 28×28 result as STEM.denoised.png (white ink on
black, as MNIST) and STEM.denoised.npy (float32, 1 = ink); `reconstruct` writes
STEM.reconstructed.*. One summary line per image goes to stdout.

Every input is read and the model loaded before anything is written, so a bad input writes
nothing; each file is written atomically. Exit codes: 0 done, 1 an error (one line on stderr
naming the file), 2 bad arguments, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_ae import artifacts, images
from mnist_ae.cli import command_error, debugging, first_line, quiet_libraries
from mnist_ae.io import CorruptInputError, write_bytes
from mnist_ae.io import load_model as load_keras_model
from mnist_ae.noise import add_gaussian_noise
from mnist_ae.tracking.store import TrackingUnavailableError

# An MLflow model URI (models:/…, runs:/…, file:///…, s3://…): a scheme of two or more letters.
URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")
PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


class DenoiseError(RuntimeError):
    """What went wrong, in one line that names the file or model."""


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, the model it uses by default, and what it calls its result."""

    name: str
    summary: str
    model: artifacts.KerasModel  # the workspace's trained model, the default
    registered: str  # its name in the MLflow Model Registry (params.yaml tracking.registry)
    logged: str  # its name in a run's logged models
    result: str  # "denoised": out/STEM.denoised.png


COMMANDS = (
    Command(
        "denoise",
        "denoise your own digit images with the conv denoiser",
        artifacts.CONV_DENOISER,
        "mnist-conv-denoiser",
        "conv_denoiser",
        "denoised",
    ),
    Command(
        "reconstruct",
        "reconstruct your own digit images with the dense autoencoder",
        artifacts.DENSE_AUTOENCODER,
        "mnist-dense-autoencoder",
        "dense_autoencoder",
        "reconstructed",
    ),
)


@dataclass(frozen=True)
class Outputs:
    """The three files written for one input."""

    panel: Path
    digit_png: Path
    digit_npy: Path


def add_parser(subparsers: Any) -> None:
    for command in COMMANDS:
        parser = subparsers.add_parser(
            command.name,
            help=command.summary,
            description=(
                f"{command.summary[0].upper()}{command.summary[1:]}: each IMAGE is prepared as "
                "MNIST's digits were (greyscale, inverted if the paper is light, cropped to the "
                "digit, its longer side scaled to 20 pixels, centred by mass in 28×28) and run "
                f"through the model. For IMAGE STEM.jpg, DIR gets STEM.panel.png (original, as "
                f"MNIST, noisy, {command.result}) and the 28×28 result as "
                f"STEM.{command.result}.png and .npy. Every input is checked and the model "
                "loaded before anything is written."
            ),
        )
        parser.add_argument(
            "images",
            nargs="+",
            type=Path,
            metavar="IMAGE",
            help="a PNG, JPEG or BMP of one digit: a photo, scan or drawing, any size",
        )
        parser.add_argument(
            "--out",
            required=True,
            type=Path,
            metavar="DIR",
            help="folder for the results, created if missing (existing results are replaced; "
            "an input never is)",
        )
        parser.add_argument(
            "--model",
            metavar="MODEL",
            help=f"a .keras file, an MLflow model folder, or an MLflow model URI such as "
            f"models:/{command.registered}@champion or runs:/RUN_ID/{command.logged}, looked "
            "up in the project's tracking store (mlflow.db, or MLFLOW_TRACKING_URI); default: "
            f"{command.model.path} in the current directory",
        )
        parser.add_argument(
            "--add-noise",
            type=_noise_factor,
            metavar="F",
            help="first add Gaussian noise of standard deviation F to the prepared digit "
            "(the pipeline trains on 0.5), to see a clean drawing denoised",
        )
        parser.add_argument(
            "--seed",
            type=_seed,
            default=0,
            help="the noise's seed: each image's noise is numpy's default_rng(SEED) "
            "(default %(default)s)",
        )
        parser.set_defaults(handler=functools.partial(run, command))


def _noise_factor(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a noise factor > 0 such as 0.5, found {text!r}")
    return value


def _seed(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, found {text!r}")
    return int(text)


def run(command: Command, args: argparse.Namespace) -> int:
    """The handler of `mnist-ae denoise` and `reconstruct`: an exit code, errors as one line."""
    quiet_libraries()
    try:
        planned = plan_outputs(args.images, args.out, command.result)
        inputs = [images.read_digit(path) for path in args.images]  # all checked, none written
        model_name = args.model or command.model.path
        model = load_model(args.model, command)
        digits = np.stack([item.digit for item in inputs])
        noisy = None
        if args.add_noise is not None:
            # The same stream for each image: its noise does not depend on the other inputs.
            noisy = np.stack(
                [
                    add_gaussian_noise(digit, args.add_noise, np.random.default_rng(args.seed))
                    for digit in digits
                ]
            )
        try:
            results = images.apply_model(model, digits if noisy is None else noisy)
        except ValueError as exc:
            raise DenoiseError(f"{model_name}: {exc}") from None
        # Everything rendered in memory first: a failure here still writes nothing.
        payloads = [
            _payloads(
                planned[index],
                item,
                None if noisy is None else noisy[index],
                results[index],
                command.result,
                args.add_noise,
            )
            for index, item in enumerate(inputs)
        ]
        noise = "" if noisy is None else f", noise {args.add_noise:g} (seed {args.seed})"
        for item, outputs, files in zip(inputs, planned, payloads, strict=True):
            for path, payload in files.items():
                try:
                    write_bytes(path, payload)
                except OSError as exc:
                    raise DenoiseError(f"{path}: cannot write ({exc.strerror or exc})") from None
            print(
                f"{item.path}: {item.describe()}{noise} → {outputs.digit_png} "
                f"(+ .npy, panel {outputs.panel})",
                flush=True,
            )
        return 0
    except KeyboardInterrupt:
        print(f"mnist-ae {command.name}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        explained = (DenoiseError, images.ImageInputError, CorruptInputError)
        return command_error(
            f"mnist-ae {command.name}", exc, (*explained, TrackingUnavailableError)
        )


def _payloads(
    outputs: Outputs,
    item: images.DigitImage,
    noisy: np.ndarray | None,
    result: np.ndarray,
    result_name: str,
    noise_factor: float | None,
) -> dict[Path, bytes]:
    """The three files of one input, rendered: its panel and its 28×28 result."""
    steps = [("as MNIST", item.digit)]
    if noisy is not None:
        steps.append((f"noise {noise_factor:g}", noisy))
    steps.append((result_name, result))
    return {
        outputs.panel: images.panel_png(item, steps),
        outputs.digit_png: images.digit_png(result),
        outputs.digit_npy: images.digit_npy(result),
    }


def plan_outputs(inputs: list[Path], out: Path, result: str) -> list[Outputs]:
    """Where each input's results go in `out`; DenoiseError if two inputs would write the same
    files, if a result would overwrite an input, or if `out` is not a folder."""
    if out.exists() and not out.is_dir():
        raise DenoiseError(f"{out}: --out must be a folder, and this is a file")
    by_stem: dict[str, Path] = {}
    planned = []
    for path in inputs:
        if path.stem in by_stem:
            raise DenoiseError(
                f"{by_stem[path.stem]} and {path}: both would write {out / path.stem}.*; rename one"
            )
        by_stem[path.stem] = path
        planned.append(
            Outputs(
                panel=out / f"{path.stem}.panel.png",
                digit_png=out / f"{path.stem}.{result}.png",
                digit_npy=out / f"{path.stem}.{result}.npy",
            )
        )
    sources = {path.resolve(): path for path in inputs}
    for outputs in planned:
        for target in (outputs.panel, outputs.digit_png, outputs.digit_npy):
            if target.resolve() in sources:
                raise DenoiseError(
                    f"{sources[target.resolve()]}: an input, would be overwritten by a result; "
                    "choose another --out"
                )
    return planned


def load_model(source: str | None, command: Command) -> Any:
    """The Keras model named by --model (a .keras file, an MLflow model folder or URI), or the
    workspace's trained one; DenoiseError or CorruptInputError, in one line, if it cannot."""
    _quiet_tensorflow()
    if source is None:
        path = Path.cwd() / command.model.path
        if not path.is_file():
            raise DenoiseError(
                f"{command.model.path}: no trained model here; run `dvc repro` (or `dvc pull`) "
                f"in the project, or pass --model models:/{command.registered}@champion"
            )
        return load_keras_model(path)
    path = Path(source)
    if path.is_dir():
        if not (path / "MLmodel").is_file():
            raise DenoiseError(f"{source}: a folder, but not an MLflow model (no MLmodel file)")
        import mlflow.keras

        try:
            return mlflow.keras.load_model(str(path))
        except Exception as exc:
            raise DenoiseError(
                f"{source}: cannot load the MLflow model ({first_line(exc)})"
            ) from None
    if path.exists():
        return load_keras_model(path)
    if URI_SCHEME.match(source):
        return _load_mlflow_uri(source)
    raise DenoiseError(f"{source}: no such model file, and not an MLflow model URI")


def _load_mlflow_uri(uri: str) -> Any:
    """A model from an MLflow URI, resolved against the project's tracking store."""
    import mlflow.keras

    from mnist_ae.tracking.store import (
        check_reachable,
        configure_http_client,
        display_uri,
        global_tracking_uri,
        is_http,
        server_problem,
        sqlite_database,
        tracking_uri,
    )

    store = tracking_uri()
    if is_http(store):
        configure_http_client()
        check_reachable(store)  # a server that is down fails in seconds, not minutes of retries
    database = sqlite_database(store)
    if database is not None and not database.is_file():  # MLflow would create an empty one
        raise DenoiseError(
            f"{uri}: no MLflow store at {display_uri(store)}; run the pipeline first, or set "
            "MLFLOW_TRACKING_URI"
        )
    with (
        tempfile.TemporaryDirectory(prefix="mnist-ae-model-") as scratch,
        # Global: MLflow 3.17 resolves runs:/ID/NAME through its global URI, whatever URI it is
        # given; the registry follows the tracking URI, as for the pipeline's registering client.
        global_tracking_uri(store),
        _without_progress_bars(),
    ):
        try:
            return mlflow.keras.load_model(uri, dst_path=scratch)
        except Exception as exc:
            problem = server_problem(store) if is_http(store) else None  # down since the check?
            if problem is not None:
                raise TrackingUnavailableError(problem) from None
            raise DenoiseError(
                f"{uri}: cannot load the model from {display_uri(store)} ({first_line(exc, 200)})"
            ) from None


@contextlib.contextmanager
def _without_progress_bars() -> Iterator[None]:
    """No "Downloading artifacts: 100%|..." bar while a model downloads: not one line."""
    saved = os.environ.get(PROGRESS_BAR_ENV)
    os.environ[PROGRESS_BAR_ENV] = "false"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(PROGRESS_BAR_ENV, None)
        else:
            os.environ[PROGRESS_BAR_ENV] = saved


def _quiet_tensorflow() -> None:
    """Filter TensorFlow's native start-up lines out of stderr (mnist_ae.quiet), which would
    bury a one-line error; only when this process is about to import it for the first time."""
    if "tensorflow" in sys.modules or debugging():
        return
    from mnist_ae.quiet import filter_native_stderr

    filter_native_stderr()
