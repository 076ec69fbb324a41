"""Experiment sweeps on a Dask cluster: every trial a `dvc exp run` in its own clone.

A sweep file (YAML) names the sweep and its trials, as a grid of param values, a list of
`key=value` overrides per trial, or both:

    name: encoding-dim
    grid:
      train_dense.encoding_dim: [16, 64]
    trials:
      - [train_dense.encoding_dim=128, train_dense.epochs=20]

Trial i (from 1, grid first) is the DVC experiment `<name>-<i>`. The driver (`run`) only
submits the trials to a Dask scheduler, waits with a progress line and prints a table of each
trial's params and headline metrics. A trial (`run_trial`) runs on a worker: a fresh clone of
the shared git repository at the driver's commit, `dvc pull` of what the DVC remote has,
`dvc exp run -n <name>-<i> -S ...`, `dvc exp push` of the experiment (its commit to git, its
outputs to the DVC remote), then the clone is removed. Trials share nothing on local disk; each
logs to the tracking server of the worker's environment (MLFLOW_TRACKING_URI).

Failure semantics come from Dask: a trial that fails (invalid params, a stage error) fails
once, alone, with its one-line error; a worker that dies mid-trial makes the scheduler run that
trial again on another worker (up to `distributed.scheduler.allowed-failures` times, 3 by
default); Ctrl-C in the driver cancels the queued trials and stops the running ones.

This module imports neither TensorFlow nor MLflow: workers import it to run trials.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mnist_ae.cli import first_line

NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
OVERRIDE = re.compile(r"^[A-Za-z_][\w.@-]*=.*$")
POLL_SECONDS = 1.0  # how often a running trial checks whether the sweep was stopped
STOP_GRACE_SECONDS = 10.0  # SIGTERM to a stopped trial's commands, then SIGKILL
CONNECT_SECONDS = 30.0  # how long the driver tries to reach the scheduler
WORKER_WAIT_SECONDS = 600.0  # how long it waits for a first worker to join
# Headline metrics of the summary table: (column, metrics file, key path in it).
HEADLINES = (
    ("dense BCE", "metrics/evaluation.json", ("reconstruction", "dense_autoencoder", "bce")),
    ("conv PSNR", "metrics/evaluation.json", ("denoising", "conv_denoiser", "psnr")),
    ("margin dB", "metrics/evaluation.json", ("goals", "conv_psnr_margin_db")),
    ("VAE NLL", "metrics/vae_likelihood.json", ("nll",)),
)
# Set by Dask's nanny in every worker it starts (distributed.nanny.pre-spawn-environ): for
# numeric libraries sharing a machine with many worker threads. A trial's stages are processes
# of their own, which TensorFlow's thread pools should size from the cores.
NANNY_THREAD_LIMITS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class SweepError(RuntimeError):
    """A sweep that cannot start, in one line that says what to do."""


class TrialStoppedError(RuntimeError):
    """The sweep was stopped (Ctrl-C in the driver) while this trial ran."""


ParamValue = int | float | bool | str | None | list[Any]


class SweepSpec(BaseModel):
    """A sweep file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    grid: dict[str, list[ParamValue]] = Field(default_factory=dict)
    trials: list[list[str]] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not NAME.match(name):
            raise ValueError(
                "must be 1-40 lower-case letters, digits or '-', starting with a letter or digit"
            )
        return name

    @field_validator("grid")
    @classmethod
    def _grid(cls, grid: dict[str, list[ParamValue]]) -> dict[str, list[ParamValue]]:
        for key, values in grid.items():
            if not OVERRIDE.match(f"{key}=") or not values:
                raise ValueError(f"{key!r} needs a param key and a non-empty list of values")
        return grid

    @field_validator("trials")
    @classmethod
    def _trials(cls, trials: list[list[str]]) -> list[list[str]]:
        for overrides in trials:
            for override in overrides:
                if not OVERRIDE.match(override):
                    raise ValueError(f"{override!r} is not key=value")
        return trials

    def overrides(self) -> list[list[str]]:
        """Every trial's `-S` overrides: the grid's combinations, then the listed trials."""
        keys = list(self.grid)
        combinations = itertools.product(*(self.grid[key] for key in keys))
        grid = [
            [f"{key}={_yaml_value(value)}" for key, value in zip(keys, values, strict=True)]
            for values in combinations
        ]
        return (grid if keys else []) + [list(overrides) for overrides in self.trials]


def _yaml_value(value: ParamValue) -> str:
    """A value as `dvc exp run -S key=value` reads it (YAML, one line)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def load_spec(path: Path | str) -> SweepSpec:
    """Read and check a sweep file; any problem is a SweepError of one line."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as error:
        raise SweepError(f"cannot read the sweep file {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise SweepError(f"{path}: not YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise SweepError(f"{path}: expected a mapping with name, grid and/or trials")
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "the file"
        message = problem["msg"].removeprefix("Value error, ")
        raise SweepError(f"{path}: {where}: {message}") from None
    if not spec.overrides():
        raise SweepError(f"{path}: no trials: give a grid, trials, or both")
    return spec


@dataclass(frozen=True)
class Trial:
    """One experiment of a sweep, as a worker runs it."""

    name: str  # the DVC experiment's name
    overrides: tuple[str, ...]
    repository: str  # the git repository to clone, and to push the experiment to
    revision: str  # the commit the experiment starts from
    key: str  # the Dask task's key: unique to this run of the sweep
    stop_event: str  # the Dask Event that, once set, stops the sweep's running trials
    # Local sweeps only: the DVC cache the clone uses (the driver's), instead of a DVC remote.
    shared_cache: str | None = None
    # Variables set for the trial's commands (a local sweep: the repository's MLflow store).
    environment: tuple[tuple[str, str], ...] = ()


@dataclass
class TrialResult:
    name: str
    overrides: tuple[str, ...]
    status: str  # finished | failed | cancelled (Ctrl-C came first)
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""


def run_trial(trial: Trial) -> dict[str, float]:
    """Run one trial in a fresh clone on this worker, push it, and return its headline
    metrics. Raises RuntimeError with one line when a command fails, TrialStoppedError when the
    sweep is stopped meanwhile."""
    stop = _stop_check(trial.stop_event)
    local = trial.shared_cache is not None
    env = {**_trial_environment(under_nanny=not local), **dict(trial.environment)}
    if not env.get("MLFLOW_TRACKING_URI"):
        # The stages would log to an mlflow.db inside the clone, removed at the end.
        raise RuntimeError(
            f"worker {os.uname().nodename} has no MLFLOW_TRACKING_URI: start `dask worker` with "
            "the tracking server's URI (and a user's credentials) in its environment"
        )
    scratch = _scratch_directory()
    parent = Path(tempfile.mkdtemp(prefix=f"{trial.name}-", dir=scratch))
    clone = parent / "repo"
    log = Path(scratch or tempfile.gettempdir()) / f"{trial.key}.log"

    def command(*arguments: str, cwd: Path = clone, stoppable: bool = True) -> None:
        _command(arguments, cwd, env, stop if stoppable else lambda: False, log)

    try:
        command("git", "clone", "-q", trial.repository, str(clone), cwd=parent)
        command("git", "checkout", "-q", "--detach", trial.revision)
        if local:
            command("dvc", "cache", "dir", "--local", str(trial.shared_cache))
        else:  # whatever of the commit's outputs the remote has: unchanged stages are not rerun
            command("dvc", "pull", "--allow-missing", "-q")
        overrides = [argument for override in trial.overrides for argument in ("-S", override)]
        command("dvc", "exp", "run", "-n", trial.name, *overrides)
        # --force: a worker lost during an earlier attempt may have pushed part of it. Not
        # stopped half-way: the experiment's commit and its outputs land together.
        options = ["--force", "--no-cache"] if local else ["--force"]
        command("dvc", "exp", "push", *options, "origin", trial.name, stoppable=False)
        return _headline_metrics(clone)
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def _stop_check(event_name: str) -> Callable[[], bool]:
    from distributed import Event  # a worker has distributed; importing it is cheap there

    event = Event(event_name)
    return event.is_set


def _scratch_directory() -> str | None:
    """The Dask worker's local directory (`dask worker --local-directory`), else the temp dir."""
    try:
        from distributed import get_worker

        return get_worker().local_directory
    except (ImportError, ValueError):
        return None


def _trial_environment(under_nanny: bool) -> dict[str, str]:
    """The worker's environment for a trial's commands: its virtual environment's programs
    first (dvc, and python for the stages), without the one-thread limits a nanny set."""
    env = dict(os.environ)
    if under_nanny:
        import dask

        limits = dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {}
        for variable in NANNY_THREAD_LIMITS:
            if variable in limits and env.get(variable) == str(limits[variable]):
                del env[variable]
    for variable in ("DVC_ROOT", "DVC_EXP_NAME", "DVC_STAGE"):
        env.pop(variable, None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("GIT_TERMINAL_PROMPT", "0")  # a git remote that wants a password fails
    return env


def _command(
    command: Sequence[str], cwd: Path, env: dict[str, str], stop: Callable[[], bool], log: Path
) -> None:
    """Run a command to its end, or until the sweep is stopped; raise one line if it fails
    (its whole output goes to `log`, on this worker)."""
    if stop():
        raise TrialStoppedError("stopped: the sweep was interrupted")
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(
            [*_guard_prefix(), *command],
            cwd=cwd,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # its own process group: stopped with all it started
        )
        try:
            while True:
                try:
                    code = process.wait(timeout=POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    if stop():
                        raise TrialStoppedError("stopped: the sweep was interrupted") from None
        finally:
            if process.poll() is None:
                _stop_group(process)
        if code != 0:
            output.seek(0)
            text = output.read()
            log.write_text(text)
            raise RuntimeError(
                f"{' '.join(command[:3])}: {error_line(text)} (output: {os.uname().nodename}:{log})"
            )


def _guard_prefix() -> list[str]:
    """A trial's command runs under mnist_ae.sweep_guard, which kills it (and all it started)
    if this worker process dies: a lost worker's trial must not go on beside its re-run."""
    return [sys.executable, "-m", "mnist_ae.sweep_guard", str(os.getpid())]


def _stop_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def error_line(output: str) -> str:
    """The line that says why a command failed: a stage's own one-line error
    (`check_params: invalid params: ...`) if there is one, else DVC's or git's last ERROR /
    fatal line, else the last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    stage_errors = [line for line in lines if re.match(r"^[\w@-]+: (error|invalid params)", line)]
    if stage_errors:
        return stage_errors[-1]
    reported = [line for line in lines if line.startswith(("ERROR:", "fatal:", "error:"))]
    return (reported or lines or ["exited with an error and printed nothing"])[-1]


def _headline_metrics(clone: Path) -> dict[str, float]:
    import json

    metrics: dict[str, float] = {}
    for column, path, keys in HEADLINES:
        try:
            value: Any = json.loads((clone / path).read_text())
            for key in keys:
                value = value[key]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        metrics[column] = float(value)
    return metrics


# --- the driver -------------------------------------------------------------------------------


def _git(repository: Path, *arguments: str) -> str:
    done = subprocess.run(
        ["git", *arguments], cwd=repository, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SweepError(f"git {' '.join(arguments)}: {error_line(done.stderr)}")
    return done.stdout.strip()


def shared_revision(repository: Path, local: bool) -> tuple[str, str]:
    """(what the trials clone, the commit they start from), checked: the commit must hold
    every change (the trials see only commits) and, for a cluster, be on `origin`."""
    repository = Path(_git(repository, "rev-parse", "--show-toplevel"))
    if _git(repository, "status", "--porcelain", "--untracked-files=no"):
        raise SweepError(
            "uncommitted changes would not reach the trials: commit them (with dvc.lock) first"
        )
    revision = _git(repository, "rev-parse", "HEAD")
    if local:
        return str(repository), revision
    try:
        origin = _git(repository, "remote", "get-url", "origin")
    except SweepError:
        raise SweepError("no git remote 'origin': the workers clone it; add one") from None
    if not re.match(r"^[\w+.-]+://|^[^/]+:", origin):  # a path, perhaps relative to the repo
        origin = str((repository / origin).resolve())
    _git(repository, "fetch", "-q", "--prune", "origin")
    if not _git(repository, "branch", "-r", "--list", "origin/*", "--contains", revision):
        raise SweepError(f"commit {revision[:7]} is not on origin: git push it first")
    return origin, revision


def check_new_names(planned: Sequence[Trial]) -> None:
    """Refuse to overwrite: no experiment of the sweep may exist where it will be pushed
    (a second run of a sweep file needs another `name`)."""
    refs = subprocess.run(
        ["git", "ls-remote", planned[0].repository, "refs/exps/*"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
    )
    if refs.returncode != 0:
        raise SweepError(f"git ls-remote {planned[0].repository}: {error_line(refs.stderr)}")
    existing = {line.rsplit("/", 1)[-1] for line in refs.stdout.splitlines()}
    taken = [trial.name for trial in planned if trial.name in existing]
    if taken:
        raise SweepError(
            f"experiments {', '.join(taken)} exist already in {planned[0].repository}: give "
            "the sweep another name (or remove them: dvc exp remove -g origin NAME)"
        )


def _dvc_cache(repository: Path) -> str:
    """The repository's DVC cache directory, as `dvc cache dir` says (it may be configured)."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), "cache", "dir"],
        cwd=repository,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SweepError(f"dvc cache dir: {error_line(done.stderr + done.stdout)}")
    return str((repository / done.stdout.strip()).resolve())


def trials(spec: SweepSpec, repository: str, revision: str, local: bool) -> list[Trial]:
    """The sweep's trials; the keys and the stop event are this run's own (a second run of
    the same sweep on the same scheduler is a new set of tasks, not the first's results)."""
    run_id = f"sweep-{spec.name}-{uuid.uuid4().hex[:8]}"
    cache, environment = None, ()
    if local:  # the clones share this repository's DVC cache and log to its MLflow store
        from mnist_ae.tracking.store import tracking_uri

        cache = _dvc_cache(Path(repository))
        environment = (("MLFLOW_TRACKING_URI", tracking_uri(Path(repository))),)
    return [
        Trial(
            name=f"{spec.name}-{index}",
            overrides=tuple(overrides),
            repository=repository,
            revision=revision,
            key=f"{run_id}-{index}",
            stop_event=f"{run_id}-stop",
            shared_cache=cache,
            environment=environment,
        )
        for index, overrides in enumerate(spec.overrides(), start=1)
    ]


class _Progress:
    """`k/n done` on stderr: redrawn in place on a terminal, one line per change otherwise."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total, self.stream = total, stream
        self.counts = {"finished": 0, "failed": 0}
        self.tty = stream.isatty()

    def update(self, name: str, status: str) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1
        done = sum(self.counts.values())
        width = 30
        filled = width * done // self.total
        bar = "#" * filled + "." * (width - filled)
        line = (
            f"[{bar}] {done}/{self.total} done ({self.counts['finished']} finished, "
            f"{self.counts['failed']} failed): {name} {status}"
        )
        if self.tty:
            end = "\n" if done == self.total else ""
            self.stream.write(f"\r\033[K{line}{end}")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


@contextlib.contextmanager
def _client(address: str | None, jobs: int, err: TextIO) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    if address is None:
        # Threads are enough: every trial is a set of subprocesses.
        cluster = LocalCluster(
            n_workers=1, threads_per_worker=jobs, processes=False, dashboard_address=None
        )
        with cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(address, timeout=CONNECT_SECONDS)
    except (OSError, TimeoutError) as error:
        raise SweepError(f"cannot reach the Dask scheduler at {address}: {error}") from None
    with client:
        if not client.scheduler_info().get("workers"):
            print("sweep: waiting for a worker to join the scheduler...", file=err, flush=True)
            try:
                client.wait_for_workers(1, timeout=WORKER_WAIT_SECONDS)
            except TimeoutError:
                raise SweepError(
                    f"no worker joined the scheduler at {address} in {WORKER_WAIT_SECONDS:.0f} s"
                ) from None
        yield client


def run(
    spec: SweepSpec,
    repository: Path,
    address: str | None,
    jobs: int = 1,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> list[TrialResult]:
    """Run the sweep on the scheduler at `address` (None: a local cluster of `jobs` threads);
    print the progress to `err`, the table to `out`. KeyboardInterrupt stops the sweep: the
    results of what finished go with it (`Interrupted`)."""
    from distributed import Event, as_completed

    local = address is None
    origin, revision = shared_revision(repository, local)
    planned = trials(spec, origin, revision, local)
    check_new_names(planned)
    where = "a local cluster" if local else address
    count = f"{len(planned)} trial{'s' if len(planned) > 1 else ''}"
    print(f"sweep {spec.name}: {count} from {revision[:7]} on {where}", file=err, flush=True)
    with _client(address, jobs, err) as client:
        stop = Event(planned[0].stop_event, client=client)
        futures: dict[Any, Trial] = {}
        results: dict[str, TrialResult] = {}
        progress = _Progress(len(planned), err)
        try:
            # No retries: a trial that fails fails once. A worker lost mid-trial is another
            # matter: the scheduler runs the trial again elsewhere (allowed-failures).
            for trial in planned:
                future = client.submit(run_trial, trial, key=trial.key, pure=False, retries=0)
                futures[future] = trial
            for future in as_completed(futures):
                trial = futures[future]
                results[trial.name] = _result(trial, future)
                progress.update(trial.name, results[trial.name].status)
        except KeyboardInterrupt:
            # A second Ctrl-C must not cut this short: the trials would go on running.
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                stop.set()
                client.cancel([future for future in futures if not future.done()])
                for trial in planned:
                    if trial.name not in results:
                        future = next((f for f, t in futures.items() if t is trial), None)
                        results[trial.name] = _interrupted(trial, future)
            finally:
                signal.signal(signal.SIGINT, previous)
            raise Interrupted([results[trial.name] for trial in planned]) from None
    ordered = [results[trial.name] for trial in planned]
    print_table(ordered, out)
    return ordered


class Interrupted(KeyboardInterrupt):
    """Ctrl-C in the driver; `results` says what finished before it."""

    def __init__(self, results: list[TrialResult]) -> None:
        super().__init__()
        self.results = results


def _result(trial: Trial, future: Any) -> TrialResult:
    if future.status == "finished":
        return TrialResult(trial.name, trial.overrides, "finished", future.result())
    if future.status == "cancelled":  # by the scheduler (restarted, or the task was lost)
        return TrialResult(
            trial.name, trial.overrides, "failed", error="cancelled by the Dask scheduler"
        )
    error = future.exception()
    status = "cancelled" if isinstance(error, TrialStoppedError) else "failed"
    # Longer than first_line's default: the line ends with where the whole output is.
    return TrialResult(trial.name, trial.overrides, status, error=first_line(error, 1000))


def _interrupted(trial: Trial, future: Any) -> TrialResult:
    """A trial the interrupted sweep did not wait for: done meanwhile, or cancelled (never
    submitted, queued, or running and told to stop: its worker ends its commands within
    POLL_SECONDS)."""
    if future is not None and future.status in ("finished", "error"):
        return _result(trial, future)
    return TrialResult(trial.name, trial.overrides, "cancelled")


def print_table(results: Sequence[TrialResult], out: TextIO) -> None:
    """Params -> headline metrics, one row per trial; a failed trial shows its error."""
    columns = [name for name, _, _ in HEADLINES]
    header = ["experiment", "status", "params", *columns]
    rows = []
    for result in results:
        params = " ".join(result.overrides) or "(defaults)"
        values = [
            f"{result.metrics[column]:.4g}" if column in result.metrics else "-"
            for column in columns
        ]
        rows.append([result.name, result.status, params, *values])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        out.write(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
        out.write("\n")
    for result in results:
        if result.error:
            out.write(f"{result.name}: {result.error}\n")
    out.flush()
