"""The decoders' defaults are defined once, in their classes: the command line, ``genesel.tl``
and the workflow (its config schema, and what it passes when the config is silent) end up
with the core's values."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml

import genesel
from genesel.cli.common import loader_config, trainer_config
from genesel.cli.impute import decoder_params
from genesel.cli.main import build_parser
from genesel.impute import get_decoder_class, make_decoder
from genesel.impute.decoders import TRAINING_FLAGS, available_decoders, decoder_flags
from genesel.loader import LoaderConfig
from genesel.training import TrainerConfig
from tests.conftest import planted_matrix

REPO = Path(__file__).resolve().parents[1]
#: Training fields whose effective values are compared.
TRAINING_FIELDS = ("max_epochs", "learning_rate", "lr_decay", "patience")
#: Workflow config keys of training options -> the trainer or loader field they set.
CONFIG_FIELDS = {
    "epochs": "max_epochs",
    "learning_rate": "learning_rate",
    "batch_size": "batch_size",
}


def effective(name: str, params: dict[str, Any], trainer: TrainerConfig | None, store) -> dict:
    """Hyperparameters and (for trained decoders) the training values a fit would use."""
    decoder = make_decoder(name, **params)
    values = decoder.hyperparameters()
    if decoder.trainable:
        config = decoder.trainer_config(trainer, store)  # type: ignore[attr-defined]
        values.update({field: getattr(config, field) for field in TRAINING_FIELDS})
    return values


def core(name: str, store) -> dict:
    return effective(name, {}, None, store)


def from_cli(name: str, options: list[str], store) -> tuple[dict, int]:
    argv = ["impute", "fit", "--data", "d", "--panel", "p", "--out", "o", "--decoder", name]
    args = build_parser().parse_args([*argv, *options])
    values = effective(name, decoder_params(args), trainer_config(args), store)
    return values, loader_config(args).batch_size


@pytest.mark.parametrize("name", available_decoders())
def test_cli_defaults_are_the_core_defaults(name, planted_store):
    store, _ = planted_store
    values, batch_size = from_cli(name, [], store)
    assert values == core(name, store)
    assert batch_size == LoaderConfig().batch_size


def test_core_mlp_defaults_are_dgex():
    mlp = get_decoder_class("mlp")
    assert mlp.parameters() == {"hidden": (9000,), "activation": "tanh", "dropout": 0.1}
    assert mlp.training_defaults == {"lr_decay": 0.95, "patience": 10}  # type: ignore[attr-defined]
    assert get_decoder_class("linear").parameters()["ridge"] == "auto"


@pytest.fixture
def adata():
    X, _ = planted_matrix(300, 30, 4, seed=2)
    data = ad.AnnData(X.astype(np.float32), var=pd.DataFrame(index=[f"g{i}" for i in range(30)]))
    data.var["genesel_rank"] = np.where(np.arange(30) < 5, np.arange(30) + 1.0, np.nan)
    return data


def first_genes(store, *, n_genes: int, **kwargs: Any) -> SimpleNamespace:
    """Stands in for select_panel: the first ``n_genes`` genes (these tests are about decoders)."""
    return SimpleNamespace(
        gene_ids=store.var.index[:n_genes].astype(str), gene_indices=np.arange(n_genes)
    )


class Captured(Exception):
    """Stops a ``genesel.tl`` function at its call of the core, with the call's keywords."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        super().__init__("captured")
        self.kwargs = kwargs


def capture(*args: Any, **kwargs: Any) -> Any:
    raise Captured(kwargs)


CORE_KEYWORDS = ("decoder", "trainer", "run", "loader", "work_dir", "resume", "progress")


@pytest.mark.parametrize("name", available_decoders())
def test_tl_defaults_are_the_core_defaults(name, adata, planted_store, monkeypatch):
    store, _ = planted_store
    monkeypatch.setattr("genesel.tl._impute._fit_imputer", capture)
    with pytest.raises(Captured) as call:
        genesel.tl.fit_imputer(adata, decoder=name, progress=False)
    kwargs = call.value.kwargs
    params = {k: v for k, v in kwargs.items() if k not in CORE_KEYWORDS}
    assert params == {}  # tl passes no decoder hyperparameter the user did not set
    assert effective(name, params, kwargs["trainer"], store) == core(name, store)
    assert kwargs["loader"] is None
    monkeypatch.setattr("genesel.tl._curve.select_panel", first_genes)
    monkeypatch.setattr("genesel.tl._curve.fit_imputer", capture)
    with pytest.raises(Captured) as call:
        genesel.tl.panel_curve(
            adata,
            sizes=(5,),
            methods=("random",),
            decoder=name,
            sizes_around_landmarks=False,
            device="cpu",
            progress=False,
        )
    kwargs = call.value.kwargs
    params = {k: v for k, v in kwargs.items() if k not in CORE_KEYWORDS}
    assert params == {}
    assert effective(name, params, kwargs["trainer"], store) == core(name, store)
    assert kwargs["loader"].batch_size == LoaderConfig().batch_size


def workflow_config(decoders: dict) -> dict:
    from tests.test_workflow import TINY_CONFIG, validate_config

    return validate_config({**TINY_CONFIG, "decoders": decoders})


@pytest.mark.parametrize("name", available_decoders())
def test_workflow_defaults_are_the_core_defaults(name, planted_store):
    """What the schema fills in for a silent config, passed as the workflow passes it."""
    pytest.importorskip("snakemake")
    store, _ = planted_store
    settings = workflow_config({name: {}})["decoders"][name]
    values, batch_size = from_cli(name, decoder_flags(settings), store)
    assert values == core(name, store)
    assert batch_size == LoaderConfig().batch_size


def test_schema_states_only_the_core_defaults():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    decoders = schema["properties"]["decoders"]["properties"]
    assert set(decoders) == set(available_decoders())
    for name, entry in decoders.items():
        cls = get_decoder_class(name)
        defaults = {
            **{k: list(v) if isinstance(v, tuple) else v for k, v in cls.parameters().items()},
            "epochs": TrainerConfig().max_epochs,
            "learning_rate": TrainerConfig().learning_rate,
            "batch_size": LoaderConfig().batch_size,
        }
        for key, spec in entry["properties"].items():
            assert key in cls.parameters() or (cls.trainable and key in TRAINING_FLAGS), (
                f"decoders.{name}.{key} is no parameter of the {name} decoder"
            )
            assert spec.get("description"), f"decoders.{name}.{key} has no description"
            if "default" in spec:
                assert spec["default"] == defaults[key], f"decoders.{name}.{key}"


@pytest.mark.parametrize("config", ["config.yaml", "geo.yaml"])
def test_shipped_configs_give_options_the_command_line_accepts(config, planted_store):
    store, _ = planted_store
    decoders = yaml.safe_load((REPO / "config" / config).read_text())["decoders"]
    for name, settings in decoders.items():
        values, _ = from_cli(name, decoder_flags(settings), store)
        for key, value in (settings or {}).items():
            field = CONFIG_FIELDS.get(key, key)
            if field in values:
                expected = values[field]
                assert (list(expected) if isinstance(expected, tuple) else expected) == value


def test_a_null_decoder_parameter_reaches_the_decoder_as_none() -> None:
    # knn's max_reference: null means every train sample, not the default subsample
    flags = decoder_flags({"n_neighbors": 5, "max_reference": None, "epochs": None})
    assert flags == ["--param", "n_neighbors=5", "--param", "max_reference=null"]
