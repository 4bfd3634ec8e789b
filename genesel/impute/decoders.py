"""The names of the imputation decoders, their modules and a model folder's files (no torch)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

#: A model folder's description (decoder, parameters, genes, scaling), written last by a fit,
#: so its presence marks the folder complete; and its weights.
MODEL_FILE = "model.json"
WEIGHTS_FILE = "model.pt"
HISTORY_FILE = "history.tsv"

#: Decoder name -> module that registers its class (one line per decoder; see docs/extending.md).
DECODER_MODULES: dict[str, str] = {
    "linear": "genesel.impute.linear",
    "mlp": "genesel.impute.mlp",
    "knn": "genesel.impute.knn",
}

#: One line per decoder for ``genesel impute fit --help`` (kept here, without torch, for the parser).
DECODER_SUMMARIES: dict[str, str] = {
    "linear": "exact (ridge) least squares with intercept, one pass over the train split",
    "mlp": "D-GEX multilayer perceptron trained on minibatches (best validation weights kept)",
    "knn": "average of the nearest train profiles in panel space (D-GEX's KNN-GE)",
}

#: Workflow config keys of ``decoders.<name>`` that are trainer or loader options, by flag.
TRAINING_FLAGS: dict[str, str] = {
    "epochs": "--epochs",
    "learning_rate": "--lr",
    "batch_size": "--batch-size",
}


def available_decoders() -> tuple[str, ...]:
    """Names accepted by ``--decoder``."""
    return tuple(DECODER_MODULES)


def decoder_flags(settings: Mapping[str, Any] | None) -> list[str]:
    """``genesel impute fit`` options from a workflow ``decoders.<name>`` entry.

    Trainer and loader keys (:data:`TRAINING_FLAGS`) become their flags (``null``: the
    trainer's default); every other key is a decoder parameter, passed as
    ``--param name=<JSON value>``, ``null`` included (``max_reference: null`` means all
    samples, not the default).
    """
    options: list[str] = []
    for name, value in (settings or {}).items():
        if name in TRAINING_FLAGS:
            if value is not None:
                options += [TRAINING_FLAGS[name], str(value)]
        else:
            options += ["--param", f"{name}={json.dumps(value)}"]
    return options
