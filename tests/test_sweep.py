"""Sweep files, the trial's error line, the summary table, and what a sweep checks before it
submits anything (mnist_ae.sweep; the runs on a real Dask cluster: tests/test_cluster.py)."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from mnist_ae import sweep
from mnist_ae.main import main
from pipeline_repo import GIT_IDENTITY

REPO = Path(__file__).resolve().parents[1]


def _spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


def test_the_example_sweep_file_is_valid() -> None:
    spec = sweep.load_spec(REPO / "sweeps" / "encoding_dim.yaml")
    assert spec.overrides() == [
        ["train_dense.encoding_dim=16"],
        ["train_dense.encoding_dim=64"],
        ["train_dense.encoding_dim=128"],
        ["train_dense.encoding_dim=64", "train_dense.epochs=100"],
    ]


def test_a_grid_expands_to_every_combination_then_the_listed_trials(tmp_path: Path) -> None:
    spec = sweep.load_spec(
        _spec(
            tmp_path,
            "name: mix\n"
            "grid:\n"
            "  noise.noise_factor: [0.3, 0.7]\n"
            "  noise_sweep.noise_factors: [[0.1, 0.9]]\n"
            "  train_conv.jit_compile: [true, auto]\n"
            "trials:\n"
            "  - [figures.dpi=80]\n"
            "  - []\n",
        )
    )
    overrides = spec.overrides()
    assert overrides[0] == [
        "noise.noise_factor=0.3",
        "noise_sweep.noise_factors=[0.1, 0.9]",
        "train_conv.jit_compile=true",
    ]
    assert overrides[3] == [
        "noise.noise_factor=0.7",
        "noise_sweep.noise_factors=[0.1, 0.9]",
        "train_conv.jit_compile=auto",
    ]
    assert overrides[4:] == [["figures.dpi=80"], []]  # [] is the defaults
    planned = sweep.trials(spec, "git@example.org:team/mnist-ae.git", "abc123", local=False)
    assert [trial.name for trial in planned] == [f"mix-{index}" for index in range(1, 7)]
    assert len({trial.key for trial in planned}) == 6
    assert len({trial.stop_event for trial in planned}) == 1
    assert all(trial.shared_cache is None for trial in planned)
    # Another run of the same sweep: other task keys, so a scheduler never hands back old results.
    again = sweep.trials(spec, "git@example.org:team/mnist-ae.git", "abc123", local=False)
    assert {trial.key for trial in again}.isdisjoint(trial.key for trial in planned)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: Big Sweep\ntrials: [[a=1]]\n", "name: must be 1-40 lower-case letters"),
        ("name: s\ngrid:\n  train_dense.epochs: []\n", "needs a param key and a non-empty list"),
        ("name: s\ntrials:\n  - [train_dense.epochs]\n", "'train_dense.epochs' is not key=value"),
        ("name: s\n", "no trials: give a grid, trials, or both"),
        ("name: s\ntrials: [[a=1]]\nworkers: 4\n", "workers: Extra inputs are not permitted"),
        ("[1, 2]\n", "expected a mapping with name, grid and/or trials"),
        ("name: [unclosed\n", "not YAML"),
    ],
)
def test_a_bad_sweep_file_is_one_line_naming_the_problem(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(sweep.SweepError) as caught:
        sweep.load_spec(_spec(tmp_path, text))
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_the_error_line_is_the_stages_own_then_dvcs() -> None:
    failed_stage = (
        "Running stage 'check_params':\n"
        "> exec env PYTHONPATH=src python stages/check_params.py\n"
        "check_params: invalid params: params.yaml: 'train_dense.epochs': Input should be "
        "greater than or equal to 1 (got 0)\n"
        "ERROR: failed to reproduce 'check_params': failed to run: exec env PYTHONPATH=src "
        "python stages/check_params.py, exited with 2\n"
    )
    assert sweep.error_line(failed_stage).startswith("check_params: invalid params: params.yaml")
    assert sweep.error_line("fatal: repository '/nowhere' does not exist\n") == (
        "fatal: repository '/nowhere' does not exist"
    )
    assert sweep.error_line("") == "exited with an error and printed nothing"


def test_the_table_gives_each_trials_params_metrics_and_error() -> None:
    results = [
        sweep.TrialResult(
            "s-1",
            ("figures.dpi=80",),
            "finished",
            {"dense BCE": 0.09151, "conv PSNR": 19.9151, "margin dB": 5.72, "VAE NLL": 92.34},
        ),
        sweep.TrialResult("s-2", ("train_dense.epochs=0",), "failed", error="check_params: bad"),
        sweep.TrialResult("s-3", (), "cancelled"),
    ]
    out = io.StringIO()
    sweep.print_table(results, out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == [
        "experiment", "status", "params", "dense", "BCE", "conv", "PSNR", "margin", "dB",
        "VAE", "NLL",
    ]  # fmt: skip
    assert lines[1].split() == ["s-1", "finished", "figures.dpi=80", "0.09151", "19.92", "5.72",
                                "92.34"]  # fmt: skip
    assert lines[2].split() == ["s-2", "failed", "train_dense.epochs=0", "-", "-", "-", "-"]
    assert lines[3].split() == ["s-3", "cancelled", "(defaults)", "-", "-", "-", "-"]
    assert lines[4] == "s-2: check_params: bad"


def _git(cwd: Path, *arguments: str) -> str:
    return subprocess.run(
        ["git", *arguments], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A repository with one commit, pushed to a bare `origin`."""
    origin, work = tmp_path / "origin.git", tmp_path / "work"
    subprocess.run(["git", "init", "-q", "--bare", str(origin)], check=True)
    subprocess.run(["git", "clone", "-q", str(origin), str(work)], check=True)
    (work / "params.yaml").write_text("seed: 1\n")
    _git(work, "add", "params.yaml")
    _git(work, *GIT_IDENTITY, "commit", "-qm", "first")
    _git(work, "push", "-q", "origin", "HEAD")
    return work


def test_a_cluster_sweep_starts_from_the_pushed_commit(repository: Path) -> None:
    origin, revision = sweep.shared_revision(repository, local=False)
    assert origin == str(repository.parent / "origin.git")
    assert revision == _git(repository, "rev-parse", "HEAD")
    # Locally, the trials clone this repository itself.
    assert sweep.shared_revision(repository, local=True) == (str(repository), revision)


def test_what_would_not_reach_the_workers_stops_the_sweep_in_one_line(repository: Path) -> None:
    (repository / "params.yaml").write_text("seed: 2\n")
    with pytest.raises(sweep.SweepError, match="uncommitted changes would not reach the trials"):
        sweep.shared_revision(repository, local=True)
    _git(repository, *GIT_IDENTITY, "commit", "-qam", "second")
    with pytest.raises(sweep.SweepError, match=r"commit [0-9a-f]{7} is not on origin: git push"):
        sweep.shared_revision(repository, local=False)
    _git(repository, "remote", "remove", "origin")
    with pytest.raises(sweep.SweepError, match="no git remote 'origin'"):
        sweep.shared_revision(repository, local=False)


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["missing.yaml", "--local"], "sweep: error: cannot read the sweep file missing.yaml"),
        (["sweeps/encoding_dim.yaml", "--local", "-j", "0"], "--jobs must be at least 1"),
        (
            ["sweeps/encoding_dim.yaml", "--cluster", "tcp://127.0.0.1:1", "-j", "2"],
            "--jobs is for --local",
        ),
    ],
)
def test_the_command_fails_in_one_line(
    arguments: list[str],
    expected: str,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(REPO)
    assert main(["sweep", *arguments]) == 1
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1


def test_an_unreachable_scheduler_is_one_line(
    repository: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweep, "CONNECT_SECONDS", 2.0)
    spec = repository / "sweep.yaml"
    spec.write_text("name: s\ntrials: [[figures.dpi=80]]\n")
    code = main(["sweep", str(spec), "--cluster", "tcp://127.0.0.1:9", "--repo", str(repository)])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("sweep: error: cannot reach the Dask scheduler at tcp://127.0.0.1:9")


def test_a_sweep_never_overwrites_experiments_of_the_same_name(repository: Path) -> None:
    spec = sweep.SweepSpec(name="s", trials=[["figures.dpi=80"], ["figures.dpi=90"]])
    origin, revision = sweep.shared_revision(repository, local=False)
    planned = sweep.trials(spec, origin, revision, local=False)
    sweep.check_new_names(planned)  # none exists yet
    _git(repository, "push", "-q", "origin", f"{revision}:refs/exps/ab/cdef/s-2")
    with pytest.raises(sweep.SweepError, match=r"experiments s-2 exist already in .*origin\.git"):
        sweep.check_new_names(planned)


def test_a_trials_command_dies_with_its_worker(tmp_path: Path) -> None:
    """The guard kills a trial's commands when the worker process that started them dies, so
    a lost worker's trial cannot go on (and push) beside its re-run."""
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "from mnist_ae import sweep\n"
            "guarded = [*sweep._guard_prefix(), 'sleep', '120']\n"
            "child = subprocess.Popen(guarded, start_new_session=True)\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    guard = psutil.Process(int(worker.stdout.readline()))
    deadline = time.monotonic() + 30
    while not guard.children():  # the guard has started `sleep 120`
        assert time.monotonic() < deadline
        time.sleep(0.1)
    (command,) = guard.children()
    worker.kill()  # SIGKILL: no clean-up of its own
    worker.wait()
    _, alive = psutil.wait_procs([guard, command], timeout=10)
    for process in alive:  # dead, unless not yet reaped (a container's PID 1 may not reap)
        with contextlib.suppress(psutil.NoSuchProcess):
            assert process.status() == psutil.STATUS_ZOMBIE
