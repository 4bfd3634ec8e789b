"""Saving and loading :class:`~genesel.impute.model.ImputationModel` directories.

A model directory holds ``model.pt`` (the state dict, loaded with ``weights_only=True``),
``model.json`` (decoder name, its init parameters, gene ids, symbols, scaling, fit summary
and the weights' SHA-256) and, for trained decoders, ``history.tsv``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from genesel import __version__
from genesel.errors import InputFileError
from genesel.impute.base import get_decoder_class
from genesel.impute.decoders import HISTORY_FILE, MODEL_FILE, WEIGHTS_FILE
from genesel.impute.model import ImputationModel
from genesel.io.atomic import atomic_output, removing_on_error, write_json

logger = logging.getLogger(__name__)

#: Bumped when the saved layout changes incompatibly.
MODEL_FORMAT_VERSION = 1
#: Keys ``model.json`` must hold (``weights_sha256`` is checked when present; older models lack it).
REQUIRED_KEYS = (
    "format_version",
    "decoder",
    "params",
    "panel_gene_ids",
    "panel_symbols",
    "gene_ids",
    "symbols",
    "mean",
    "std",
)


def save_model(model: ImputationModel, directory: str | os.PathLike[str]) -> Path:
    """Write ``model``'s ``model.pt``, ``model.json`` (and ``history.tsv``) into ``directory``.

    Each file is written atomically; ``model.json`` goes last, so its presence means
    the model is complete. Should a write fail (a full disk), all three are removed.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MODEL_FILE).unlink(missing_ok=True)
    with removing_on_error(
        *(directory / name for name in (WEIGHTS_FILE, HISTORY_FILE, MODEL_FILE))
    ):
        with atomic_output(directory / WEIGHTS_FILE) as tmp:
            torch.save(
                {k: v.detach().cpu().contiguous() for k, v in model.module.state_dict().items()},
                tmp,
            )
            weights_sha256 = file_sha256(tmp)
        if model.history is not None:
            with atomic_output(directory / HISTORY_FILE) as tmp:
                model.history.to_csv(tmp, sep="\t", index=False)
        write_json(
            directory / MODEL_FILE,
            {
                "format_version": MODEL_FORMAT_VERSION,
                "genesel_version": __version__,
                "decoder": model.decoder,
                "params": model.params,
                "panel_gene_ids": model.panel_ids.tolist(),
                "panel_symbols": model.panel_symbols.tolist(),
                "gene_ids": model.gene_ids.tolist(),
                "symbols": model.symbols.tolist(),
                "mean": model.mean.tolist(),
                "std": model.std.tolist(),
                "training": model.training,
                "weights_sha256": weights_sha256,
            },
        )
    logger.info(
        "saved %s imputation model (%d -> %d genes) to %s",
        model.decoder,
        model.n_genes,
        model.n_vars,
        directory,
    )
    return directory


def load_model(directory: str | os.PathLike[str], *, mmap: bool = True) -> ImputationModel:
    """Load a model saved by :func:`save_model` (weights memory-mapped unless ``mmap=False``)."""
    directory = Path(directory)
    meta_path, weights_path = directory / MODEL_FILE, directory / WEIGHTS_FILE
    if not meta_path.exists() or not weights_path.exists():
        raise InputFileError(
            directory,
            "not a complete imputation model (needs model.json and model.pt)",
            "run `genesel impute fit`",
        )
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as error:
        raise InputFileError(meta_path, f"not valid JSON ({error})") from None
    if not isinstance(meta, dict):
        raise InputFileError(
            meta_path, "not a model description (expected a JSON object)", "refit the model"
        )
    if meta.get("format_version") != MODEL_FORMAT_VERSION:
        raise InputFileError(
            meta_path,
            f"model format {meta.get('format_version')} is not {MODEL_FORMAT_VERSION}",
            "refit the model",
        )
    missing = [key for key in REQUIRED_KEYS if key not in meta]
    if missing:
        raise InputFileError(
            meta_path,
            f"missing keys {missing}",
            "the file was edited or truncated; refit the model",
        )
    _verify_weights(meta, meta_path, weights_path)
    try:
        gene_ids = pd.Index(meta["gene_ids"])
        position = pd.Series(np.arange(len(gene_ids)), index=gene_ids)
        panel_indices = position.loc[meta["panel_gene_ids"]].to_numpy()
        if not (len(meta["symbols"]) == len(meta["mean"]) == len(meta["std"]) == len(gene_ids)):
            raise ValueError("symbols, mean and std do not have one entry per gene")
        if len(meta["panel_symbols"]) != len(panel_indices):
            raise ValueError("panel_symbols does not have one entry per panel gene")
        module = get_decoder_class(meta["decoder"]).build_module(
            meta["params"], n_genes=len(panel_indices), n_vars=len(gene_ids), panel=panel_indices
        )
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, InputFileError):
            raise
        raise InputFileError(
            meta_path,
            f"inconsistent model description ({type(error).__name__}: {error})",
            "refit the model",
        ) from None
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True, mmap=mmap)
        module.load_state_dict(state, assign=True)
    except (OSError, RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as error:
        raise InputFileError(
            weights_path, f"cannot load the weights ({error})", "refit the model"
        ) from None
    history = (
        pd.read_csv(directory / HISTORY_FILE, sep="\t")
        if (directory / HISTORY_FILE).exists()
        else None
    )
    return ImputationModel(
        decoder=meta["decoder"],
        module=module,
        params=meta["params"],
        gene_ids=gene_ids,
        symbols=meta["symbols"],
        panel_indices=panel_indices,
        mean=np.asarray(meta["mean"]),
        std=np.asarray(meta["std"]),
        training=meta.get("training"),
        history=history,
    )


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Return the hex SHA-256 digest of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for piece in iter(lambda: handle.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


def _verify_weights(meta: dict[str, Any], meta_path: Path, weights_path: Path) -> None:
    """Check ``model.pt`` against the digest ``model.json`` recorded when the model was saved."""
    expected = meta.get("weights_sha256")
    if expected is None:  # saved before digests were recorded
        logger.warning(
            "%s records no weights_sha256; cannot check that %s belongs to it",
            meta_path,
            weights_path,
        )
        return
    if file_sha256(weights_path) != expected:
        raise InputFileError(
            weights_path,
            f"does not match {meta_path} (SHA-256 differs from the one recorded when the model was saved)",
            "the weights were replaced or damaged; keep model.pt and model.json of the same fit together, or refit",
        )
