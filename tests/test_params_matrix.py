"""Every bad params.yaml fails the next real `dvc repro` / `dvc exp run`, never "up to date".

For EVERY leaf of the repository's params.yaml (derived from the file, not a hand-picked
list): the key misspelt, and the key given a value of the wrong type; for every section: the
section deleted, and an unknown key added to it. Each runs the real `dvc repro` on a built
copy of the pipeline: it must exit != 0 with the `check_params` stage's one line naming the
key, run no other stage, and leave every output byte-identical. (Out-of-range values and
broken files are covered in-process, for every key, by test_bad_input.py: the same validation.)
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mnist_ae.config import flatten
from pipeline_repo import Pipeline
from test_bad_input import BAD_VALUES

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
LEAVES = sorted(flatten(PARAMS))
SECTIONS = sorted(key for key, value in PARAMS.items() if isinstance(value, dict))


@pytest.fixture(scope="module")
def pipe(pristine: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """A built copy whose params.yaml each case breaks (the copy's shrunk params are valid)."""
    return pristine.clone(tmp_path_factory.mktemp("params-matrix") / "repo")


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


def _wrong_type(raw: dict[str, Any], dotted: str) -> tuple[dict[str, Any], str]:
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


def test_the_matrix_covers_every_leaf_and_section() -> None:
    assert set(LEAVES) == set(BAD_VALUES)  # a new knob needs a wrong-type value there
    assert len(CASES) == 2 * len(LEAVES) + 2 * len(SECTIONS)


def _break_and_repro(pipe: Pipeline, mutate: Any, key: str, *command: str) -> tuple[str, str]:
    """Apply one mutation to the copy's params.yaml, run the command, restore; return the
    expected phrase and the command's combined output."""
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
    assert re.findall(r"Running stage '(\w+)'", output) == ["check_params"], output
    assert pipe.digests() == before
    return expected, result.stderr


@pytest.mark.parametrize(("mutate", "key"), CASES)
def test_dvc_repro_reports_the_bad_params(pipe: Pipeline, mutate: Any, key: str) -> None:
    expected, stderr = _break_and_repro(pipe, mutate, key, "dvc", "repro")
    lines = [line for line in stderr.splitlines() if line.startswith("check_params:")]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("check_params: invalid params: params.yaml: "), lines[0]
    if isinstance(expected, re.Pattern):
        assert expected.search(lines[0]), lines[0]
    else:
        assert expected in lines[0], lines[0]
    assert "Traceback" not in stderr


def test_dvc_exp_run_reports_a_typo_too(pipe: Pipeline) -> None:
    expected, stderr = _break_and_repro(pipe, _misspelt, "noise.noise_factor", "dvc", "exp", "run")
    assert expected == "unknown key 'noise.noise_factorr' (did you mean 'noise_factor'?)"
    assert any(expected in line for line in stderr.splitlines()), stderr


def test_a_targeted_repro_checks_the_whole_file_too(pipe: Pipeline) -> None:
    """`dvc repro evaluate` with a typo in the figures section: every stage depends on the
    check's output, so the check runs first and fails, although evaluate reads no figures key."""
    _, stderr = _break_and_repro(pipe, _misspelt, "figures.dpi", "dvc", "repro", "evaluate")
    assert "unknown key 'figures.dpii' (did you mean 'dpi'?)" in stderr


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
