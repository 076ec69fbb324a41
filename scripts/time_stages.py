"""Run `dvc repro` and report each stage's wall time and peak RSS (docs/benchmarks.md's numbers).

Usage: python scripts/time_stages.py [--force] [--json out.json]
Streams DVC's output unchanged and times each stage from its "Running stage" line to the next
(DVC's own bookkeeping included); the peak RSS is what each stage reports when it finishes
(`[stage] done in ... s, peak RSS ... MB`, from getrusage).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import time

STAGE_LINE = re.compile(r"^Running stage '([^']+)'")
DONE_LINE = re.compile(r"^\[([^\]]+)\] done in [\d.]+ s, peak RSS (\d+) MB")


def main() -> int:
    """Run dvc repro, print per-stage and total wall seconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="re-run every stage")
    parser.add_argument("--json", help="also write the timings to this JSON file")
    arguments = parser.parse_args()
    command = ["dvc", "repro", *(["--force"] if arguments.force else [])]
    started = time.monotonic()
    timings: dict[str, float] = {}
    peak_rss: dict[str, int] = {}
    current, current_start = None, started
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            done = DONE_LINE.match(line)
            if done:
                peak_rss[done.group(1)] = int(done.group(2))
            match = STAGE_LINE.match(line)
            if match:
                now = time.monotonic()
                if current:
                    timings[current] = now - current_start
                current, current_start = match.group(1), now
    end = time.monotonic()
    if current:
        timings[current] = end - current_start
    report = {
        "command": " ".join(command),
        "exit_code": process.returncode,
        "stages_seconds": {name: round(seconds, 1) for name, seconds in timings.items()},
        "stages_peak_rss_mb": peak_rss,
        "total_seconds": round(end - started, 1),
        "machine": f"{platform.processor() or platform.machine()}, {_cpu_count()} cores",
    }
    print(json.dumps(report, indent=2))
    if arguments.json:
        with open(arguments.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    return process.returncode


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


if __name__ == "__main__":
    sys.exit(main())
