"""Sampling from a simulation model: latent variables, responses and noise, block by block.

Every sample depends only on the seed, its row number and the genes kept: each block of
:data:`LATENT_BLOCK_ROWS` rows has its own random streams.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from genesel.simulation.params import LATENT_STREAM, NOISE_STREAM

if TYPE_CHECKING:
    from genesel.simulation.model import CompendiumModel

#: Rows per random stream: the unit of reproducibility, whatever ``block_rows`` is.
LATENT_BLOCK_ROWS = 1024
#: Simulated values are clipped to this log2 range (a 16-bit scanner's range).
VALUE_RANGE = (0.0, 16.0)


def draw_noise(
    rng: np.random.Generator, quantiles: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    """Draw unit-variance Student-t noise by inverse-CDF sampling from one uint32 per value.

    The high 16 bits pick the quantile interval, the low 16 bits the position inside it.
    """
    levels = len(quantiles) - 1
    bits = rng.integers(0, 1 << 32, size=shape, dtype=np.uint32)
    fraction = np.bitwise_and(bits, levels - 1).astype(np.float32)
    fraction *= np.float32(1.0 / levels)
    interval = np.right_shift(bits, 16, out=bits)
    noise = quantiles[interval]
    fraction *= np.diff(quantiles)[interval]
    noise += fraction
    return noise


def draw_latent(
    model: CompendiumModel, rng: np.random.Generator, n_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draw cluster labels and factor scores h = centre[c] + scale[c] * z for ``n_rows`` samples."""
    clusters = rng.choice(len(model.cluster_weights), size=n_rows, p=model.cluster_weights)
    z = rng.standard_normal((n_rows, model.params.rank), dtype=np.float32)
    scores = model.cluster_centers[clusters] + model.cluster_scales[clusters] * z
    return clusters, scores


def response_components(
    model: CompendiumModel, clusters: np.ndarray, scores: np.ndarray
) -> list[np.ndarray]:
    """Return the four signal components (linear, saturating, gated, tissue), samples x genes."""
    linear = scores @ model.linear
    program_scores = scores @ model.programs
    saturating = program_scores[:, model.saturating_program]
    saturating *= model.saturating_gain
    saturating -= model.saturating_bias
    np.tanh(saturating, out=saturating)
    saturating *= model.saturating_out
    gated = program_scores[:, model.gate_program]
    gated *= model.gate_gain
    gated -= model.gate_bias
    np.tanh(gated, out=gated)
    gated += 1.0  # 2 * expit(...): the gate is 0 (off) .. 2 (on)
    gated *= model.gate_out
    gated *= scores[:, model.gate_factor]
    return [linear, saturating, gated, model.tissue[clusters]]


def noise_free_rows(
    model: CompendiumModel, clusters: np.ndarray, scores: np.ndarray
) -> np.ndarray:
    """Return the expected log2 expression (no noise, no clipping) of samples with these latents."""
    components = response_components(model, clusters, scores)
    signal = components[0]
    for part in components[1:]:
        signal += part
    signal += model.offset
    return signal


def simulate_latent_block(
    model: CompendiumModel, block_index: int, n_rows: int = LATENT_BLOCK_ROWS
) -> tuple[np.ndarray, np.ndarray]:
    """Return the clusters and log2 expression of the first ``n_rows`` samples of a latent block.

    Samples ``block_index * LATENT_BLOCK_ROWS`` onwards; each block has its own random
    streams, so a sample's values depend only on the seed, its row and the genes.
    """
    if not 1 <= n_rows <= LATENT_BLOCK_ROWS:
        raise ValueError(f"n_rows={n_rows} must be in 1..{LATENT_BLOCK_ROWS}")
    latent_rng = np.random.default_rng([model.seed, LATENT_STREAM, block_index])
    clusters, scores = draw_latent(model, latent_rng, LATENT_BLOCK_ROWS)
    # The whole block goes through the matrix products, so that rounding does not depend on n_rows.
    values = noise_free_rows(model, clusters, scores)[:n_rows]
    clusters = clusters[:n_rows]
    noise_rng = np.random.default_rng([model.seed, NOISE_STREAM, block_index])
    noise = draw_noise(noise_rng, model.noise_quantiles, (n_rows, model.n_vars))
    noise *= model.noise_sd
    values += noise
    np.clip(values, *VALUE_RANGE, out=values)
    return clusters, values
