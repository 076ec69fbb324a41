"""Keep a stage's stderr readable: drop TensorFlow's native start-up chatter.

TensorFlow's C++ code logs through absl before absl's logging is initialised, which ignores
TF_CPP_MIN_LOG_LEVEL: every stage would print about nine lines ("oneDNN custom operations are
on", "Could not find cuda drivers", "failed call to cuInit", ...) that say nothing about the
stage, and would bury its one-line error. The filter routes file descriptor 2 through a pipe
and drops exactly those lines; everything else passes through unchanged, in order.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

NOISE = re.compile(
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|[IWE]\d{4} [\d:.]+ +\d+ (port|cudart_stub|cuda_platform|cuda_executor|cuda_dnn"
    rb"|cuda_fft|cuda_blas|cpu_feature_guard)\.cc:\d+\] .*"
)


def filter_native_stderr() -> None:
    """Route fd 2 through a filter thread until the process exits (idempotent)."""
    if getattr(filter_native_stderr, "installed", False):
        return
    filter_native_stderr.installed = True  # type: ignore[attr-defined]
    sys.stderr.flush()
    destination = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "rb") as source, os.fdopen(destination, "wb", 0) as sink:
            for line in source:
                if not NOISE.fullmatch(line.rstrip(b"\r\n")):
                    sink.write(line)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(os.dup(destination), 2)  # fd 2 leaves the pipe: the thread sees end-of-file
        thread.join(timeout=5)

    atexit.register(restore)
