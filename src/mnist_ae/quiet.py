"""Keep a stage's stderr readable: drop TensorFlow's native start-up chatter.

TensorFlow's C++ code logs through absl before absl's logging is initialised, which ignores
TF_CPP_MIN_LOG_LEVEL: every stage would print about nine lines ("oneDNN custom operations are
on", "Could not find cuda drivers", "failed call to cuInit", ...) that say nothing about the
stage, and would bury its one-line error. The filter routes file descriptor 2 through a pipe
to a small child process that drops exactly those lines and passes everything else on, in
order. A separate process, not a thread: it needs no GIL, and if the stage dies abruptly it
still drains what the stage wrote last.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import sys

NOISE = (
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|[IWE]\d{4} [\d:.]+ +\d+ (port|cudart_stub|cuda_platform|cuda_executor|cuda_dnn"
    rb"|cuda_fft|cuda_blas|cpu_feature_guard)\.cc:\d+\] .*"
    # A tf.data graph attribute this TF build does not know; harmless (TF says so itself).
    rb"|E\d{4} [\d:.]+ +\d+ node_def_util\.cc:\d+\] NodeDef mentions attribute "
    rb"use_unbounded_threadpool .*"
    # oneDNN's notice that int32 ops use Eigen on CPUs without AVX-512 (ours): no action needed.
    rb"|E\d{4} [\d:.]+ +\d+ util\.cc:\d+\] oneDNN supports DT_INT32 only on platforms "
    rb"with AVX-512\..*"
)

_FILTER = f"""
import re, sys
noise = re.compile({NOISE!r})
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    if not noise.fullmatch(line.rstrip(b"\\r\\n")):
        out.write(line)
        out.flush()
"""


def filter_native_stderr() -> None:
    """Route fd 2 through the filter process until this process exits (idempotent)."""
    if getattr(filter_native_stderr, "installed", False):
        return
    filter_native_stderr.installed = True  # type: ignore[attr-defined]
    sys.stderr.flush()
    original = os.dup(2)  # the real stderr
    child = subprocess.Popen(
        [sys.executable, "-S", "-c", _FILTER],
        stdin=subprocess.PIPE,
        stdout=original,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C goes to the stage, not to the filter
    )
    os.dup2(child.stdin.fileno(), 2)
    child.stdin.close()  # fd 2 is now the pipe's only write end in this process

    def restore() -> None:
        sys.stderr.flush()
        os.dup2(original, 2)  # the filter sees end-of-file once subprocesses let go too
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)  # so its last lines come out before this process ends

    atexit.register(restore)
