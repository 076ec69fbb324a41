"""Ctrl-C and SIGTERM: a stage stops cleanly, and some writes are never cut in half."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class StageTerminatedError(BaseException):
    """SIGTERM arrived. A BaseException, like KeyboardInterrupt, so no `except Exception`
    swallows it on the way out, while context managers still close (MLflow marks the run
    FAILED)."""


def raise_terminated(signum: int, frame: object) -> None:
    """The SIGTERM handler of a stage: unwind like Ctrl-C does."""
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

    try:
        # Inside the try: a signal that lands while the handlers are being installed must not
        # leave `_holding` set, or every later block would take itself for a nested one and
        # hold nothing (seen once in CI: a later interrupt hit an SQLite write, which locked
        # the store).
        for sig in held:
            signal.signal(sig, hold)
        _holding = True
        yield
    finally:
        _holding = False
        restore()
        if pending:
            signal.raise_signal(pending[0])  # handled now as if it had just arrived
