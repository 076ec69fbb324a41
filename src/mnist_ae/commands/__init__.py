"""The subcommands of `mnist-ae` (mnist_ae.main): one module each, imported only when the
command line is parsed, each providing `add_parser(subparsers)`."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any

MODULES = ("denoise", "sweep", "ui")


def add_parsers() -> Iterator[Callable[[Any], None]]:
    for name in MODULES:
        yield importlib.import_module(f"mnist_ae.commands.{name}").add_parser
