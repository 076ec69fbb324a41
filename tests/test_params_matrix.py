"""Every bad params.yaml fails the next `dvc repro` / `dvc exp run`, never "up to date".

For EVERY leaf of the repository's params.yaml (derived from the file, not a hand-picked
list): the key misspelt, and the key given a value of the wrong type; for every section: the
section deleted, and an unknown key added to it. Each case runs the `check_params` stage's
validation in-process on the broken file: exit code 2 and one line naming the key.

Whether `dvc repro` runs that check at all does not depend on which key broke: the stage
depends on every byte of params.yaml, and every other stage on its output. (One exception:
without `train_vae.models`, which dvc.yaml's `foreach` reads, DVC itself stops first, with
its own one line naming the key; tested too.) So a real
`dvc repro` on a built copy of the pipeline runs for one case of each kind (chosen where DVC's
own change detection would miss it: a key no stage reads, `true` turned into `1`, which DVC's
params comparison calls equal), plus `dvc exp run` and a targeted `dvc repro`: each must exit
!= 0 with the check's one line, run no other stage, and leave every output byte-identical.
(Out-of-range values and broken files are covered in-process, for every key, by
test_bad_input.py: the same validation.)
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mnist_ae.cli import DEBUG_ENV, run_stage
from mnist_ae.config import Params, flatten
from pipeline_repo import Pipeline, ran_stages
from test_bad_input import BAD_VALUES

REPO = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
LEAVES = sorted(flatten(PARAMS))
SECTIONS = sorted(key for key, value in PARAMS.items() if isinstance(value, dict))


def _parent(raw: dict[str, Any], dotted: str) -> tuple[dict[str, Any], str]:
    *sections, key = dotted.split(".")
    for section in sections:
        raw = raw[section]
    return raw, key


def _misspelt(raw: dict[str, Any], dotted: str) -> tuple[dict[str, Any], str]:
    """`raw` with the key renamed as by a typo (last letter doubled); the expected phrase."""
    parent, key = _parent(raw, dotted)
    parent[f"{key}{key[-1]}"] = parent.pop(key)
    misspelt = f"{dotted}{key[-1]}"
    return raw, f"unknown key '{misspelt}' (did you mean '{key}'?)"


def _wrong_type(raw: dict[str, Any], dotted: str) -> tuple[dict[str, Any], re.Pattern[str]]:
    """`raw` with the key's value of the wrong type; the expected phrase: the key (or, in a
    list, its bad element's index) and the value it got."""
    parent, key = _parent(raw, dotted)
    bad = BAD_VALUES[dotted].wrong_type
    offending = bad[-1] if isinstance(parent[key], list) else bad  # a list key: its element
    parent[key] = bad
    return raw, re.compile(
        rf"'{re.escape(dotted)}(\.\d+)?': .*\(got {re.escape(repr(offending))}\)$"
    )


def _without_section(raw: dict[str, Any], section: str) -> tuple[dict[str, Any], str]:
    del raw[section]
    return raw, f"missing section '{section}'"


def _unknown_key_in_section(raw: dict[str, Any], section: str) -> tuple[dict[str, Any], str]:
    raw[section]["zz_not_a_knob"] = 1
    return raw, f"unknown key '{section}.zz_not_a_knob'"


CASES = [
    *(pytest.param(_misspelt, leaf, id=f"{leaf}-misspelt") for leaf in LEAVES),
    *(pytest.param(_wrong_type, leaf, id=f"{leaf}-wrong-type") for leaf in LEAVES),
    *(pytest.param(_without_section, section, id=f"{section}-deleted") for section in SECTIONS),
    *(
        pytest.param(_unknown_key_in_section, section, id=f"{section}-unknown-key")
        for section in SECTIONS
    ),
]

# One case of each kind through the real `dvc repro`.
REPRO_CASES = [
    # No stage depends on this key: only the check's dependency on the whole file notices.
    pytest.param(_misspelt, "tracking.experiment_name", id="tracking.experiment_name-misspelt"),
    # `true` -> `1`: DVC compares params with ==, so a params dependency would see no change.
    pytest.param(_wrong_type, "train_dense.jit_compile", id="train_dense.jit_compile-wrong-type"),
    pytest.param(_without_section, "figures", id="figures-deleted"),
    pytest.param(_unknown_key_in_section, "baselines", id="baselines-unknown-key"),
]


def _assert_names_the_key(line: str, expected: str | re.Pattern[str]) -> None:
    if isinstance(expected, re.Pattern):
        assert expected.search(line), line
    else:
        assert expected in line, line


def test_the_matrix_covers_every_leaf_and_section() -> None:
    assert set(LEAVES) == set(BAD_VALUES)  # a new knob needs a wrong-type value there
    assert len(CASES) == 2 * len(LEAVES) + 2 * len(SECTIONS)
    assert PARAMS["train_dense"]["jit_compile"] is True  # what REPRO_CASES' second case turns to 1
    assert BAD_VALUES["train_dense.jit_compile"].wrong_type == 1


def _must_not_run(params: Params) -> None:
    pytest.fail("check_params passed a broken params.yaml")  # BaseException: not caught


@pytest.mark.parametrize(("mutate", "key"), CASES)
def test_the_check_names_the_broken_key(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    mutate: Any,
    key: str,
) -> None:
    """The check_params stage's own entry point (run_stage) on the broken file, in-process."""
    monkeypatch.setenv(DEBUG_ENV, "")
    monkeypatch.delenv(DEBUG_ENV)
    broken, expected = mutate(copy.deepcopy(PARAMS), key)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(broken, sort_keys=False), encoding="utf-8")
    with pytest.raises(SystemExit) as exited:
        run_stage("check_params", _must_not_run, str(path))
    captured = capsys.readouterr()
    assert exited.value.code == 2, captured.err
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"check_params: invalid params: {path}: "), lines[0]
    _assert_names_the_key(lines[0], expected)
    if mutate is not _misspelt:  # a misspelt key is also a missing one: "(and 1 more)"
        assert "more)" not in lines[0], lines[0]  # only the key we broke


@pytest.fixture(scope="module")
def pipe(pristine: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """A built copy whose params.yaml each case breaks (the copy's shrunk params are valid)."""
    return pristine.clone(tmp_path_factory.mktemp("params-matrix") / "repo")


def _break_and_repro(
    pipe: Pipeline, mutate: Any, key: str, *command: str, ran: tuple[str, ...] = ("check_params",)
) -> tuple[str | re.Pattern[str], str]:
    """Apply one mutation to the copy's params.yaml, run the command, restore; return the
    expected phrase and the command's stderr. Only the stages `ran` may run."""
    path = pipe.root / "params.yaml"
    original = path.read_text(encoding="utf-8")
    broken, expected = mutate(copy.deepcopy(yaml.safe_load(original)), key)
    before = pipe.digests()
    path.write_text(yaml.safe_dump(broken, sort_keys=False), encoding="utf-8")
    try:
        result = pipe.run(*command, check=False)
    finally:
        path.write_text(original, encoding="utf-8")
    assert result.returncode != 0, result.stdout
    output = result.stdout + result.stderr
    assert "up to date" not in output
    assert ran_stages(output) == list(ran), output
    assert pipe.digests() == before
    assert "Traceback" not in result.stderr
    return expected, result.stderr


@pytest.mark.e2e
@pytest.mark.parametrize(("mutate", "key"), REPRO_CASES)
def test_dvc_repro_reports_the_bad_params(pipe: Pipeline, mutate: Any, key: str) -> None:
    expected, stderr = _break_and_repro(pipe, mutate, key, "dvc", "repro")
    lines = [line for line in stderr.splitlines() if line.startswith("check_params:")]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("check_params: invalid params: params.yaml: "), lines[0]
    _assert_names_the_key(lines[0], expected)


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("mutate", "key"),
    [(_without_section, "train_vae"), (_misspelt, "train_vae.models")],
    ids=["train_vae-deleted", "train_vae.models-misspelt"],
)
def test_a_missing_foreach_source_fails_in_dvcs_own_line(
    pipe: Pipeline, mutate: Any, key: str
) -> None:
    """The VAE stages `foreach` over train_vae.models, so DVC reads that key to build the
    pipeline and stops before any stage, the check included, with one line naming it."""
    _, stderr = _break_and_repro(pipe, mutate, key, "dvc", "repro", ran=())
    assert stderr.strip().splitlines() == [
        "ERROR: failed to parse 'stages.train_vae.foreach' in 'dvc.yaml': "
        "Could not find 'train_vae.models'"
    ]


@pytest.mark.e2e
def test_dvc_exp_run_reports_a_typo_too(pipe: Pipeline) -> None:
    expected, stderr = _break_and_repro(pipe, _misspelt, "noise.noise_factor", "dvc", "exp", "run")
    assert expected == "unknown key 'noise.noise_factorr' (did you mean 'noise_factor'?)"
    assert any(expected in line for line in stderr.splitlines()), stderr


@pytest.mark.e2e
def test_a_targeted_repro_checks_the_whole_file_too(pipe: Pipeline) -> None:
    """`dvc repro evaluate` with a typo in the figures section: every stage depends on the
    check's output, so the check runs first and fails, although evaluate reads no figures key."""
    _, stderr = _break_and_repro(pipe, _misspelt, "figures.dpi", "dvc", "repro", "evaluate")
    assert "unknown key 'figures.dpii' (did you mean 'dpi'?)" in stderr


@pytest.mark.e2e
def test_a_valid_change_to_an_untracked_key_runs_only_the_check(pipe: Pipeline) -> None:
    """The check depends on the whole file; nothing downstream depends on the check: renaming
    the MLflow experiment (a key no stage depends on) re-runs the check alone."""
    pipe.edit_params("tracking", "experiment_name", "renamed")
    try:
        ran, _ = pipe.repro()
        assert ran == ["check_params"]
        ran, result = pipe.repro()
        assert ran == [] and "Data and pipelines are up to date" in result.stdout
    finally:
        pipe.edit_params("tracking", "experiment_name", PARAMS["tracking"]["experiment_name"])
        pipe.repro()
