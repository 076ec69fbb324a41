"""`mnist-ae`: the project's command for using what the pipeline trained.

Each subcommand lives in its own module, which provides `add_parser(subparsers)` (registering
its arguments and setting `handler`) and returns an exit code from the handler.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mnist-ae",
        description="Use the models the MNIST autoencoder pipeline trained.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from mnist_ae.commands import add_parsers

    for add_parser in add_parsers():
        add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
