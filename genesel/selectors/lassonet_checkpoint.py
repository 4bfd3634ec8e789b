"""Checkpoint file of a LassoNet path in progress: what ``resume`` continues from."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genesel.checkpoint import check_fingerprint
from genesel.errors import InputFileError
from genesel.io.atomic import atomic_output
from genesel.selectors.lassonet_points import LassoNetPathPoint

#: File in ``work_dir`` holding the path computed so far (for ``resume``).
PATH_CHECKPOINT_NAME = "lassonet_path.pt"
#: Selector options that do not change the path (only the refit after it).
REFIT_OPTIONS = ("refit_epochs", "refit_patience")


@dataclass
class PathProgress:
    """A path read back from its checkpoint.

    Attributes
    ----------
    points
        The points computed so far (the dense fit first).
    lambda_start
        The path's first ``lambda`` after the dense fit.
    learning_rate
        The path step size reached (halved after every diverging step).
    """

    points: list[LassoNetPathPoint]
    lambda_start: float
    learning_rate: float


def path_options(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """A selector's fingerprint without the refit's options (resuming may change those)."""
    return {k: v for k, v in fingerprint.items() if k not in REFIT_OPTIONS}


def save_path_checkpoint(
    path: Path,
    progress: PathProgress,
    model: nn.Module,
    fingerprint: Mapping[str, Any],
) -> None:
    """Write the points so far, the path's state and ``model``'s weights to ``path`` atomically."""
    payload = {
        "fingerprint": dict(fingerprint),
        "lambda_start": progress.lambda_start,
        "path_learning_rate": progress.learning_rate,
        "model": model.state_dict(),
        "points": [
            {
                **p.__dict__,
                "selected": torch.from_numpy(p.selected),
                "group_norms": torch.from_numpy(p.group_norms),
            }
            for p in progress.points
        ],
    }
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def load_path_checkpoint(
    path: Path, model: nn.Module, fingerprint: Mapping[str, Any]
) -> PathProgress:
    """Read a path checkpoint made by this run (same ``fingerprint``) into ``model``.

    Raises :class:`~genesel.errors.InputFileError` when the file cannot be read and
    :class:`~genesel.errors.CheckpointMismatchError` when another run made it.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as error:
        raise InputFileError(
            path,
            f"cannot read the LassoNet path checkpoint ({error})",
            "delete it to start over",
        ) from None
    check_fingerprint(
        path, payload.get("fingerprint") if isinstance(payload, dict) else None, fingerprint
    )
    model.load_state_dict(payload["model"])
    points = [
        LassoNetPathPoint(
            **{**p, "selected": p["selected"].numpy(), "group_norms": p["group_norms"].numpy()}
        )
        for p in payload["points"]
    ]
    return PathProgress(
        points, float(payload["lambda_start"]), float(payload["path_learning_rate"])
    )
