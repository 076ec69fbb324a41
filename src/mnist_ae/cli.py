"""The one entry point every stage script goes through: validate params, run, fail cleanly."""

from __future__ import annotations

import logging
import os
import re
import resource
import signal
import sys
import time
from collections.abc import Callable
from typing import NoReturn

from mnist_ae.config import Params, ParamsError, load_params
from mnist_ae.signals import StageTerminatedError, raise_terminated

DEBUG_ENV = "MNIST_AE_DEBUG"
# user:password@ in a URL that an error message quotes (MLflow's do): up to the last "@"
# before the path, since a password may hold a raw "@".
_URL_USERINFO = re.compile(r"([a-zA-Z][\w+.-]*://)[^/\s]*@")


def debugging() -> bool:
    """Whether MNIST_AE_DEBUG asks for tracebacks instead of one-line errors."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def first_line(error: BaseException, limit: int = 300) -> str:
    """An error's first line for a one-line message: URL credentials removed, at most `limit`
    characters; the exception's type when it has no message."""
    line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    line = _URL_USERINFO.sub(r"\1", line)
    return line if len(line) <= limit else line[: limit - 3] + "..."


def quiet_libraries() -> None:
    """Only MLflow's and Alembic's warnings and errors, not their progress lines ("Creating
    initial MLflow database tables...")."""
    for chatty in ("mlflow", "alembic"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


def command_error(command: str, error: Exception, explained: tuple[type, ...] = ()) -> int:
    """Print a command's error as one line on stderr and return exit code 1; an error of an
    `explained` type says all, others get the traceback hint. Re-raised under MNIST_AE_DEBUG."""
    if debugging():
        raise error
    if isinstance(error, explained):
        print(f"{command}: error: {first_line(error)}", file=sys.stderr)
    else:
        print(
            f"{command}: error: {first_line(error)} (set {DEBUG_ENV}=1 for a traceback)",
            file=sys.stderr,
        )
    return 1


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
    quiet_libraries()
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
        sys.exit(command_error(stage, exc))
    # Read by scripts/time_stages.py (the benchmark's per-stage wall time and peak memory).
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB; bytes on macOS
    peak_mb = peak_rss / (1024 * 1024 if sys.platform == "darwin" else 1024)
    logging.info("done in %.1f s, peak RSS %.0f MB", time.monotonic() - started, peak_mb)
    sys.exit(0)
