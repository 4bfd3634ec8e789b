"""Decoders from a gene panel to all genes, shared by selectors and imputers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from genesel.errors import ConfigError

if TYPE_CHECKING:  # torch is imported on use, so the CLI can list ACTIVATIONS without it
    from torch import nn

#: Activations by name; ``leaky_relu`` uses the CAE papers' slope of 0.2.
ACTIVATIONS = ("leaky_relu", "relu", "tanh", "sigmoid", "gelu")


def make_activation(name: str, *, negative_slope: float = 0.2) -> nn.Module:
    """Return a fresh activation module by name."""
    from torch import nn

    if name == "leaky_relu":
        return nn.LeakyReLU(negative_slope)
    if name == "relu":
        return nn.ReLU()
    if name == "tanh":
        return nn.Tanh()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "gelu":
        return nn.GELU()
    raise ConfigError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")


def build_decoder(
    n_inputs: int,
    n_outputs: int,
    *,
    hidden: Sequence[int] = (),
    activation: str = "leaky_relu",
    dropout: float = 0.0,
) -> nn.Sequential:
    """Build a linear decoder (``hidden=()``) or an MLP.

    Parameters
    ----------
    n_inputs
        Panel size.
    n_outputs
        Genes predicted.
    hidden
        Width of each hidden layer, e.g. ``(9000, 9000)`` for D-GEX's two-layer network.
    activation
        Hidden-layer nonlinearity: ``leaky_relu`` (CAE), ``tanh`` (D-GEX), ``relu``, ...
    dropout
        Dropout probability after each hidden layer (D-GEX: 0.1).
    """
    from torch import nn

    if n_inputs < 1 or n_outputs < 1:
        raise ConfigError(
            f"decoder needs at least one input and output, got {n_inputs} -> {n_outputs}"
        )
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
    layers: list[nn.Module] = []
    width = n_inputs
    for size in hidden:
        if int(size) < 1:
            raise ConfigError(f"hidden layer sizes must be positive, got {list(hidden)}")
        layers.append(nn.Linear(width, int(size)))
        layers.append(make_activation(activation))
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = int(size)
    layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)
