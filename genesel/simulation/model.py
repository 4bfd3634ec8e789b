"""Drawing a simulation model: clusters, gene responses and noise, scaled to the calibration.

The model (``docs/simulation.md``) has tissue-like sample clusters, a low-rank factor
structure with gene modules, gene-specific saturating and gated nonlinear responses, and
heavy-tailed noise; each gene's marginal mean and standard deviation match 74 real GPL96
arrays. :mod:`genesel.simulation.sampling` draws samples from it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from genesel.io.gene_maps import dgex_gene_map
from genesel.simulation.params import (
    CALIBRATION_FILE,
    MODEL_STREAM,
    MOMENT_STREAM,
    Calibration,
    SimulationParams,
    load_calibration,
    simulated_genes,
)
from genesel.simulation.sampling import LATENT_BLOCK_ROWS, draw_latent, response_components

#: Samples used to estimate each gene's signal moments when the model is built.
MOMENT_SAMPLES = 8 * LATENT_BLOCK_ROWS
#: Intervals of the piecewise-linear Student-t quantile function the noise is drawn from.
NOISE_QUANTILE_LEVELS = 1 << 16
# Shape of the nonlinear responses (in units of the factor scores' standard deviation).
_STEEPNESS_RANGE = (1.5, 4.0)
_THRESHOLD_SD = 0.8
_CLUSTER_SCALE_LOG_SD = 0.3
_CLUSTER_WEIGHT_FLOOR = 0.1  # share of the samples spread evenly, so no cluster is empty
_TISSUE_SPECIFIC_FRACTION = 0.3
_MODULE_SHARE = 1 / 3
_NOISE_LOGIT_JITTER = 0.5
_NOISE_FRACTION_RANGE = (0.01, 0.95)


@dataclass(frozen=True)
class CompendiumModel:
    """A drawn simulation model for a set of genes; :func:`simulate_latent_block` generates samples.

    Per-gene arrays (last axis = genes) are already scaled to log2 units (see
    ``docs/simulation.md``). With factor scores h, cluster c and program scores
    ``s = h @ programs``, gene g's value is ``offset + h @ linear[:, g]
    + saturating_out * tanh(saturating_gain * s[saturating_program] - saturating_bias)
    + gate_out * h[gate_factor] * (1 + tanh(gate_gain * s[gate_program] - gate_bias))
    + tissue[c, g] + noise_sd * t`` (``tanh(x / 2) = 2 expit(x) - 1``: logistic curves).
    """

    params: SimulationParams
    seed: int
    genes: pd.DataFrame
    cluster_weights: np.ndarray
    cluster_centers: np.ndarray
    cluster_scales: np.ndarray
    linear: np.ndarray
    programs: np.ndarray
    saturating_program: np.ndarray
    saturating_gain: np.ndarray
    saturating_bias: np.ndarray
    saturating_out: np.ndarray
    gate_factor: np.ndarray
    gate_program: np.ndarray
    gate_gain: np.ndarray
    gate_bias: np.ndarray
    gate_out: np.ndarray
    tissue: np.ndarray
    offset: np.ndarray
    noise_sd: np.ndarray
    noise_fraction: np.ndarray
    noise_quantiles: np.ndarray
    spectrum_decay: float

    @property
    def n_vars(self) -> int:
        """Number of genes simulated."""
        return len(self.genes)


def build_model(
    params: SimulationParams, *, seed: int = 0, n_vars: int | None = None
) -> CompendiumModel:
    """Draw the model's parameters and scale every gene to its calibrated mean and sd.

    Gene parameters are drawn for the whole D-GEX universe and then subset, so a gene
    behaves the same whichever other genes are kept.
    """
    params.validate()
    calibration = load_calibration()
    genes = simulated_genes(n_vars, seed=seed)
    if not calibration.genes.index.equals(dgex_gene_map().index):
        raise RuntimeError(f"{CALIBRATION_FILE} does not follow the D-GEX gene order; rebuild it")
    decay = (
        calibration.fitted_spectrum_decay()
        if params.spectrum_decay is None
        else float(params.spectrum_decay)
    )
    spectrum = factor_spectrum(params.rank, decay)
    rng = np.random.default_rng([seed, MODEL_STREAM])
    clusters = _draw_clusters(rng, params, spectrum)
    raw = _draw_gene_responses(rng, params, calibration, spectrum)
    programs = raw.pop("programs")
    shares = raw.pop("shares")
    keep = genes["position"].to_numpy()
    per_gene = {name: value[..., keep] for name, value in raw.items()}
    ones = np.ones(len(keep), np.float32)
    model = CompendiumModel(
        params=params,
        seed=seed,
        genes=genes.drop(columns="position"),
        **clusters,
        programs=programs,
        **per_gene,
        saturating_out=ones,
        gate_out=ones,
        offset=np.zeros(len(keep), np.float32),
        noise_sd=np.zeros(len(keep), np.float32),
        noise_quantiles=noise_quantile_table(params.noise_df),
        spectrum_decay=decay,
    )
    mean = calibration.genes["mean"].to_numpy()[keep]
    sd = calibration.genes["sd"].to_numpy()[keep]
    return _scale_to_calibration(model, shares[:, keep], mean, sd)


def factor_spectrum(rank: int, decay: float) -> np.ndarray:
    """Return the power-law factor weights ``k ** -decay / sum``, k = 1..rank."""
    weights = np.arange(1, rank + 1, dtype=np.float64) ** -decay
    return weights / weights.sum()


def _draw_clusters(
    rng: np.random.Generator, params: SimulationParams, spectrum: np.ndarray
) -> dict[str, np.ndarray]:
    """Draw cluster weights, centres (spread along the leading factors) and factor scales."""
    n_clusters, rank = params.n_clusters, params.rank
    weights = np.sort(rng.dirichlet(np.full(n_clusters, params.cluster_concentration)))[::-1]
    weights = (1 - _CLUSTER_WEIGHT_FLOOR) * weights + _CLUSTER_WEIGHT_FLOOR / n_clusters
    centers = rng.standard_normal((n_clusters, rank)) * (
        params.cluster_separation * np.sqrt(rank * spectrum)
    )
    scales = np.exp(rng.normal(0.0, _CLUSTER_SCALE_LOG_SD, size=(n_clusters, rank)))
    return {
        "cluster_weights": weights / weights.sum(),
        "cluster_centers": centers.astype(np.float32),
        "cluster_scales": scales.astype(np.float32),
    }


def _draw_gene_responses(
    rng: np.random.Generator,
    params: SimulationParams,
    calibration: Calibration,
    spectrum: np.ndarray,
) -> dict[str, np.ndarray]:
    """Draw unscaled response parameters for every gene of the universe (columns)."""
    rank, n_all = params.rank, len(calibration.genes)
    landmark = calibration.genes["landmark"].to_numpy()
    columns = np.arange(n_all)
    # Population variance of each factor score: between-cluster plus within-cluster.
    score_var = params.cluster_separation**2 * rank * spectrum + math.exp(
        2 * _CLUSTER_SCALE_LOG_SD**2
    )

    # Linear part: a module factor per gene plus loadings whose variances follow the
    # spectrum; landmarks load on every factor, a target on factor k with a chance falling
    # from 1 (k = 1) to loading_density (k = rank); the module carries about a third.
    module_p = np.sqrt(spectrum) / np.sqrt(spectrum).sum()
    module = rng.choice(rank, size=n_all, p=module_p)
    linear = rng.standard_normal((rank, n_all)) * np.sqrt(spectrum)[:, None]
    load_chance = params.loading_density ** (np.arange(rank) / (rank - 1))
    linear *= (rng.random((rank, n_all)) < load_chance[:, None]) | landmark
    dense_var = (linear**2 * score_var[:, None]).sum(axis=0)
    module_loading = np.sqrt(
        _MODULE_SHARE
        / (1 - _MODULE_SHARE)
        * np.maximum(dense_var, spectrum[module])
        / score_var[module]
    )
    linear[module, columns] = (
        rng.choice([-1.0, 1.0], size=n_all)
        * module_loading
        * (1 + 0.25 * np.abs(rng.standard_normal(n_all)))
    )

    def directions(main_factor: np.ndarray) -> np.ndarray:
        """Unit directions in factor space: a main factor plus two random ones, one per column."""
        n = len(main_factor)
        direction = np.zeros((rank, n))
        direction[main_factor, np.arange(n)] = 1.0
        for _ in range(2):
            np.add.at(direction, (rng.integers(0, rank, n), np.arange(n)), rng.normal(0.0, 0.5, n))
        return direction / np.linalg.norm(direction, axis=0)

    # Regulatory programs: shared directions u_j; program scores s_j = u_j.h.
    programs = directions(rng.choice(rank, size=params.n_programs, p=module_p))
    program_sd = np.sqrt((programs**2 * score_var[:, None]).sum(axis=0))

    def switch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pick a program per gene; steepness and threshold in units of the program score's sd.

        Returns the program, and gain and bias of ``tanh(gain * s - bias)``, which equals
        ``2 * expit(steepness * (s - threshold)) - 1`` (tanh is the faster to evaluate).
        """
        program = rng.integers(0, params.n_programs, n_all)
        gain = 0.5 * rng.uniform(*_STEEPNESS_RANGE, size=n_all) / program_sd[program]
        threshold = rng.normal(0.0, _THRESHOLD_SD, n_all) * program_sd[program]
        return program, gain, gain * threshold

    # Saturating response: expit(gain_g * (s_j(g) - threshold_g)).
    saturating_program, saturating_gain, saturating_bias = switch()
    # Gated product: h_k(g) * expit(gain'_g * (s_j'(g) - threshold'_g)): the gene's module
    # factor acts on it only where program j' is on.
    gate_program, gate_gain, gate_bias = switch()
    # Tissue-specific offsets: each gene is shifted in about 30% of the clusters.
    tissue = rng.standard_normal((params.n_clusters, n_all))
    tissue *= rng.random((params.n_clusters, n_all)) < _TISSUE_SPECIFIC_FRACTION

    # Variance shares of (linear, saturating, gated, tissue) per gene; landmarks respond
    # more linearly (the L1000 genes were chosen to predict the others linearly).
    shares = np.zeros((4, n_all))
    for is_landmark in (False, True):
        nonlinear = params.nonlinear_share * (
            params.landmark_nonlinear_ratio if is_landmark else 1.0
        )
        mean_shares = np.array(
            [
                1 - nonlinear - params.tissue_share,
                nonlinear * (1 - params.gated_share),
                nonlinear * params.gated_share,
                params.tissue_share,
            ]
        )
        present = mean_shares > 0
        rows = np.ix_(present, landmark == is_landmark)
        shares[rows] = rng.dirichlet(
            params.share_concentration * mean_shares[present],
            size=int((landmark == is_landmark).sum()),
        ).T

    # Noise share: logistic in gene brightness, lower for landmarks.
    from scipy import special  # here, not at import: `genesel` imports this module for its --help

    brightness = calibration.genes["mean"].to_numpy()
    brightness = (brightness - np.median(brightness)) / brightness.std()
    logit = (
        special.logit(params.noise_fraction)
        - params.noise_mean_slope * brightness
        + math.log(params.landmark_noise_odds) * landmark
        + rng.normal(0.0, _NOISE_LOGIT_JITTER, n_all)
    )
    noise_fraction = np.clip(special.expit(logit), *_NOISE_FRACTION_RANGE)
    return {
        "linear": linear.astype(np.float32),
        "programs": programs.astype(np.float32),
        "saturating_program": saturating_program,
        "saturating_gain": saturating_gain.astype(np.float32),
        "saturating_bias": saturating_bias.astype(np.float32),
        "gate_factor": module,
        "gate_program": gate_program,
        "gate_gain": gate_gain.astype(np.float32),
        "gate_bias": gate_bias.astype(np.float32),
        "tissue": tissue.astype(np.float32),
        "shares": shares,
        "noise_fraction": noise_fraction,
    }


def noise_quantile_table(df: float, levels: int = NOISE_QUANTILE_LEVELS) -> np.ndarray:
    """Return ``levels + 1`` knots of the Student-t(df) quantile function, scaled to unit variance.

    Knot i is the quantile at i / levels; the two infinite end knots are replaced by the
    quantiles at 0.5 / levels and 1 - 0.5 / levels. Drawing U uniformly and interpolating
    linearly between knots gives noise of exactly unit variance (computed in closed form).
    """
    from scipy import stats  # here, not at import (scipy.stats alone takes about a CPU-second)

    probabilities = np.arange(levels + 1) / levels
    probabilities[0], probabilities[-1] = 0.5 / levels, 1 - 0.5 / levels
    knots = stats.norm.ppf(probabilities) if math.isinf(df) else stats.t.ppf(probabilities, df)
    knots = (knots - knots[::-1]) / 2  # exactly symmetric, mean zero
    low, high = knots[:-1], knots[1:]
    variance = np.mean((low**2 + low * high + high**2) / 3)
    return (knots / np.sqrt(variance)).astype(np.float32)


def _scale_to_calibration(
    model: CompendiumModel, shares: np.ndarray, mean: np.ndarray, sd: np.ndarray
) -> CompendiumModel:
    """Scale each gene's components to its variance shares, then to the calibrated mean and sd.

    Component moments are estimated on ``MOMENT_SAMPLES`` draws of the latent variables.
    """
    n_vars = model.n_vars
    first = np.zeros((4, n_vars))
    second = np.zeros((4, 4, n_vars))
    rng = np.random.default_rng([model.seed, MOMENT_STREAM])
    for _ in range(MOMENT_SAMPLES // LATENT_BLOCK_ROWS):
        components = response_components(model, *draw_latent(model, rng, LATENT_BLOCK_ROWS))
        for a in range(4):
            first[a] += components[a].sum(axis=0, dtype=np.float64)
            for b in range(a, 4):
                second[a, b] += np.einsum(
                    "ij,ij->j", components[a], components[b], dtype=np.float64
                )
                second[b, a] = second[a, b]
    first /= MOMENT_SAMPLES
    covariance = second / MOMENT_SAMPLES - first[:, None] * first[None, :]
    variance = np.einsum("aag->ag", covariance)
    signal_var = 1.0 - model.noise_fraction
    weight = np.where(
        variance > 1e-12, np.sqrt(shares * signal_var / np.maximum(variance, 1e-12)), 0.0
    )
    total = np.einsum("ag,abg,bg->g", weight, covariance, weight)
    weight *= np.sqrt(signal_var / np.maximum(total, 1e-12))
    weight *= sd  # log2 units
    offset = mean - (weight * first).sum(axis=0)
    return dataclasses.replace(
        model,
        linear=(model.linear * weight[0]).astype(np.float32),
        saturating_out=(model.saturating_out * weight[1]).astype(np.float32),
        gate_out=(model.gate_out * weight[2]).astype(np.float32),
        tissue=(model.tissue * weight[3]).astype(np.float32),
        offset=offset.astype(np.float32),
        noise_sd=(sd * np.sqrt(model.noise_fraction)).astype(np.float32),
    )
