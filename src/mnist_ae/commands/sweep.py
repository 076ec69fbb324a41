"""`mnist-ae sweep FILE`: run a sweep of DVC experiments on a Dask cluster, or locally.

`--cluster tcp://HOST:8786` submits every trial to that Dask scheduler; each runs on a worker
in its own clone of the repository's `origin` and pushes its experiment there
(mnist_ae.sweep). `--local -j N` runs N trials at a time on this machine, in clones of this
repository that share its DVC cache, and brings the experiments back into it. Either way the
command waits, shows progress on stderr and prints a table of params and headline metrics.

Exit codes: 0 every trial finished, 1 a trial failed or the sweep could not start (one line on
stderr), 130 Ctrl-C (queued trials cancelled, running ones stopped; the table says which
finished).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mnist_ae import sweep
from mnist_ae.cli import command_error


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="run a sweep of DVC experiments on a Dask cluster or locally",
        description=(
            "Run every trial of a sweep file as a DVC experiment (`dvc exp run -n NAME-i -S "
            "...`), on the workers of a Dask scheduler (--cluster) or on this machine "
            "(--local), and print each trial's params and headline metrics."
        ),
    )
    parser.add_argument("file", type=Path, help="the sweep file (YAML: name, grid, trials)")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="the Dask scheduler, e.g. tcp://scheduler.example.org:8786",
    )
    where.add_argument("--local", action="store_true", help="run on this machine, no cluster")
    parser.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=1,
        help="with --local: trials at a time (default 1)",
    )
    parser.add_argument(
        "--repo",
        type=Path,
        default=Path.cwd(),
        help="the repository (default: the current directory)",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        print("sweep: error: --jobs must be at least 1", file=sys.stderr)
        return 1
    if args.cluster and args.jobs != 1:
        print(
            "sweep: error: --jobs is for --local; a cluster runs a trial per worker thread",
            file=sys.stderr,
        )
        return 1
    try:
        spec = sweep.load_spec(args.file)
        results = sweep.run(spec, args.repo, args.cluster, args.jobs)
    except sweep.Interrupted as interrupted:
        sweep.print_table(interrupted.results, sys.stdout)
        by_status: dict[str, list[str]] = {}
        for result in interrupted.results:
            by_status.setdefault(result.status, []).append(result.name)
        summary = "; ".join(f"{status}: {', '.join(names)}" for status, names in by_status.items())
        print(f"sweep: interrupted ({summary})", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("sweep: interrupted before any trial was submitted", file=sys.stderr)
        return 130
    except sweep.SweepError as error:
        return command_error("sweep", error, explained=(sweep.SweepError,))
    failed = [result.name for result in results if result.status != "finished"]
    if failed:
        print(
            f"sweep: {len(failed)} of {len(results)} trials failed: {', '.join(failed)}",
            file=sys.stderr,
        )
        return 1
    return 0
