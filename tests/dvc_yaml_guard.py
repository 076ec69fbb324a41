"""What each stage really depends on, derived from the code: the `mnist_ae` modules its script
imports (transitively, from the AST) and, from a recorded run, the params keys it read and the
artifacts it read and wrote (mnist_ae.provenance). tests/test_dvc_yaml.py compares these with
dvc.yaml."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from mnist_ae.config import flatten

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PACKAGE = "mnist_ae"


def module_file(name: str) -> Path | None:
    """The source file of a module of the package, or None if `name` is not one."""
    base = SRC.joinpath(*name.split("."))
    for candidate in (
        base / "__init__.py",
        base.with_suffix(".py"),
    ):  # a package wins, as in Python
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path) -> set[str]:
    """Package modules one file imports anywhere in it (lazy imports in functions too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    current = _module_name(path) if path.is_relative_to(SRC) else ""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the file's package upwards
                package = current.split(".")
                package = package if is_package else package[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    modules = set()
    for name in found:
        if name == PACKAGE or name.startswith(f"{PACKAGE}."):
            parts = name.split(".")
            # The module and every package above it (importing a.b.c runs a/__init__, a/b/...).
            modules |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return {name for name in modules if module_file(name) is not None}


def imported_files(script: Path) -> set[str]:
    """Every package source file a script imports, transitively, relative to the repository."""
    seen: set[str] = set()
    pending = list(_imported(script))
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        pending += _imported(module_file(name))
    return {str(module_file(name).relative_to(REPO)) for name in seen}


def leaves(raw_params: dict[str, Any], keys: set[str]) -> set[str]:
    """The params.yaml leaves under each dotted key ('*' is the whole file)."""
    every = set(flatten(raw_params))
    if "*" in keys:
        return every
    return {leaf for leaf in every for key in keys if leaf == key or leaf.startswith(f"{key}.")}


def expand_foreach(stages: dict[str, Any], raw_params: dict[str, Any]) -> dict[str, Any]:
    """dvc.yaml's stages as DVC runs them: a `foreach: ${section.key}` stage over a mapping of
    params.yaml becomes one `<stage>@<key>` stage per key, `${key}` filled in (the only
    template this project uses; anything else is refused rather than guessed)."""
    expanded: dict[str, Any] = {}
    for name, definition in stages.items():
        if "foreach" not in definition:
            expanded[name] = definition
            continue
        source = definition["foreach"]
        if not (source.startswith("${") and source.endswith("}")):
            raise ValueError(f"stage '{name}': foreach must name a params mapping, got {source}")
        items: Any = raw_params
        for part in source[2:-1].split("."):
            items = items[part]
        for key in items:
            expanded[f"{name}@{key}"] = _fill(definition["do"], key)
    return expanded


def _fill(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        return {_fill(k, key): _fill(v, key) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(item, key) for item in value]
    if isinstance(value, str):
        filled = value.replace("${key}", key)
        if "${" in filled:
            raise ValueError(f"unsupported template in dvc.yaml: {value}")
        return filled
    return value


def script_of(stage: str) -> str:
    """The script a stage runs: stages/<name before any @>.py."""
    return f"stages/{stage.split('@')[0]}.py"
