"""params.yaml validation: one clear line per problem, naming the key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from mnist_ae.config import (
    ImportanceSamples,
    ParamsError,
    VaeModels,
    flatten,
    load_params,
    parse_params,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def raw() -> dict[str, Any]:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_repository_params_are_valid() -> None:
    params = load_params(REPO / "params.yaml")
    assert params.noise.noise_factor == 0.5
    assert params.train_dense.encoding_dim == 32
    assert params.train_dense.batch_size == 256 and params.train_conv.batch_size == 128


def test_every_vae_configuration_has_its_own_importance_sample_count() -> None:
    # dvc.yaml's evaluate_vae@<name> reads evaluate_vae.importance_samples.<name>.
    assert list(ImportanceSamples.model_fields) == list(VaeModels.model_fields)


def _error(raw: dict[str, Any], section: str | None, key: str, value: Any) -> str:
    broken = copy.deepcopy(raw)
    (broken[section] if section else broken)[key] = value
    with pytest.raises(ParamsError) as caught:
        parse_params(broken)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("train_dense", "epochs", "ten", "'train_dense.epochs': Input should be a valid integer"),
        (
            "train_dense",
            "epochs",
            0,
            "'train_dense.epochs': Input should be greater than or equal to 1",
        ),
        ("train_conv", "batch_size", 2.5, "'train_conv.batch_size'"),
        ("train_conv", "early_stopping_patience", True, "'train_conv.early_stopping_patience'"),
        (
            "noise",
            "noise_factor",
            -0.5,
            "'noise.noise_factor': Input should be greater than or equal to 0",
        ),
        (
            "train_dense",
            "learning_rate",
            0,
            "'train_dense.learning_rate': Input should be greater than 0",
        ),
        ("train_dense", "optimizer", "adamax2", "'train_dense.optimizer'"),
        ("prepare", "source", "internet", "'prepare.source'"),
        ("prepare", "train_samples", 70_000, "'prepare.train_samples'"),
        ("figures", "dpi", 5, "'figures.dpi'"),
        (None, "seed", -1, "'seed'"),
    ],
)
def test_bad_values_name_the_key(
    raw: dict[str, Any], section: str | None, key: str, value: Any, expected: str
) -> None:
    assert expected in _error(raw, section, key, value)


def test_unknown_key_and_missing_section(raw: dict[str, Any]) -> None:
    assert "unknown key 'train_dense.epoch'" in _error(raw, "train_dense", "epoch", 3)
    del raw["evaluate"]
    with pytest.raises(ParamsError, match="missing section 'evaluate'"):
        parse_params(raw)


def test_a_misspelt_key_of_an_optional_section_gets_a_suggestion(raw: dict[str, Any]) -> None:
    """tracking.registry.models.conv_denoiser may be null: its keys are still known."""
    rule = raw["tracking"]["registry"]["models"]["conv_denoiser"]
    rule["metricc"] = rule.pop("metric")
    with pytest.raises(ParamsError) as raised:
        parse_params(raw)
    assert str(raised.value) == (
        "params.yaml: unknown key 'tracking.registry.models.conv_denoiser.metricc' "
        "(did you mean 'metric'?) (and 1 more)"
    )


def test_the_vaes_halves_are_registered_together_by_one_metric(raw: dict[str, Any]) -> None:
    models = raw["tracking"]["registry"]["models"]
    halves = "must both be null or both set, with the same metric"
    models["vae_likelihood_decoder"]["metric"] = "negative_elbo"
    with pytest.raises(ParamsError, match=halves):
        parse_params(raw)
    models["vae_likelihood_decoder"] = None
    with pytest.raises(ParamsError, match=halves):
        parse_params(raw)
    models["vae_likelihood_encoder"] = None
    assert parse_params(raw).tracking.registry.rules().keys() == {
        "conv_denoiser",
        "dense_autoencoder",
    }


def test_a_learning_rate_cut_must_come_before_early_stopping(raw: dict[str, Any]) -> None:
    raw["train_conv"].update(early_stopping_patience=3, reduce_lr_patience=3)
    with pytest.raises(ParamsError) as raised:
        parse_params(raw)
    assert str(raised.value) == (
        "params.yaml: 'train_conv': reduce_lr_patience (3) must be less than "
        "early_stopping_patience (3): training would stop before the learning rate is ever cut"
    )
    # A key given a mapping still shows what it got.
    raw["train_conv"].update(reduce_lr_patience={"every": 2})
    with pytest.raises(ParamsError, match=r"\(got \{'every': 2\}\)$"):
        parse_params(raw)
    raw["train_conv"]["reduce_lr_patience"] = 2
    assert parse_params(raw).train_conv.fit_options()["reduce_lr_patience"] == 2


def test_idx_source_needs_a_directory(raw: dict[str, Any]) -> None:
    raw["prepare"]["source"] = "idx"
    with pytest.raises(ParamsError, match="idx_dir must be set"):
        parse_params(raw)


def test_malformed_yaml_and_non_mapping(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("seed: 1\ntrain_dense: [unclosed\n")
    with pytest.raises(ParamsError, match=r"malformed YAML at line \d+"):
        load_params(path)
    path.write_text("- just\n- a list\n")
    with pytest.raises(ParamsError, match="expected a mapping of sections"):
        load_params(path)
    with pytest.raises(ParamsError, match="cannot read"):
        load_params(tmp_path / "absent.yaml")


def test_scientific_notation_is_a_float(tmp_path: Path) -> None:
    text = (REPO / "params.yaml").read_text().replace("learning_rate: 0.001", "learning_rate: 1e-3")
    path = tmp_path / "params.yaml"
    path.write_text(text)
    assert load_params(path).train_dense.learning_rate == pytest.approx(0.001)


def test_flatten_uses_dotted_keys() -> None:
    assert flatten({"a": {"b": 1, "c": {"d": None}}, "e": 2}) == {"a.b": 1, "a.c.d": None, "e": 2}
    # The prefix is prepended as given (callers pass "dense."); a list stays one value.
    assert flatten({"grids": {"median": [3, 5]}, "seed": 7}, "run.") == {
        "run.grids.median": [3, 5],
        "run.seed": 7,
    }


def test_recorded_params_record_each_key_read_and_a_whole_section_when_dumped() -> None:
    from mnist_ae import provenance
    from mnist_ae.config import RecordedParams, lookup

    provenance.reset()
    view = RecordedParams(load_params(REPO / "params.yaml"))
    assert view.seed == 42
    assert view.train_dense.encoding_dim == 32
    assert lookup(view, "noise.noise_factor") == 0.5
    assert view.baselines.grids.median == [2, 3, 4, 5]
    assert view.train_conv.fit_options()["epochs"] == 10  # a method: the whole section
    assert provenance.recorded()["params"] == [
        "baselines.grids.median",
        "noise.noise_factor",
        "seed",
        "train_conv",
        "train_dense.encoding_dim",
    ]
    view.model_dump()
    assert "*" in provenance.recorded()["params"]  # the whole file
    with pytest.raises(AttributeError, match="read-only"):
        view.seed = 1
    copied = copy.deepcopy(view)  # a view still, not silently the plain model
    assert isinstance(copied, RecordedParams) and copied.noise.noise_factor == 0.5
    provenance.reset()
