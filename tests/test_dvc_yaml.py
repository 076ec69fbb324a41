"""dvc.yaml cannot go stale: each stage's declared deps, params and outs against what the code
really imports (from the AST), and what a real run read and wrote (mnist_ae.provenance).

A new import, a new knob or a new input that dvc.yaml does not declare would let `dvc repro`
reuse cached results computed without it; a declared dependency the stage does not have
re-runs it for nothing. Both fail here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from dvc_yaml_guard import REPO, expand_foreach, imported_files, leaves, script_of
from mnist_ae import artifacts
from pipeline_repo import STAGES, Pipeline, copy_tracked

RAW_STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
DVC_YAML = expand_foreach(RAW_STAGES, PARAMS)  # `train_vae@manifold`, ... as DVC names them
PIPELINE_STAGES = [stage for stage in STAGES if stage != "check_params"]


def _deps(stage: str) -> set[str]:
    return set(DVC_YAML[stage].get("deps", []))


def _declared_outputs(stage: str) -> set[str]:
    entries = [*DVC_YAML[stage].get("outs", []), *DVC_YAML[stage].get("metrics", [])]
    return {next(iter(entry)) if isinstance(entry, dict) else entry for entry in entries}


def test_every_stage_has_one_script_and_runs_it_the_same_way() -> None:
    scripts = sorted(path.stem for path in (REPO / "stages").glob("*.py"))
    assert sorted(RAW_STAGES) == scripts
    assert list(DVC_YAML) == STAGES  # check_params first: DVC runs unrelated stages in order
    for stage, definition in DVC_YAML.items():
        _, _, key = stage.partition("@")  # a foreach stage's script takes its key
        command = f"exec env PYTHONPATH=src python {script_of(stage)}"
        assert definition["cmd"] == (f"{command} {key}" if key else command)


def test_foreach_stages_are_expanded_as_dvc_expands_them() -> None:
    listed = Pipeline(REPO).run("dvc", "stage", "list", "--name-only").stdout.split()
    assert listed == list(DVC_YAML)


@pytest.mark.parametrize("stage", STAGES)
def test_code_deps_are_exactly_the_script_and_the_modules_it_imports(stage: str) -> None:
    script = script_of(stage)
    declared = {dep for dep in _deps(stage) if dep.startswith(("src/", "stages/"))}
    assert declared == {script} | imported_files(REPO / script)


@pytest.mark.parametrize("script", sorted({script_of(stage) for stage in STAGES}))
def test_stage_scripts_are_thin(script: str) -> None:
    lines = (REPO / script).read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 30, f"{script} has {len(lines)} lines"


@pytest.mark.parametrize("stage", STAGES)
def test_outs_are_exactly_the_artifacts_the_stage_produces(stage: str) -> None:
    assert _declared_outputs(stage) == {a.path for a in artifacts.produced_by(stage)}


def test_check_params_depends_on_the_whole_params_file_and_every_stage_on_it() -> None:
    # The file (every byte), not its values: DVC would take `true` -> `1` for no change.
    assert {dep for dep in _deps("check_params") if not dep.startswith(("src/", "stages/"))} == {
        "params.yaml"
    }
    assert "params" not in DVC_YAML["check_params"]
    assert _declared_outputs("check_params") == {artifacts.PARAMS_CHECKED.path}
    for stage in PIPELINE_STAGES:  # so `dvc repro <stage>` runs the check first
        assert artifacts.PARAMS_CHECKED.path in _deps(stage), stage


@pytest.fixture(scope="module")
def recorded(built_pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    """What each stage read and wrote in the session's real `dvc repro` (mnist_ae.provenance)."""
    directory = built_pipeline.provenance
    return {
        stage: json.loads((directory / f"{stage}.json").read_text()) for stage in PIPELINE_STAGES
    }


def _declared_params(stage: str) -> set[str]:
    return leaves(PARAMS, set(DVC_YAML[stage].get("params", [])))


@pytest.mark.e2e
@pytest.mark.parametrize("stage", PIPELINE_STAGES)
def test_params_are_exactly_the_keys_the_stage_read(
    recorded: dict[str, dict[str, Any]], stage: str
) -> None:
    read = leaves(PARAMS, set(recorded[stage]["params"]))
    assert _declared_params(stage) == read


@pytest.mark.e2e
@pytest.mark.parametrize("stage", PIPELINE_STAGES)
def test_data_deps_and_outs_are_exactly_the_files_the_stage_read_and_wrote(
    recorded: dict[str, dict[str, Any]], stage: str
) -> None:
    written = set(recorded[stage]["written"])
    assert written == _declared_outputs(stage)
    data_deps = {dep for dep in _deps(stage) if not dep.startswith(("src/", "stages/"))}
    read = set(recorded[stage]["read"]) - written
    assert data_deps == read | {artifacts.PARAMS_CHECKED.path}  # + the check, for ordering


def test_leaves_expand_sections_and_the_whole_file() -> None:
    raw = {"seed": 1, "a": {"b": 2, "c": {"d": [1, 2]}}, "ab": {"x": 3}}
    assert leaves(raw, {"a"}) == {"a.b", "a.c.d"}
    assert leaves(raw, {"a.c"}) == {"a.c.d"}
    assert leaves(raw, {"seed", "ab.x"}) == {"seed", "ab.x"}
    assert leaves(raw, {"*"}) == {"seed", "a.b", "a.c.d", "ab.x"}


def test_imports_are_found_transitively_lazily_and_relatively(tmp_path: Path) -> None:
    script = tmp_path / "stage.py"
    script.write_text(
        "import os\n"
        "from mnist_ae.pipeline import report\n"  # -> report's own imports, transitively
        "def later():\n"
        "    import mnist_ae.noise\n"
    )
    found = imported_files(script)
    for expected in (
        "src/mnist_ae/__init__.py",
        "src/mnist_ae/pipeline/__init__.py",
        "src/mnist_ae/pipeline/report.py",
        "src/mnist_ae/report.py",  # imported by pipeline/report.py
        "src/mnist_ae/tracking/store.py",  # by tracking/__init__ via tracking/run
        "src/mnist_ae/quiet.py",  # a lazy import inside mnist_ae/__init__.py
        "src/mnist_ae/noise.py",  # a lazy import inside a function
    ):
        assert expected in found, expected
    assert "src/mnist_ae/models.py" not in found


def test_the_committed_dvc_lock_is_the_result_of_the_committed_code_and_params(
    tmp_path: Path,
) -> None:
    """dvc.lock is committed on main (README "Working as a team"): it must be what `dvc repro`
    wrote for this very dvc.yaml, code and params.yaml, or a colleague's `dvc pull` would give
    outputs that DVC itself calls stale. Checked on a copy of the git-tracked files only, where
    every pipeline output is missing: each stage may lack outputs (its own, or another
    stage's that it reads), but no command, tracked file or param may differ from the lock.
    After changing code or params: `dvc repro`, then commit dvc.lock with the change."""
    assert "dvc.lock" in copy_tracked(tmp_path)
    copy = Pipeline(tmp_path)
    copy.run("git", "init", "-q")
    status = json.loads(copy.run("dvc", "status", "--json").stdout)
    produced = {artifact.path for artifact in artifacts.ALL}
    stale = {}
    for stage, changes in status.items():
        for change in changes:
            if not isinstance(change, dict):  # e.g. "changed command", "always changed"
                stale.setdefault(stage, []).append(change)
                continue
            for kind, entries in change.items():
                for path, state in entries.items():
                    allowed = state in ("deleted", "not in cache") and path in produced
                    if kind not in ("changed deps", "changed outs") or not allowed:
                        stale.setdefault(stage, []).append({kind: {path: state}})
    assert stale == {}, "dvc.lock is stale: run `dvc repro` and commit dvc.lock"
