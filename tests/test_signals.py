"""Ctrl-C and SIGTERM held through a block (mnist_ae.signals), acted on when it ends."""

from __future__ import annotations

import os
import signal
import time

import pytest

from mnist_ae import signals


@pytest.mark.parametrize(
    ("sig", "expected"),
    [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, signals.StageTerminatedError)],
)
def test_held_signals_act_when_the_block_ends(sig: signal.Signals, expected: type) -> None:
    previous = signal.signal(signal.SIGTERM, signals.raise_terminated)  # as run_stage installs
    try:
        finished = False
        with pytest.raises(expected), signals.held_signals():
            os.kill(os.getpid(), sig)
            time.sleep(0.05)  # the handler has run by now
            finished = True
        assert finished
        reached = False
        # A second signal acts at once, also inside a nested block.
        with pytest.raises(expected), signals.held_signals(), signals.held_signals():
            os.kill(os.getpid(), sig)
            os.kill(os.getpid(), sig)
            time.sleep(0.05)
            reached = True
        assert not reached, "the second signal did not interrupt the block"
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_held_signals_leave_an_ignored_signal_ignored() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # e.g. a job started with `&`
    try:
        with signals.held_signals():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_an_interrupt_while_the_hold_starts_leaves_nothing_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C landing while held_signals installs its handlers: the block never starts, the
    handlers are back, and the next block holds again (it once stayed marked as holding)."""
    install = signal.signal

    def interrupted(signum: int, handler: object) -> object:
        monkeypatch.setattr(signal, "signal", install)  # only the first call is interrupted
        raise KeyboardInterrupt

    monkeypatch.setattr(signal, "signal", interrupted)
    with pytest.raises(KeyboardInterrupt), signals.held_signals():
        pytest.fail("the block ran")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert not signals._holding
    reached = False
    with pytest.raises(KeyboardInterrupt), signals.held_signals():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        reached = True  # held: the block goes on, and the interrupt acts when it ends
    assert reached
