"""The one entry point every stage script goes through: validate params, run, fail cleanly."""

from __future__ import annotations

import logging
import os
import resource
import signal
import sys
import time
from collections.abc import Callable
from typing import NoReturn

from mnist_ae.config import Params, ParamsError, load_params
from mnist_ae.signals import StageTerminatedError, raise_terminated

DEBUG_ENV = "MNIST_AE_DEBUG"


def run_stage(
    stage: str, body: Callable[[Params], None], params_path: str = "params.yaml"
) -> NoReturn:
    """Validate params.yaml, run `body`, and turn any failure into one line and exit code != 0.

    Exit codes: 0 success, 2 invalid params, 1 any other error, 130 Ctrl-C, 143 SIGTERM. Set
    MNIST_AE_DEBUG=1 to get the full traceback instead. Outputs are only ever replaced whole
    (atomic writes), and training stages checkpoint every epoch, so after an interruption the
    next `dvc repro` resumes where this one stopped.
    """
    logging.basicConfig(level=logging.INFO, format=f"[{stage}] %(message)s")
    for chatty in ("mlflow", "alembic"):  # e.g. "Creating initial MLflow database tables..."
        logging.getLogger(chatty).setLevel(logging.WARNING)
    debug = os.environ.get(DEBUG_ENV, "") not in ("", "0")
    signal.signal(signal.SIGTERM, raise_terminated)
    started = time.monotonic()
    try:
        params = load_params(params_path)
        body(params)
    except ParamsError as exc:
        print(f"{stage}: invalid params: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{stage}: interrupted by Ctrl-C; run it again to resume", file=sys.stderr)
        sys.exit(130)
    except StageTerminatedError:
        print(f"{stage}: terminated by SIGTERM; run it again to resume", file=sys.stderr)
        sys.exit(143)
    except Exception as exc:
        if debug:
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"{stage}: error: {message} (set {DEBUG_ENV}=1 for a traceback)", file=sys.stderr)
        sys.exit(1)
    # Read by scripts/time_stages.py (the benchmark's per-stage wall time and peak memory).
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB; bytes on macOS
    peak_mb = peak_rss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    logging.info("done in %.1f s, peak RSS %.0f MB", time.monotonic() - started, peak_mb)
    sys.exit(0)
