"""Your own digit images as MNIST digits: read them safely, prepare them as MNIST's were made,
run a model on them and draw the before/after panel. Pillow and NumPy in, arrays and bytes
out: no file is written here, and no model is loaded.

MNIST's digits were made this way (LeCun et al.): the digit's bounding box scaled, keeping its
aspect ratio, to fit 20×20 pixels with anti-aliasing, then placed in a 28×28 frame so that its
centre of mass is at the centre. `prepare_digit` does the same to a greyscale photo or scan.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

SIDE = 28  # MNIST's frame
BOX = 20  # the longer side of an MNIST digit's bounding box
# Where MNIST puts the centre of mass (row and column index): measured 13.99 and 14.01 (standard
# deviation 0.29) on the 10,000 test digits.
CENTRE = 14.0
FORMATS = ("PNG", "JPEG", "BMP")  # what Pillow may open: fewer decoders, fewer surprises
# About 8,200 × 6,100: any camera's photo. Bigger is refused as a possible decompression bomb
# (a small file that decodes to gigabytes); Pillow's own limit is 89 million pixels.
MAX_PIXELS = 50_000_000
# The digit is found on a copy at most this long on its longer side (a 4,000-pixel photo has
# 16 million pixels to sort through, for a 20-pixel result); a digit smaller than 2 % of the
# photo's side would come out blurred.
WORK_SIDE = 1024
PREVIEW_SIDE = 512  # the original's copy kept for the panel
# Ink against paper, on a scale of 0 (none) to 1 (black on white): below this an image is blank.
# A flat image measures 0 and JPEG noise on white paper about 0.02; a faint pencil line 0.2.
MIN_CONTRAST = 0.1
# Ink blobs smaller than this fraction of the largest one are specks (dust, JPEG artefacts,
# a dotted line), not part of the digit: they would stretch its bounding box.
SPECK_FRACTION = 0.02


class ImageInputError(ValueError):
    """An input image that cannot be used; the message is one line and names the file."""


@dataclass(frozen=True)
class DigitImage:
    """One input image and the MNIST digit prepared from it."""

    path: Path
    size: tuple[int, int]  # the file's width and height, in pixels (after EXIF rotation)
    dark_on_light: bool  # inverted to white on black, as MNIST's digits are
    box: tuple[int, int, int, int]  # the digit's bounding box in the file: left, top, right, bottom
    preview: np.ndarray  # the image as RGB uint8, at most PREVIEW_SIDE long, for the panel
    digit: np.ndarray  # (28, 28) float32 in [0, 1], 1 = ink: what the models were trained on

    def describe(self) -> str:
        """E.g. '200×260 dark-on-light, digit 118×166 px'."""
        left, top, right, bottom = self.box
        polarity = "dark-on-light" if self.dark_on_light else "light-on-dark"
        return f"{self.size[0]}×{self.size[1]} {polarity}, digit {right - left}×{bottom - top} px"


def read_digit(path: Path | str) -> DigitImage:
    """Read an image file and prepare its digit; ImageInputError, naming the file, if unusable."""
    path = Path(path)
    image, size = _read(path)
    grey = _grey(image)
    try:
        digit, dark_on_light, box = prepare_digit(grey)
    except ValueError as exc:
        raise ImageInputError(f"{path}: {exc}") from None
    scale = size[0] / grey.shape[1], size[1] / grey.shape[0]  # working copy -> file pixels
    left, top, right, bottom = box
    box = (
        math.floor(left * scale[0]),
        math.floor(top * scale[1]),
        math.ceil(right * scale[0]),
        math.ceil(bottom * scale[1]),
    )
    return DigitImage(path, size, dark_on_light, box, _preview(image, grey), digit)


def _read(path: Path) -> tuple[Image.Image, tuple[int, int]]:
    """The decoded image, upright, alpha flattened onto white, at most WORK_SIDE long; and the
    file's own size (after EXIF rotation)."""
    if not path.exists():
        raise ImageInputError(f"{path}: no such file")
    if not path.is_file():
        raise ImageInputError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise ImageInputError(f"{path}: empty file")
    too_large = f"{path}: image too large (over {MAX_PIXELS // 1_000_000} megapixels)"
    try:
        with warnings.catch_warnings():
            # Pillow warns above 89 million pixels; the size is refused below, in one line.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(path, formats=FORMATS)
    except Image.DecompressionBombError:  # over twice Pillow's limit: it refuses to open it
        raise ImageInputError(f"{too_large}: a decompression bomb?") from None
    except UnidentifiedImageError:
        raise ImageInputError(f"{path}: not a PNG, JPEG or BMP image") from None
    except OSError as exc:
        raise ImageInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with opened:
        width, height = opened.size
        if width * height > MAX_PIXELS:
            raise ImageInputError(f"{too_large}: {width}×{height}, a decompression bomb?")
        try:
            opened.draft(None, (WORK_SIDE, WORK_SIDE))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
            opened.load()
            image = ImageOps.exif_transpose(opened)
        except Exception as exc:  # a damaged file can make Pillow's decoders raise almost anything
            message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ImageInputError(f"{path}: truncated or damaged image ({message})") from None
    if image.size != opened.size:  # turned a quarter by its EXIF orientation
        width, height = height, width
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    if max(image.size) > WORK_SIDE:
        image = image.copy()
        image.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.BOX)  # area average: ink kept
    return image, (width, height)


def _grey(image: Image.Image) -> np.ndarray:
    """Luminance as float32 in [0, 1], 0 = black."""
    if image.mode.startswith("I"):  # 16-bit greyscale PNG: Pillow's "L" would clip it
        return np.clip(np.asarray(image, dtype=np.float32) / 65535.0, 0.0, 1.0)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def _preview(image: Image.Image, grey: np.ndarray) -> np.ndarray:
    if image.mode.startswith("I"):
        image = Image.fromarray(np.rint(grey * 255).astype(np.uint8))
    preview = image.convert("RGB")
    preview.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.BOX)
    return np.asarray(preview)


def _otsu(values: np.ndarray) -> float | None:
    """Otsu's threshold between ink and paper (values in [0, 1]); None if all are alike."""
    counts, edges = np.histogram(values, bins=256, range=(0.0, 1.0))
    counts = counts.astype(np.float64)
    centres = (edges[:-1] + edges[1:]) / 2
    below = np.cumsum(counts)
    above = below[-1] - below
    sum_below = np.cumsum(counts * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_below = sum_below / below
        mean_above = (sum_below[-1] - sum_below) / above
        between = below * above * (mean_below - mean_above) ** 2
    between = np.nan_to_num(between, nan=0.0)
    if between.max() <= 0.0:
        return None
    return float(edges[int(np.argmax(between)) + 1])


def _border(grey: np.ndarray) -> np.ndarray:
    """The pixels of a ring 2 % of the shorter side wide (at least 1) around the image."""
    width = max(1, round(0.02 * min(grey.shape)))
    return np.concatenate(
        [
            grey[:width].ravel(),
            grey[-width:].ravel(),
            grey[:, :width].ravel(),
            grey[:, -width:].ravel(),
        ]
    )


def prepare_digit(grey: np.ndarray) -> tuple[np.ndarray, bool, tuple[int, int, int, int]]:
    """A greyscale image (0 = black) as an MNIST digit: (28×28 float32 in [0, 1] with 1 = ink,
    whether it was dark on light, the digit's box left, top, right, bottom); ValueError if blank.

    Inverted when the border is light; ink and paper told apart by Otsu's threshold, then the
    paper's level mapped to 0 and the ink's (the median of the ink pixels) to 1; cropped to the
    box of the pixels over half-way to the ink, less specks; the longer side scaled to 20 with
    Lanczos anti-aliasing; shifted by whole pixels so that its centre of mass is where MNIST has
    it, without cutting any of it off.
    """
    grey = np.asarray(grey, dtype=np.float32)
    if grey.ndim != 2 or grey.size == 0:
        raise ValueError(f"expected a 2-D greyscale image, found shape {grey.shape}")
    dark_on_light = float(np.median(_border(grey))) > 0.5
    ink = _ink(grey, dark_on_light)
    threshold = _otsu(ink)
    if threshold is None:
        raise ValueError("blank image: one flat colour, no digit")
    inked = ink > threshold
    paper, stroke = float(np.median(ink[~inked])), float(np.median(ink[inked]))
    contrast = stroke - paper
    if contrast < MIN_CONTRAST:
        raise ValueError(
            f"blank image: no digit (contrast {contrast:.2f}, at least {MIN_CONTRAST} needed)"
        )
    level = np.clip((ink - paper) / contrast, 0.0, 1.0)
    strong = level > 0.5
    strong = _without_specks(strong)
    rows, columns = np.flatnonzero(strong.any(axis=1)), np.flatnonzero(strong.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, columns[0], columns[-1] + 1
    crop = level[top:bottom, left:right] * _near(strong[top:bottom, left:right])
    digit = _fit_and_centre(crop)
    return digit, dark_on_light, (int(left), int(top), int(right), int(bottom))


def _ink(grey: np.ndarray, dark_on_light: bool) -> np.ndarray:
    """How far each pixel is from the paper around it, towards the ink: 0 on paper, even under
    a shadow or uneven light, whose slope would otherwise count as ink.

    The paper's level is a morphological closing (opening for light ink) over half the
    shorter side, wider than any stroke, so it erases the strokes and keeps the lighting.
    """
    from scipy import ndimage

    size = max(3, min(grey.shape) // 2)
    if dark_on_light:
        return np.clip(ndimage.grey_closing(grey, size=(size, size)) - grey, 0.0, 1.0)
    return np.clip(grey - ndimage.grey_opening(grey, size=(size, size)), 0.0, 1.0)


def _without_specks(strong: np.ndarray) -> np.ndarray:
    """`strong` less its blobs (8-connected) smaller than SPECK_FRACTION of the largest."""
    from scipy import ndimage

    labels, count = ndimage.label(strong, structure=np.ones((3, 3), dtype=bool))
    if count <= 1:
        return strong
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0  # the background
    keep = sizes >= SPECK_FRACTION * sizes.max()
    keep[0] = False
    return keep[labels]


def _near(strong: np.ndarray) -> np.ndarray:
    """1 within 2 % of the box's longer side of the digit's strong pixels, else 0: keeps the
    digit's anti-aliased edges and drops the faint halo of a removed speck inside the box."""
    from scipy import ndimage

    reach = max(1, round(0.02 * max(strong.shape)))
    grown = ndimage.binary_dilation(strong, structure=np.ones((3, 3), dtype=bool), iterations=reach)
    return grown.astype(np.float32)


def _fit_and_centre(crop: np.ndarray) -> np.ndarray:
    """The crop's longer side scaled to BOX, placed in the SIDE×SIDE frame by centre of mass."""
    height, width = crop.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    fitted = Image.fromarray(crop.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
    fitted = np.clip(np.asarray(fitted, dtype=np.float32), 0.0, 1.0)  # Lanczos overshoots a bit
    mass = fitted.sum()
    rows, columns = np.arange(fitted.shape[0]), np.arange(fitted.shape[1])
    centre_row = float(fitted.sum(axis=1) @ rows / mass) if mass > 0 else fitted.shape[0] / 2
    centre_column = float(fitted.sum(axis=0) @ columns / mass) if mass > 0 else fitted.shape[1] / 2
    top = min(max(math.floor(CENTRE - centre_row + 0.5), 0), SIDE - fitted.shape[0])
    left = min(max(math.floor(CENTRE - centre_column + 0.5), 0), SIDE - fitted.shape[1])
    digit = np.zeros((SIDE, SIDE), dtype=np.float32)
    digit[top : top + fitted.shape[0], left : left + fitted.shape[1]] = fitted
    return digit


def apply_model(model: Any, digits: np.ndarray) -> np.ndarray:
    """Run a Keras model taking MNIST digits flat (784) or as 28×28(×1) on (N, 28, 28) digits;
    its output as (N, 28, 28) float32 in [0, 1]. ValueError if it takes other inputs."""
    shape = tuple(getattr(model, "input_shape", (None,))[1:])
    batch = {
        (SIDE * SIDE,): digits.reshape(len(digits), SIDE * SIDE),
        (SIDE, SIDE): digits,
        (SIDE, SIDE, 1): digits.reshape(len(digits), SIDE, SIDE, 1),
    }.get(shape)
    if batch is None:
        raise ValueError(f"the model takes inputs of shape {shape}, not 28×28 MNIST digits")
    output = np.asarray(model.predict(batch, verbose=0))
    if output.size != digits.size:
        raise ValueError(f"the model returns shape {output.shape[1:]}, not a 28×28 digit")
    return np.clip(output.reshape(digits.shape), 0.0, 1.0).astype(np.float32)


def digit_png(digit: np.ndarray) -> bytes:
    """A 28×28 digit as an 8-bit greyscale PNG, white ink on black as in MNIST."""
    pixels = np.rint(np.clip(digit, 0.0, 1.0) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def digit_npy(digit: np.ndarray) -> bytes:
    """A 28×28 digit as .npy bytes (float32, 1 = ink), for np.load."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(digit, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def panel_png(item: DigitImage, steps: Sequence[tuple[str, np.ndarray]]) -> bytes:
    """The original (the digit's box drawn on it) beside each (title, 28×28 digit), as PNG."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    figure = Figure(figsize=(2.4 * (1 + len(steps)), 2.9), dpi=100, layout="constrained")
    axes = figure.subplots(1, 1 + len(steps))
    axes[0].imshow(item.preview)
    scale = item.preview.shape[1] / item.size[0]
    left, top, right, bottom = (value * scale - 0.5 for value in item.box)
    axes[0].add_patch(
        Rectangle((left, top), right - left, bottom - top, fill=False, edgecolor="red", lw=1)
    )
    axes[0].set_title("original", fontsize=10)
    for axis, (title, digit) in zip(axes[1:], steps, strict=True):
        axis.imshow(digit, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        axis.set_title(title, fontsize=10)
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(f"{item.path.name}: {item.describe()}", fontsize=9)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})  # no version: same bytes
    return buffer.getvalue()
