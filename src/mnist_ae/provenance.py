"""What a stage really read and wrote: params keys and artifacts, recorded as it runs.

The dvc.yaml guard (tests/test_dvc_yaml.py) compares this record of every stage with the
stage's declared `params`, `deps` and `outs`, so a new knob or a new input can never leave
DVC's cached results silently stale. Recording costs a set insertion; the record is written
only when MNIST_AE_PROVENANCE_DIR names a directory (the tests set it), one JSON file per stage.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

PROVENANCE_ENV = "MNIST_AE_PROVENANCE_DIR"

_record: dict[str, set[str]] = {"params": set(), "read": set(), "written": set()}


def params_read(key: str) -> None:
    """Note that the running stage read a params key (dotted; a section means all of it)."""
    _record["params"].add(key)


def artifact_read(path: str) -> None:
    """Note that the running stage read an artifact (its path relative to the workdir)."""
    _record["read"].add(path)


def artifact_written(path: str) -> None:
    """Note that the running stage wrote an artifact (its path relative to the workdir)."""
    _record["written"].add(path)


def reset() -> None:
    """Forget what was recorded (for running several stages in one process)."""
    for entries in _record.values():
        entries.clear()


def recorded() -> dict[str, list[str]]:
    """The record so far, sorted."""
    return {kind: sorted(entries) for kind, entries in _record.items()}


def save(stage: str) -> None:
    """Write the record to $MNIST_AE_PROVENANCE_DIR/<stage>.json, if that variable is set."""
    directory = os.environ.get(PROVENANCE_ENV)
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        text = json.dumps(recorded(), indent=2) + "\n"
        (Path(directory) / f"{stage}.json").write_text(text, encoding="utf-8")
