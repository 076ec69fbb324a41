"""`mnist-ae sweep` on a real Dask cluster over 127.0.0.1: a scheduler and two workers, each a
process of its own started by the test, with the shrunk pipeline shared through a bare git
repository, a directory DVC remote and the team tracking server, as a team would share it.

One sweep of four trials runs with one worker SIGKILLed (the whole process tree: a lost host)
in the middle of a trial, and one trial's params invalid: the three valid trials land (in
git, the DVC remote and the tracking server), the invalid one fails alone with its one-line
error. Last, a local sweep (no cluster) interrupted with Ctrl-C after its first trial."""

from __future__ import annotations

import contextlib
import itertools
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import yaml

from mnist_ae.provenance import PROVENANCE_ENV
from pipeline_repo import GIT_IDENTITY, Pipeline, TeamServer, free_port, publish

pytestmark = pytest.mark.e2e

EXPERIMENT = "team-sweep"  # the tracking server's experiment of these sweeps, nobody else's
TRIALS = {  # the sweep file's `trials`, in order: sweep-1 ... sweep-4
    "sweep-1": ["figures.dpi=80"],
    "sweep-2": ["figures.dpi=90"],
    "sweep-3": ["figures.n_digits=4"],
    "sweep-4": ["train_dense.epochs=0"],  # invalid: check_params stops it
}
VALID = ["sweep-1", "sweep-2", "sweep-3"]
DASK = str(Path(sys.executable).parent / "dask")
WORKERS = ("w1", "w2")  # one thread each


@dataclass(frozen=True)
class Shared:
    driver: Pipeline  # the teammate who runs the sweeps, in their clone
    origin: Path  # the bare git repository every trial clones and pushes to


@pytest.fixture(scope="module")
def shared(
    pristine: Pipeline, tracking_server: TeamServer, tmp_path_factory: pytest.TempPathFactory
) -> Shared:
    base = tmp_path_factory.mktemp("shared")
    driver = pristine.clone(base / "driver", tracking_server.url)
    driver.edit_params("tracking", "experiment_name", EXPERIMENT)
    return Shared(driver, publish(driver, base))


def _tree(process: psutil.Process) -> list[psutil.Process]:
    try:
        return [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and everything it started: a host lost at once."""
    try:
        processes = _tree(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(processes, timeout=30)


@dataclass(frozen=True)
class Cluster:
    address: str
    workers: dict[str, subprocess.Popen]
    logs: Path

    def log_tails(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text()[-2000:]}" for log in sorted(self.logs.glob("*.log"))
        )


@pytest.fixture(scope="module")
def cluster(shared: Shared, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """`dask scheduler` and two `dask worker`s (one thread each, with their nannies) on
    127.0.0.1, in the environment a worker host needs: the project's virtual environment, the
    tracking server's URI and a user's credentials (git and the DVC remote are local paths)."""
    from distributed import Client

    logs = tmp_path_factory.mktemp("dask")
    env = {key: value for key, value in shared.driver.env.items() if key != PROVENANCE_ENV}
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    processes: dict[str, subprocess.Popen] = {}

    def start(name: str, *command: str) -> None:
        with (logs / f"{name}.log").open("w") as log:
            processes[name] = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    start("scheduler", DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
          "--no-dashboard")  # fmt: skip
    for name in WORKERS:
        start(
            name, DASK, "worker", address, "--host", "127.0.0.1", "--name", name,
            "--nworkers", "1", "--nthreads", "1", "--no-dashboard", "--memory-limit", "0",
            "--local-directory", str(logs / name), "--death-timeout", "60",
        )  # fmt: skip
    cluster = Cluster(address, {name: processes[name] for name in WORKERS}, logs)
    try:
        with Client(address, timeout=60) as client:
            client.wait_for_workers(len(WORKERS), timeout=120)
        yield cluster
    except Exception:
        print(cluster.log_tails())
        raise
    finally:
        for process in processes.values():
            _kill_tree(process.pid)
            process.wait(timeout=30)


def _sweep_file(directory: Path, name: str, trials: list[list[str]]) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "trials": trials}))
    return path


def _driver(shared: Shared, cluster: Cluster, sweep_file: Path, out: Path) -> subprocess.Popen:
    """`mnist-ae sweep FILE --cluster ADDRESS`, run in the driver's clone."""
    with (out.with_suffix(".out")).open("w") as stdout, out.with_suffix(".err").open("w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "mnist_ae.main", "sweep", str(sweep_file),
             "--cluster", cluster.address],
            cwd=shared.driver.root, env=shared.driver.env, stdout=stdout, stderr=err,
        )  # fmt: skip


def _running_trial(cluster: Cluster, worker: str) -> str | None:
    """The experiment name of the `dvc exp run` running under `worker`, if any."""
    for process in _tree(psutil.Process(cluster.workers[worker].pid)):
        try:
            command = process.cmdline()
        except psutil.Error:
            continue
        # [python, .../dvc, exp, run, -n, NAME, ...]
        pairs = list(itertools.pairwise(command))
        if ("exp", "run") in pairs and "-n" in command:
            return command[command.index("-n") + 1]
    return None


@dataclass(frozen=True)
class Swept:
    returncode: int
    stdout: str
    stderr: str
    killed: str  # the trial whose worker was SIGKILLed mid-run
    progress_after_kill: str  # the driver's stderr from the kill on


@pytest.fixture(scope="module")
def swept(shared: Shared, cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Swept:
    work = tmp_path_factory.mktemp("sweep")
    driver = _driver(shared, cluster, _sweep_file(work, "sweep", list(TRIALS.values())), work / "d")
    killed, progress_at_kill = "", 0
    try:
        deadline = time.monotonic() + 600
        while driver.poll() is None:
            assert time.monotonic() < deadline, cluster.log_tails()
            for worker in cluster.workers:
                trial = _running_trial(cluster, worker) if not killed else None
                if trial in VALID:
                    time.sleep(2)  # well into its `dvc exp run`
                    _kill_tree(cluster.workers[worker].pid)
                    killed = trial
                    progress_at_kill = len((work / "d.err").read_text())
            time.sleep(0.2)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert killed, "no valid trial was seen running"
    stderr = (work / "d.err").read_text()
    return Swept(driver.returncode, (work / "d.out").read_text(), stderr, killed,
                 stderr[progress_at_kill:])  # fmt: skip


def _rows(stdout: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in stdout.splitlines() if line.strip()}


def test_the_valid_trials_finish_even_the_one_whose_worker_was_killed(swept: Swept) -> None:
    assert swept.returncode == 1, swept.stderr  # one trial failed
    rows = _rows(swept.stdout)
    for name in VALID:
        status, params, *metrics = rows[name][1:]
        assert status == "finished" and params == TRIALS[name][0]
        assert len(metrics) == 4 and all(value != "-" for value in metrics), rows[name]
    assert swept.killed in VALID
    assert f"{swept.killed} finished" in swept.progress_after_kill  # it ran again, elsewhere
    assert swept.stderr.strip().splitlines()[-1] == "sweep: 1 of 4 trials failed: sweep-4"
    assert "[" in swept.stderr and "4/4 done (3 finished, 1 failed)" in swept.stderr


def test_an_invalid_trial_fails_alone_with_its_one_line_error(swept: Swept) -> None:
    assert _rows(swept.stdout)["sweep-4"][1] == "failed"
    (error,) = [line for line in swept.stdout.splitlines() if line.startswith("sweep-4: ")]
    assert error.startswith(
        "sweep-4: dvc exp run: check_params: invalid params: params.yaml: 'train_dense.epochs': "
        "Input should be greater than or equal to 1 (got 0) (output: "
    )
    # The command's whole output stays on the worker, where the line says.
    log = Path(error.rsplit("(output: ", 1)[1].removesuffix(")").split(":", 1)[1])
    assert "Running stage 'check_params'" in log.read_text()


def test_a_fresh_clone_pulls_the_three_experiments_with_their_metrics(
    swept: Swept, shared: Shared, tmp_path: Path
) -> None:
    clone = Pipeline(tmp_path / "clone")
    shared.driver.run("git", "clone", "-q", str(shared.origin), str(clone.root))
    listed = clone.run("dvc", "exp", "list", "--name-only", "origin").stdout.split()
    assert sorted(listed) == VALID  # the invalid trial pushed nothing
    clone.run("dvc", "exp", "pull", "origin", *VALID)
    shown = json.loads(clone.run("dvc", "exp", "show", "--json").stdout)
    experiments = {
        experiment["name"]: experiment["revs"][0]["data"]
        for commit in shown
        for experiment in commit.get("experiments") or []
    }
    assert sorted(experiments) == VALID
    for name, data in experiments.items():
        params = data["params"]["params.yaml"]["data"]
        key, value = TRIALS[name][0].split("=")
        section, field = key.split(".")
        assert params[section][field] == int(value)
        evaluation = data["metrics"]["metrics/evaluation.json"]["data"]
        assert evaluation["denoising"]["conv_denoiser"]["psnr"] > 0
    clone.run("dvc", "exp", "apply", "sweep-1")
    clone.run("dvc", "pull")  # the experiment's outputs came through the DVC remote
    assert clone.run("dvc", "status").stdout.strip().endswith("up to date.")


def test_the_tracking_server_holds_one_complete_row_per_trial(swept: Swept, shared: Shared) -> None:
    every = shared.driver.runs()
    runs = [run for run in every if run.info.status == "FINISHED"]
    assert sorted(run.info.run_name for run in runs) == VALID
    # The attempt lost with its worker left its row unfinished; nothing else did.
    unfinished = {(run.info.run_name, run.info.status) for run in every if run not in runs}
    assert unfinished <= {(swept.killed, "RUNNING")}
    for run in runs:
        assert run.data.tags["dvc.experiment"] == run.info.run_name
        assert "denoising.conv_denoiser.psnr" in run.data.metrics
        key, value = TRIALS[run.info.run_name][0].split("=")
        assert run.data.params[key] == value
        assert run.data.tags["mlflow.user"] == "alice"


def _command_line(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def test_a_local_sweep_brings_back_what_finished_before_ctrl_c(
    pristine: Pipeline, tmp_path: Path
) -> None:
    """--local, interrupted: no cluster, the trials run one at a time in clones that share
    the repository's DVC cache. Ctrl-C after the first trial cancels the others, stops the
    running one with its commands, and says which finished; the finished experiment and its
    MLflow row (the default SQLite store) are in the repository."""
    pipe = pristine.clone(tmp_path / "repo")
    pipe.run("git", "add", "-A")
    pipe.run("git", *GIT_IDENTITY, "commit", "-qm", "results")
    names = ["local-1", "local-2", "local-3"]
    sweep_file = _sweep_file(tmp_path, "local", [[f"figures.dpi={dpi}"] for dpi in (60, 65, 70)])
    with (tmp_path / "d.out").open("w") as out, (tmp_path / "d.err").open("w") as err:
        driver = subprocess.Popen(
            [sys.executable, "-m", "mnist_ae.main", "sweep", str(sweep_file), "--local"],
            cwd=pipe.root, env=pipe.env, stdout=out, stderr=err,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while "1/3 done" not in (tmp_path / "d.err").read_text():
            assert driver.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        driver.send_signal(signal.SIGINT)
        assert driver.wait(timeout=60) == 130
    finally:
        if driver.poll() is None:
            driver.kill()
    err = (tmp_path / "d.err").read_text().strip().splitlines()[-1]
    assert err == "sweep: interrupted (finished: local-1; cancelled: local-2, local-3)"
    rows = _rows((tmp_path / "d.out").read_text())
    assert [rows[name][1] for name in names] == ["finished", "cancelled", "cancelled"]
    # The running trial's commands were stopped with it.
    deadline = time.monotonic() + 30
    while any("local-2" in _command_line(process) for process in psutil.process_iter()):
        assert time.monotonic() < deadline, "local-2 still runs"
        time.sleep(0.5)
    shown = json.loads(pipe.run("dvc", "exp", "show", "--json").stdout)
    dpi = {
        experiment["name"]: experiment["revs"][0]["data"]["params"]["params.yaml"]["data"][
            "figures"
        ]["dpi"]
        for commit in shown
        for experiment in commit.get("experiments") or []
    }
    assert dpi == {"local-1": 60}
    assert [run.info.run_name for run in pipe.runs() if run.info.status == "FINISHED"] == [
        "local-1"
    ]
    pipe.run("dvc", "exp", "apply", "local-1")  # its outputs are in this repository's cache
    assert pipe.run("dvc", "status").stdout.strip().endswith("up to date.")
