"""Reconstruction benchmark of the CAE / IP-CAE papers (ISOLET, Mice Protein, MNIST).

Follows the IP-CAE paper's protocol (Nilsson et al., ICML 2024, Table 1): features min-max
scaled to [0, 1] with training statistics; a decoder with one hidden layer of 200
LeakyReLU(0.2) units; Adam, learning rate 1e-3; 200 epochs; batch 128 (Mice: 16); k = 50
(Mice: 10); weights of the best validation loss; test MSE averaged over seeds.

Works for every registered selector. Method defaults come from
``benchmarks/presets/<method>.yaml``::

    params: {KEY: VALUE, ...}             # selector hyperparameters
    trainer: {learning_rate: 0.001, ...}  # optional TrainerConfig overrides
    datasets:                             # optional per-dataset overrides
      mice: {params: {...}, trainer: {...}}

and ``--param KEY=VALUE`` overrides them. Reported per seed and as mean/std:

- ``test_mse``: the selector's own ``reconstruction_mse(store, "test")`` when it has one
  (its trained decoder, hard selection, duplicates resolved);
- ``test_mse_argmax``: the same with every node reading its argmax feature, duplicates kept,
  which is how the IP-CAE code evaluates (selectors that support it);
- ``test_mse_refit``: a fresh protocol decoder trained on the selected features (always);
- ``test_frob_norm``, ``test_frob_norm_argmax``, ``test_frob_norm_refit``: the same three
  decoders scored with the IP-CAE code's ``frob_norm`` (:func:`frob_norm`: the mean over test
  samples of ``||x - x_hat||_2 / D``), computed from the per-sample errors.

Each epoch's validation loss is stored, so ``--reference OTHER.json`` can report how many
epochs this method needs to reach the other's best (200-epoch) validation loss.

Examples::

    python benchmarks/paper_reconstruction.py --dataset isolet --method cae --seeds 10 --json results/isolet_cae.json
    python benchmarks/paper_reconstruction.py --dataset isolet --method ipcae --seeds 10 \\
        --json results/isolet_ipcae.json --reference results/isolet_cae.json
    python benchmarks/paper_reconstruction.py --json results/isolet_ipcae.json --reference results/isolet_cae.json --no-train
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import itertools
import json
import logging
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn

from genesel.cli.common import parse_params
from genesel.decoders import build_decoder
from genesel.errors import ConfigError, GeneselError
from genesel.io.atomic import write_json
from genesel.loader import LoaderConfig, MinibatchLoader
from genesel.run import RunConfig, configure_precision
from genesel.selectors.base import make_selector
from genesel.store import SPLITS, Store
from genesel.trainer import Trainer
from genesel.training import TrainerConfig, seed_everything, trainer_record

logger = logging.getLogger("paper_reconstruction")

DATA_DIR = Path("/work/shared/data/benchmarks")
PRESET_DIR = Path(__file__).resolve().parent / "presets"


@dataclass(frozen=True)
class Protocol:
    """Per-dataset settings of the IP-CAE paper."""

    file: str
    k: int
    batch_size: int
    paper_mse: dict[str, float]


PROTOCOLS = {
    "isolet": Protocol(
        "ISOLET.npz", 50, 128, {"cae": 5.42e-3, "ipcae": 4.38e-3, "lassonet": 7.40e-3}
    ),
    "mice": Protocol(
        "MICE_PROTEIN.npz", 10, 16, {"cae": 8.71e-3, "ipcae": 6.90e-3, "lassonet": 1.16e-2}
    ),
    "mnist": Protocol(
        "MNIST.npz", 50, 128, {"cae": 1.48e-2, "ipcae": 1.36e-2, "lassonet": 1.98e-2}
    ),
}


# -- data ----------------------------------------------------------------------------
def minmax(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Scale every array to [0, 1] with the per-feature min and max of ``train``."""
    low, high = train.min(axis=0), train.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    return [((x - low) / span).astype(np.float32) for x in (train, *others)]


def load_splits(
    dataset: str, *, data_dir: Path = DATA_DIR, split_seed: int = 42
) -> dict[str, np.ndarray]:
    """Return the protocol's scaled train/validation/test matrices of ``dataset``.

    - ISOLET: train = parts 1-4, test = part 5; a seeded 20 % of train is validation (as
      the IP-CAE code's 80/20 split); min-max fitted on parts 1-4 (as that code does).
    - Mice Protein: seeded 60/20/20 split; NaN replaced by the train split's mean of the
      feature within the sample's class; min-max fitted on train.
    - MNIST: seeded 15 % of the 60,000 training images (80/20 train/validation) and 15 % of
      the 10,000 test images; pixels divided by 255 (the IP-CAE code's ``ToTensor``).
    """
    if dataset not in PROTOCOLS:
        raise ConfigError(f"unknown dataset {dataset!r}; choose one of {', '.join(PROTOCOLS)}")
    path = data_dir / PROTOCOLS[dataset].file
    if not path.exists():
        raise GeneselError(f"{path}: benchmark data not found (see /work/shared/README.md)")
    data = np.load(path, allow_pickle=False)
    X = data["X"].astype(np.float64)
    rng = np.random.default_rng(split_seed)
    if dataset == "isolet":
        train_pool = np.flatnonzero(~data["is_test"])
        test = np.flatnonzero(data["is_test"])
        shuffled = rng.permutation(train_pool)
        n_train = int(0.8 * train_pool.size)
        train, validation = np.sort(shuffled[:n_train]), np.sort(shuffled[n_train:])
        _, tr, va, te = minmax(X[train_pool], X[train], X[validation], X[test])
        return {"train": tr, "validation": va, "test": te}
    if dataset == "mice":
        order = rng.permutation(X.shape[0])
        n_train, n_validation = int(0.6 * X.shape[0]), int(0.2 * X.shape[0])
        parts = {
            "train": order[:n_train],
            "validation": order[n_train : n_train + n_validation],
            "test": order[n_train + n_validation :],
        }
        X = impute_class_means(X, data["y"], parts["train"])
        tr, va, te = minmax(X[parts["train"]], X[parts["validation"]], X[parts["test"]])
        return {"train": tr, "validation": va, "test": te}
    train_pool = np.flatnonzero(~data["is_test"])
    test_pool = np.flatnonzero(data["is_test"])
    subset = rng.permutation(train_pool)[: int(0.15 * train_pool.size)]
    n_train = int(0.8 * subset.size)
    test = rng.permutation(test_pool)[: int(0.15 * test_pool.size)]
    scaled = {
        name: (X[rows] / 255.0).astype(np.float32)
        for name, rows in (
            ("train", subset[:n_train]),
            ("validation", subset[n_train:]),
            ("test", test),
        )
    }
    return scaled


def impute_class_means(X: np.ndarray, labels: np.ndarray, train_rows: np.ndarray) -> np.ndarray:
    """Replace NaN by the train rows' mean of that feature in the sample's class."""
    X = X.copy()
    overall = np.nanmean(X[train_rows], axis=0)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        train_members = np.intersect1d(members, train_rows)
        means = np.nanmean(X[train_members], axis=0) if train_members.size else overall
        means = np.where(np.isnan(means), overall, means)
        block = X[members]
        missing = np.isnan(block)
        block[missing] = np.broadcast_to(means, block.shape)[missing]
        X[members] = block
    return X


def build_store(splits: dict[str, np.ndarray]) -> Store:
    """An in-memory store whose standardisation is the identity (mean 0, std 1)."""
    X = np.concatenate([splits[name] for name in SPLITS]).astype(np.float32)
    n_features = X.shape[1]
    var = pd.DataFrame(
        {
            "symbol": [f"f{j}" for j in range(n_features)],
            "landmark": False,
            "mean": 0.0,
            "std": 1.0,
        },
        index=pd.Index([f"f{j}" for j in range(n_features)], name="gene_id"),
    )
    labels = np.repeat(SPLITS, [splits[name].shape[0] for name in SPLITS])
    obs = pd.DataFrame(
        {"split": pd.Categorical(labels, categories=list(SPLITS))},
        index=pd.Index([f"s{i}" for i in range(X.shape[0])], name="sample_id"),
    )
    return Store(X, var=var, obs=obs, uns={"benchmark": True})


# -- presets ----------------------------------------------------------------------------
def load_preset(
    method: str, dataset: str, preset_dir: Path = PRESET_DIR
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (selector params, trainer overrides) of ``method`` for ``dataset``."""
    path = preset_dir / f"{method}.yaml"
    if not path.exists():
        logger.warning("no preset %s; using the selector's defaults", path)
        return {}, {}
    preset = yaml.safe_load(path.read_text()) or {}
    params = dict(preset.get("params") or {})
    trainer = dict(preset.get("trainer") or {})
    specific = (preset.get("datasets") or {}).get(dataset) or {}
    params.update(specific.get("params") or {})
    trainer.update(specific.get("trainer") or {})
    return params, trainer


# -- refit -------------------------------------------------------------------------------
class RefitDecoder(nn.Module):
    """A fresh protocol decoder reconstructing all features from fixed selected ones."""

    def __init__(self, features: np.ndarray, n_features: int) -> None:
        super().__init__()
        self.register_buffer("features", torch.as_tensor(np.asarray(features), dtype=torch.long))
        self.decoder = build_decoder(
            len(features), n_features, hidden=(200,), activation="leaky_relu"
        )

    def training_loss(self, batch: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(self.decoder(batch.index_select(1, self.features)), batch)

    validation_loss = training_loss


def refit_test_mse(
    store: Store,
    features: np.ndarray,
    trainer: TrainerConfig,
    loader: LoaderConfig,
    *,
    run: RunConfig,
) -> float:
    """Train :class:`RefitDecoder` under the protocol and return its test MSE."""
    return refit_test_errors(store, features, trainer, loader, run=run)["mse"]


def refit_test_errors(
    store: Store,
    features: np.ndarray,
    trainer: TrainerConfig,
    loader: LoaderConfig,
    *,
    run: RunConfig,
) -> dict[str, float]:
    """Train :class:`RefitDecoder` under the protocol; return its test ``mse`` and ``frob_norm``."""
    with torch.random.fork_rng(devices=[]):
        seed_everything(run.seed, -3)
        model = RefitDecoder(features, store.n_vars)
    return train_then_errors(
        store,
        model,
        replace(trainer, stop_when_converged=False),
        loader,
        run=run,
        shuffle_seed=run.seed + 7919,
        predict=lambda batch: model.decoder(batch.index_select(1, model.features)),
    )


def train_then_test(
    store: Store,
    model: nn.Module,
    trainer: TrainerConfig,
    loader: LoaderConfig,
    *,
    run: RunConfig,
    shuffle_seed: int,
) -> float:
    """Fit ``model`` on the train split (best validation weights) and return its test MSE."""
    train = MinibatchLoader(
        store, "train", config=loader, shuffle=True, seed=shuffle_seed, device="cpu"
    )
    validation = MinibatchLoader(store, "validation", config=loader, shuffle=False, device="cpu")
    Trainer(trainer, run=run).fit(model, train, validation)
    test = MinibatchLoader(
        store, "test", config=LoaderConfig(batch_size=4096), shuffle=False, device="cpu"
    )
    return Trainer(trainer, run=replace(run, progress=False)).evaluate(model, test)


def train_then_errors(
    store: Store,
    model: nn.Module,
    trainer: TrainerConfig,
    loader: LoaderConfig,
    *,
    run: RunConfig,
    shuffle_seed: int,
    predict: Callable[[torch.Tensor], torch.Tensor],
) -> dict[str, float]:
    """:func:`train_then_test`, then also the test ``frob_norm`` of ``predict`` (the trained model's reconstruction).

    ``mse`` is the trainer's test loss, as before; ``frob_norm`` comes from the per-sample errors.
    """
    mse = train_then_test(store, model, trainer, loader, run=run, shuffle_seed=shuffle_seed)
    model.eval()
    errors = split_errors(predict, store)
    model.train()
    _check_mse(mse, errors["mse"], "refit/reference model")
    return {"mse": mse, "frob_norm": errors["frob_norm"]}


# -- the IP-CAE code's other metric -----------------------------------------------------------
def frob_norm(x: np.ndarray, x_hat: np.ndarray) -> float:
    """Mean over samples of ``||x_i - x_hat_i||_2 / D`` (``D`` = number of features).

    The ``frob_norm`` that the IP-CAE code logs next to its MSE loss (``src/models/cae.py`` in
    Alfred-N/IP-CAE since commit c206d99, "fix normalized frob norm":
    ``torch.norm(X - X_rec, p="fro", dim=-1) / self.input_dim``, averaged over samples; before
    that commit it divided by ``k``). Equals ``sqrt(MSE / D)`` only when every sample has the
    same error norm; otherwise it is smaller (Jensen).
    """
    error = np.asarray(x, dtype=np.float64) - np.asarray(x_hat, dtype=np.float64)
    if error.ndim != 2 or error.shape[1] == 0:
        raise ValueError(f"expected a samples x features array, got shape {error.shape}")
    return float(np.linalg.norm(error, axis=1).mean() / error.shape[1])


@torch.no_grad()
def split_errors(
    predict: Callable[[torch.Tensor], torch.Tensor],
    store: Store,
    split: str = "test",
    batch_size: int = 4096,
) -> dict[str, float]:
    """Test ``mse`` (over samples and features) and :func:`frob_norm` of ``predict`` on ``split``."""
    loader = MinibatchLoader(
        store, split, config=LoaderConfig(batch_size=batch_size), shuffle=False, device="cpu"
    )
    targets, predictions = [], []
    for batch in loader:
        batch = batch.float()
        targets.append(batch.double().numpy())
        predictions.append(predict(batch).double().numpy())
    x, x_hat = np.concatenate(targets), np.concatenate(predictions)
    return {"mse": float(((x - x_hat) ** 2).mean()), "frob_norm": frob_norm(x, x_hat)}


def selector_predictor(
    selector: Any, *, resolve_duplicates: bool = True
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The trained selector's own reconstruction (what its ``reconstruction_mse`` scores), or ``None``.

    CAE / IP-CAE: the decoder reading the panel genes (``resolve_duplicates=False``: each
    node's argmax gene, duplicates kept); logitNormal: ``model_.reconstruct``; LassoNet: the
    panel model itself.
    """
    model = getattr(selector, "model_", None)
    if model is None:
        return None
    model = model.eval()
    if hasattr(selector, "node_genes_"):
        genes = (
            selector.node_genes_ if resolve_duplicates else model.selected_genes().cpu().numpy()
        )
        index = torch.as_tensor(np.asarray(genes), dtype=torch.long)
        return lambda batch: model.reconstruct(batch.index_select(1, index)).float()
    reconstruct = getattr(model, "reconstruct", None)
    return reconstruct if callable(reconstruct) else model


def _check_mse(reported: float, recomputed: float, what: str) -> None:
    """Warn when the MSE recomputed with the per-sample errors differs from the reported one."""
    if not np.isclose(reported, recomputed, rtol=1e-4, atol=1e-9):
        logger.warning(
            "%s: recomputed test MSE %.6g differs from the reported %.6g",
            what,
            recomputed,
            reported,
        )


# -- reference points ---------------------------------------------------------------------
#: Hidden width of the nonlinear encoder in the ``nonlinear_bottleneck_mlp`` reference point.
NONLINEAR_ENCODER_WIDTH = 512


class Bottleneck(nn.Module):
    """A learned ``k``-dimensional encoder followed by the protocol decoder.

    Feature selection is a linear encoder restricted to one-hot rows, so with
    ``encoder_hidden=()`` (a linear encoder) this network's test MSE is, up to optimisation,
    a floor for any ``k``-feature panel with the protocol decoder. A hidden encoder layer
    (LeakyReLU) widens the family to nonlinear codes and checks that the linear floor is not
    an optimisation artefact.
    """

    def __init__(self, n_features: int, k: int, encoder_hidden: tuple[int, ...] = ()) -> None:
        super().__init__()
        widths = (n_features, *encoder_hidden)
        layers: list[nn.Module] = []
        for width_in, width_out in itertools.pairwise(widths):
            layers += [nn.Linear(width_in, width_out), nn.LeakyReLU(0.2)]
        self.encoder = nn.Sequential(*layers, nn.Linear(widths[-1], k))
        self.decoder = build_decoder(k, n_features, hidden=(200,), activation="leaky_relu")

    def training_loss(self, batch: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(self.decoder(self.encoder(batch)), batch)

    validation_loss = training_loss


def bottleneck_test_mse(
    store: Store,
    k: int,
    trainer: TrainerConfig,
    loader: LoaderConfig,
    encoder_hidden: tuple[int, ...] = (),
    *,
    run: RunConfig,
) -> float:
    """Train :class:`Bottleneck` under the protocol and return its test MSE."""
    return bottleneck_test_errors(store, k, trainer, loader, encoder_hidden, run=run)["mse"]


def bottleneck_test_errors(
    store: Store,
    k: int,
    trainer: TrainerConfig,
    loader: LoaderConfig,
    encoder_hidden: tuple[int, ...] = (),
    *,
    run: RunConfig,
) -> dict[str, float]:
    """Train :class:`Bottleneck` under the protocol; return its test ``mse`` and ``frob_norm``."""
    with torch.random.fork_rng(devices=[]):
        seed_everything(run.seed, -4)
        model = Bottleneck(store.n_vars, k, encoder_hidden)
    return train_then_errors(
        store,
        model,
        trainer,
        loader,
        run=run,
        shuffle_seed=run.seed,
        predict=lambda batch: model.decoder(model.encoder(batch)),
    )


def pca_reconstruction(train: np.ndarray, test: np.ndarray, k: int) -> np.ndarray:
    """Best rank-``k`` linear reconstruction of ``test`` with the principal axes of ``train``."""
    mean = train.mean(axis=0)
    _, _, components = np.linalg.svd(train - mean, full_matrices=False)
    basis = components[:k]
    return (test - mean) @ basis.T @ basis + mean


def pca_test_mse(train: np.ndarray, test: np.ndarray, k: int) -> float:
    """Test MSE of the best rank-``k`` linear reconstruction fitted on train (PCA)."""
    return float(((pca_reconstruction(train, test, k) - test) ** 2).mean())


def _explained_variance(residual_gram: np.ndarray, excluded: list[int]) -> np.ndarray:
    """Residual variance each feature would explain if added (``-inf``: excluded or constant)."""
    diagonal = np.diag(residual_gram).copy()
    usable = diagonal > 1e-12 * max(diagonal.max(), 1e-300)
    usable[excluded] = False
    return np.where(
        usable, (residual_gram**2).sum(axis=0) / np.where(usable, diagonal, 1.0), -np.inf
    )


def greedy_linear_features(train: np.ndarray, k: int) -> list[int]:
    """Forward selection of ``k`` features maximising the train variance explained linearly."""
    centred = train - train.mean(axis=0)
    gram = centred.T @ centred
    chosen: list[int] = []
    for _ in range(k):
        best = int(np.argmax(_explained_variance(gram, chosen)))
        chosen.append(best)
        gram = gram - np.outer(gram[:, best], gram[best, :]) / gram[best, best]
    return chosen


def _residual_gram(gram: np.ndarray, chosen: list[int]) -> np.ndarray:
    """Covariance left after regressing every feature on ``chosen`` (a Schur complement)."""
    if not chosen:
        return gram
    block = gram[np.ix_(chosen, chosen)]
    cross = gram[:, chosen]
    return gram - cross @ np.linalg.solve(block, cross.T)


def swap_linear_features(train: np.ndarray, start: list[int], max_sweeps: int = 20) -> list[int]:
    """Improve a panel by single-feature swaps until no swap lowers the linear train residual.

    Each position in turn is removed and refilled with the feature that explains most of the
    remaining variance (possibly the same one), so the train residual never increases. This is
    a local optimum of the best-subset least-squares problem, a stronger panel than greedy
    forward selection.
    """
    centred = train - train.mean(axis=0)
    gram = centred.T @ centred
    chosen = list(start)
    for _ in range(max_sweeps):
        changed = False
        for position in range(len(chosen)):
            others = chosen[:position] + chosen[position + 1 :]
            score = _explained_variance(_residual_gram(gram, others), others)
            best = int(np.argmax(score))
            if best != chosen[position] and score[best] > score[chosen[position]] * (1 + 1e-12):
                chosen[position] = best
                changed = True
        if not changed:
            break
    return chosen


def linear_regression_reconstruction(
    train: np.ndarray, test: np.ndarray, features: list[int]
) -> np.ndarray:
    """Least squares (with intercept) from ``features`` to all features, fitted on train, applied to test."""
    design = np.c_[train[:, features], np.ones(len(train))]
    coefficients = np.linalg.lstsq(design, train, rcond=None)[0]
    return np.c_[test[:, features], np.ones(len(test))] @ coefficients


def linear_regression_test_mse(train: np.ndarray, test: np.ndarray, features: list[int]) -> float:
    """Test MSE of least squares (with intercept) from ``features`` to all features."""
    return float(((linear_regression_reconstruction(train, test, features) - test) ** 2).mean())


def reference_points(
    splits: dict[str, np.ndarray],
    store: Store,
    *,
    k: int,
    trainer: TrainerConfig,
    loader: LoaderConfig,
    run: RunConfig,
) -> dict[str, Any]:
    """Data-only reference MSEs for ``k`` features: PCA, greedy and swap-improved panels, bottlenecks, all features."""
    train, test = splits["train"].astype(np.float64), splits["test"].astype(np.float64)
    greedy = greedy_linear_features(train, k)
    swapped = swap_linear_features(train, greedy)
    train_mean = np.broadcast_to(train.mean(axis=0), test.shape)
    points: dict[str, Any] = {"greedy_features": greedy, "swap_features": swapped}
    # each value: (test MSE, frob_norm); the model-based ones are trained under the protocol
    closed_form = {
        "test_variance": train_mean,
        "pca_linear": pca_reconstruction(train, test, k),
        "greedy_linear": linear_regression_reconstruction(train, test, greedy),
        "swap_linear": linear_regression_reconstruction(train, test, swapped),
    }
    for name, reconstruction in closed_form.items():
        points[name] = float(((reconstruction - test) ** 2).mean())
        points[f"{name}_frob_norm"] = frob_norm(test, reconstruction)
    trained = {
        "greedy_refit_mlp": lambda: refit_test_errors(
            store, np.asarray(greedy), trainer, loader, run=run
        ),
        "swap_refit_mlp": lambda: refit_test_errors(
            store, np.asarray(swapped), trainer, loader, run=run
        ),
        "linear_bottleneck_mlp": lambda: bottleneck_test_errors(
            store, k, trainer, loader, run=run
        ),
        "nonlinear_bottleneck_mlp": lambda: bottleneck_test_errors(
            store, k, trainer, loader, encoder_hidden=(NONLINEAR_ENCODER_WIDTH,), run=run
        ),
        "all_features_mlp": lambda: refit_test_errors(
            store, np.arange(store.n_vars), trainer, loader, run=run
        ),
    }
    for name, fit in trained.items():
        errors = fit()
        points[name], points[f"{name}_frob_norm"] = errors["mse"], errors["frob_norm"]
        logger.info("%s: test MSE %.4g, frob_norm %.4g", name, errors["mse"], errors["frob_norm"])
    return points


# -- one run --------------------------------------------------------------------------------
def run_seed(
    store: Store,
    *,
    method: str,
    k: int,
    seed: int,
    params: dict[str, Any],
    trainer: TrainerConfig,
    loader: LoaderConfig,
    run: RunConfig,
    refit: bool,
) -> dict[str, Any]:
    """Select with one seed and measure everything the JSON reports."""
    selector = make_selector(method, n_genes=k, seed=seed, params=params)
    run = replace(run, seed=seed)
    started = time.perf_counter()
    result = selector.select(store, trainer=trainer, loader=loader, run=run, work_dir=None)
    seconds = time.perf_counter() - started
    record: dict[str, Any] = {
        "seed": seed,
        "features": result.gene_indices.tolist(),
        "seconds": seconds,
        "unique_pct": float(result.extra.get("unique_percent_argmax", 100.0)),
        "duplicates_resolved": int(result.extra.get("duplicates_resolved", 0)),
        "best_epoch": result.extra.get("best_epoch"),
    }
    history = result.history
    if history is not None and "validation_loss" in history:
        record["validation_loss"] = history["validation_loss"].astype(float).tolist()
        record["epochs_trained"] = len(history)
    measure = getattr(selector, "reconstruction_mse", None)
    if callable(measure):
        record["test_mse"] = float(measure(store, "test"))
        _own_frob_norm(record, selector, store, "", resolve_duplicates=True)
        if "resolve_duplicates" in inspect.signature(measure).parameters:
            record["test_mse_argmax"] = float(measure(store, "test", resolve_duplicates=False))
            _own_frob_norm(record, selector, store, "_argmax", resolve_duplicates=False)
    if refit:
        errors = refit_test_errors(store, result.gene_indices, trainer, loader, run=run)
        record["test_mse_refit"], record["test_frob_norm_refit"] = (
            errors["mse"],
            errors["frob_norm"],
        )
    logger.info(
        "seed %d: test_mse=%s refit=%s frob_norm=%s refit=%s unique=%.0f%% (%.0f s)",
        seed,
        _fmt(record.get("test_mse")),
        _fmt(record.get("test_mse_refit")),
        _fmt(record.get("test_frob_norm")),
        _fmt(record.get("test_frob_norm_refit")),
        record["unique_pct"],
        seconds,
    )
    return record


def _own_frob_norm(
    record: dict[str, Any], selector: Any, store: Store, suffix: str, *, resolve_duplicates: bool
) -> None:
    """Add ``test_frob_norm{suffix}`` of the selector's own decoder to ``record`` (when it exposes one)."""
    predict = selector_predictor(selector, resolve_duplicates=resolve_duplicates)
    if predict is None:
        return
    errors = split_errors(predict, store)
    _check_mse(record[f"test_mse{suffix}"], errors["mse"], f"own decoder{suffix}")
    record[f"test_frob_norm{suffix}"] = errors["frob_norm"]


SUMMARISED = (
    "test_mse",
    "test_mse_argmax",
    "test_mse_refit",
    "test_frob_norm",
    "test_frob_norm_argmax",
    "test_frob_norm_refit",
    "unique_pct",
    "seconds",
    "duplicates_resolved",
)


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    """Add means/standard deviations and the mean validation curve to ``report``."""
    runs = report["runs"]
    for key in SUMMARISED:
        values = [run[key] for run in runs if run.get(key) is not None]
        if values:
            report[f"{key}_mean"] = float(np.mean(values))
            report[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    paper = report.get("paper_test_mse")
    if paper and "test_frob_norm_mean" in report:
        report["test_frob_norm_over_paper"] = report["test_frob_norm_mean"] / paper
    curves = [run["validation_loss"] for run in runs if "validation_loss" in run]
    if curves:
        length = min(len(c) for c in curves)
        report["validation_loss_mean"] = np.mean([c[:length] for c in curves], axis=0).tolist()
    report["seeds"] = [run["seed"] for run in runs]
    report["seconds"] = report.get("seconds_total")
    return report


def epochs_to_reach(curve: list[float], target: float) -> int | None:
    """Number of epochs after which the best-so-far of ``curve`` is at most ``target``."""
    best = np.minimum.accumulate(np.asarray(curve, dtype=float))
    hits = np.flatnonzero(best <= target)
    return int(hits[0]) + 1 if hits.size else None


def compare_speed(report: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """Epochs this method needs to reach the reference's best (end-of-run) validation loss.

    The target is the minimum of the reference's mean validation curve (its best-validation
    weights after all epochs); the same measure is taken per seed against each reference
    seed's own best.
    """
    ref_curve, curve = reference.get("validation_loss_mean"), report.get("validation_loss_mean")
    if not ref_curve or not curve:
        raise ConfigError("both reports need validation curves")
    target = float(np.min(ref_curve))
    ref_epochs, epochs = epochs_to_reach(ref_curve, target), epochs_to_reach(curve, target)
    per_seed = [
        epochs_to_reach(run["validation_loss"], float(np.min(ref_run["validation_loss"])))
        for run, ref_run in zip(report["runs"], reference["runs"], strict=False)
        if "validation_loss" in run and "validation_loss" in ref_run
    ]
    reached = [e for e in per_seed if e is not None]
    return {
        "reference_method": reference.get("method"),
        "target_validation_loss": target,
        "reference_epochs": ref_epochs,
        "epochs": epochs,
        "speedup": None if epochs is None else ref_epochs / epochs,
        "per_seed_epochs": per_seed,
        "per_seed_median_epochs": float(np.median(reached)) if reached else None,
        "per_seed_reached": f"{len(reached)}/{len(per_seed)}",
    }


# -- command line ---------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--dataset", choices=sorted(PROTOCOLS))
    parser.add_argument("--method", help="registered selector method (cae, ipcae, lassonet, ...)")
    parser.add_argument("--seeds", type=int, default=10, help="run seeds 0..N-1 (default 10)")
    parser.add_argument("--first-seed", type=int, default=0, help="first seed (default 0)")
    parser.add_argument(
        "--json", required=True, type=Path, help="output JSON (rewritten after every seed)"
    )
    parser.add_argument("--epochs", type=int, default=200, help="epoch budget (default 200)")
    parser.add_argument("--k", type=int, default=None, help="panel size (default: 50, Mice 10)")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="batch size (default: 128, Mice 16)"
    )
    parser.add_argument(
        "--lr", type=float, default=None, help="Adam learning rate (default 1e-3 or the preset's)"
    )
    parser.add_argument(
        "--param",
        action="append",
        metavar="KEY=VALUE",
        help="override a preset hyperparameter (repeatable)",
    )
    parser.add_argument(
        "--split-seed",
        type=int,
        default=42,
        help="seed of the data split, fixed across runs as in the paper (default 42)",
    )
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--no-refit", action="store_true", help="skip the refitted protocol decoder"
    )
    parser.add_argument(
        "--reference",
        type=Path,
        help="JSON of another method: report epochs to reach its best validation loss",
    )
    parser.add_argument(
        "--no-train",
        action="store_true",
        help="only (re)compute --reference against the existing --json",
    )
    parser.add_argument(
        "--baselines",
        action="store_true",
        help="instead of a method, compute data-only reference MSEs (PCA; greedy and swap-improved panels; "
        "linear and nonlinear bottlenecks and all features with the protocol decoder)",
    )
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        if args.no_train:
            report = json.loads(args.json.read_text())
        else:
            if not args.dataset or not (args.method or args.baselines):
                raise ConfigError(
                    "--dataset and --method (or --baselines) are required unless --no-train"
                )
            report = run_baselines(args) if args.baselines else run_benchmark(args)
        if args.reference:
            report["speed_vs_reference"] = compare_speed(
                report, json.loads(args.reference.read_text())
            )
            logger.info("speed vs %s: %s", args.reference, report["speed_vs_reference"])
        write_json(args.json, report)
    except GeneselError as error:
        logger.error("%s", error)
        return 1
    print(
        json.dumps(
            {
                k: v
                for k, v in report.items()
                if not isinstance(v, list | dict) or k == "speed_vs_reference"
            },
            indent=2,
        )
    )
    return 0


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    configure_precision(args.device)
    protocol = PROTOCOLS[args.dataset]
    params, trainer_overrides = load_preset(args.method, args.dataset)
    params.update(parse_params(args.param))
    if args.lr is not None:
        trainer_overrides["learning_rate"] = args.lr
    unknown = set(trainer_overrides) - set(TrainerConfig.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"preset trainer keys {sorted(unknown)} are not TrainerConfig options")
    trainer = TrainerConfig(
        **{"max_epochs": args.epochs, "learning_rate": 1e-3, **trainer_overrides}
    )
    trainer = replace(trainer, max_epochs=args.epochs)
    run = RunConfig(device=args.device, progress=False)
    k = args.k or protocol.k
    batch_size = args.batch_size or protocol.batch_size
    loader = LoaderConfig(batch_size=batch_size, drop_last=True)
    make_selector(args.method, n_genes=k, params=params)  # fail fast on bad parameters
    splits = load_splits(args.dataset, data_dir=args.data_dir, split_seed=args.split_seed)
    store = build_store(splits)
    report: dict[str, Any] = {
        "dataset": args.dataset,
        "method": args.method,
        "k": k,
        "params": params,
        "trainer": {
            key: value for key, value in trainer_record(trainer, run).items() if key != "seed"
        },
        "epochs": args.epochs,
        "batch_size": batch_size,
        "split_seed": args.split_seed,
        "split_sizes": {name: int(values.shape[0]) for name, values in splits.items()},
        "paper_test_mse": protocol.paper_mse.get(args.method),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": f"{platform.node()} {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s), {args.device}",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "commit": _git_commit(),
        "runs": [],
        "complete": False,
    }
    started = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        report["runs"].append(
            run_seed(
                store,
                method=args.method,
                k=k,
                seed=seed,
                params=params,
                trainer=trainer,
                loader=loader,
                run=run,
                refit=not args.no_refit,
            )
        )
        report["seconds_total"] = time.perf_counter() - started
        write_json(args.json, summarise(report))
    report["complete"] = True
    return summarise(report)


def run_baselines(args: argparse.Namespace) -> dict[str, Any]:
    """Reference points of ``--dataset`` under the protocol (see :func:`reference_points`)."""
    torch.set_num_threads(args.threads)
    configure_precision(args.device)
    protocol = PROTOCOLS[args.dataset]
    k = args.k or protocol.k
    loader = LoaderConfig(batch_size=args.batch_size or protocol.batch_size, drop_last=True)
    trainer = TrainerConfig(max_epochs=args.epochs, learning_rate=args.lr or 1e-3)
    run = RunConfig(seed=args.first_seed, device=args.device, progress=False)
    splits = load_splits(args.dataset, data_dir=args.data_dir, split_seed=args.split_seed)
    report = {
        "dataset": args.dataset,
        "method": "baselines",
        "k": k,
        "epochs": args.epochs,
        "split_seed": args.split_seed,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": _git_commit(),
    }
    report.update(
        reference_points(splits, build_store(splits), k=k, trainer=trainer, loader=loader, run=run)
    )
    return report


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


if __name__ == "__main__":
    sys.exit(main())
