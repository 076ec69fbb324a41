"""One library function per DVC stage: `<stage>.run(params, workdir, tracker)`.

Each function does all of its stage's work, in the order that matters, and is the only path to
its outputs: the stage script (stages/<stage>.py) calls it through `run_stage`, the benchmark
and the in-process tests call it directly (with tracking.NO_TRACKING). `workdir` is where the
artifacts live (mnist_ae.artifacts): the repository root, or a queued experiment's copy of it.
One module per stage, so that editing one stage's function re-runs that stage alone.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from mnist_ae import cli, provenance, tracking
from mnist_ae.config import Params, RecordedParams

StageFunction = Callable[[Any, Path, tracking.Tracker], Any]


def run_stage(stage: str, function: StageFunction) -> NoReturn:
    """Run a stage as DVC does: validate params.yaml, attach to this invocation's MLflow run,
    call `function` on the working directory, and exit (one line and exit code != 0 on error).

    The function gets a view of the params that records which keys it reads; with
    MNIST_AE_PROVENANCE_DIR set, that and the artifacts it read and wrote are saved for the
    dvc.yaml guard (mnist_ae.provenance).
    """

    def body(params: Params) -> None:
        workdir = Path.cwd()
        with tracking.pipeline_run(stage, params, workdir) as tracker:
            function(RecordedParams(params), workdir, tracker)
        provenance.save(stage)

    cli.run_stage(stage, body)
