"""`python -m mnist_ae.sweep_guard WORKER_PID COMMAND...`: run a sweep trial's command, and
kill it with everything it started if the Dask worker process that ran it dies first.

A trial's commands run in a process group of their own (so that stopping a trial stops all of
them). Were its worker lost, they would go on, and push, beside the trial's re-run on another
worker. This guard is the group's leader: it runs the command and, every POLL_SECONDS, checks
that its parent is still the worker; once it is not (re-parented: the worker died), it kills
the whole group, itself included. Standard library only, to start fast.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

POLL_SECONDS = 1.0


def guard(worker: int, command: list[str]) -> int:
    child = subprocess.Popen(command)
    while True:
        try:
            return child.wait(timeout=POLL_SECONDS)
        except subprocess.TimeoutExpired:
            if os.getppid() != worker:  # re-parented: the worker process is gone
                os.killpg(0, signal.SIGKILL)


if __name__ == "__main__":
    if len(sys.argv) < 3 or not sys.argv[1].isdigit():
        sys.exit("usage: python -m mnist_ae.sweep_guard WORKER_PID COMMAND...")
    sys.exit(guard(int(sys.argv[1]), sys.argv[2:]))
