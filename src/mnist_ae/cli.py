"""The one entry point every stage script goes through: validate params, run, fail cleanly."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from mnist_ae.config import Params, ParamsError, load_params

DEBUG_ENV = "MNIST_AE_DEBUG"


def run_stage(
    stage: str, body: Callable[[Params], None], params_path: str = "params.yaml"
) -> NoReturn:
    """Validate params.yaml, run `body`, and turn any failure into one line and exit code != 0.

    Exit codes: 0 success, 2 invalid params, 1 any other error, 130 interrupted. Set
    MNIST_AE_DEBUG=1 to get the full traceback instead.
    """
    logging.basicConfig(level=logging.INFO, format=f"[{stage}] %(message)s")
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        params = load_params(params_path)
        body(params)
    except ParamsError as exc:
        print(f"{stage}: invalid params: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{stage}: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"{stage}: error: {message} (set {DEBUG_ENV}=1 for a traceback)", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)
