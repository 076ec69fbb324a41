"""The one entry point every stage script goes through: validate params, run, fail cleanly."""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import NoReturn

from mnist_ae.config import Params, ParamsError, load_params

DEBUG_ENV = "MNIST_AE_DEBUG"


class StageTerminatedError(BaseException):
    """SIGTERM arrived. A BaseException, like KeyboardInterrupt, so no `except Exception`
    swallows it on the way out, while context managers still close (MLflow marks the run
    FAILED)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise StageTerminatedError


_INTERRUPTS = (signal.SIGINT, signal.SIGTERM)
_holding = False  # a held_signals block is active (nested blocks leave the holding to it)


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then act on them.

    For writes that must not stop halfway: an exception raised inside an SQLite transaction
    leaves MLflow's store locked for the rest of the process, so the run could not even be
    marked FAILED. A second signal while one is held acts at once (a hung server can still be
    left). An ignored signal stays ignored. Usable as a decorator; a no-op outside the main
    thread, where signals never land.
    """
    global _holding
    if _holding or threading.current_thread() is not threading.main_thread():
        yield  # nested: the outer block holds (and a second signal must still act at once)
        return
    _holding = True
    held = {sig: signal.getsignal(sig) for sig in _INTERRUPTS}
    held = {sig: handler for sig, handler in held.items() if handler is not signal.SIG_IGN}
    pending: list[int] = []

    def restore() -> None:
        for sig, handler in held.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)

    def hold(signum: int, frame: object) -> None:
        if pending:  # the second one: act now, as if nothing were held
            pending.clear()
            restore()
            signal.raise_signal(signum)
            return
        pending.append(signum)

    for sig in held:
        signal.signal(sig, hold)
    try:
        yield
    finally:
        _holding = False
        restore()
        if pending:
            signal.raise_signal(pending[0])  # handled now as if it had just arrived


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
    signal.signal(signal.SIGTERM, _raise_terminated)
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
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    logging.info("done in %.1f s, peak RSS %.0f MB", time.monotonic() - started, peak_mb)
    sys.exit(0)
