"""Simulate a GEO-scale expression compendium, calibrated on real GPL96 arrays.

The simulated matrix has the shape and gene identities of the D-GEX GEO compendium
(943 L1000 landmarks then 9,520 targets, log2 scale) and is written block by block to
a dense ``.h5ad``. The generative model (``docs/simulation.md``) has tissue-like sample
clusters, a low-rank factor structure with gene modules, gene-specific saturating and
gated nonlinear responses, and heavy-tailed noise; each gene's marginal mean and
standard deviation match 74 real GPL96 arrays (``genesel/data/gpl96_calibration.npz``).

Every sample depends only on ``seed``, its row number and the genes kept: the output
does not depend on ``block_rows``, and a shorter run is a prefix of a longer one.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from genesel import __version__
from genesel.errors import ConfigError
from genesel.io.gene_maps import dgex_gene_map
from genesel.io.h5ad_writer import DenseH5adWriter

logger = logging.getLogger(__name__)

__all__ = [
    "Calibration",
    "CompendiumModel",
    "SimulationParams",
    "build_model",
    "factor_spectrum",
    "load_calibration",
    "noise_free_rows",
    "simulate_compendium",
    "simulate_latent_block",
    "simulated_genes",
]

#: Samples in the GEO compendium D-GEX used (after its de-duplication).
GEO_N_OBS = 112_171
#: Rows per random stream: the unit of reproducibility, whatever ``block_rows`` is.
LATENT_BLOCK_ROWS = 1024
#: Samples used to estimate each gene's signal moments when the model is built.
MOMENT_SAMPLES = 8 * LATENT_BLOCK_ROWS
#: Intervals of the piecewise-linear Student-t quantile function the noise is drawn from.
NOISE_QUANTILE_LEVELS = 1 << 16
#: Simulated values are clipped to this log2 range (a 16-bit scanner's range).
VALUE_RANGE = (0.0, 16.0)
#: Leading calibration eigenvalues a power law is fitted to for the factor spectrum.
SPECTRUM_FIT_EIGENVALUES = 20
CALIBRATION_FILE = "gpl96_calibration.npz"

# Named random streams: numpy.random.default_rng([seed, STREAM, ...]).
_MODEL_STREAM, _MOMENT_STREAM, _GENE_SUBSET_STREAM, _LATENT_STREAM, _NOISE_STREAM = range(5)
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
class SimulationParams:
    """Parameters of the generative model (see ``docs/simulation.md``).

    Attributes
    ----------
    n_clusters
        Tissue-like sample clusters C.
    rank
        Latent factors K.
    n_programs
        Regulatory programs J: shared directions in factor space that genes respond to
        nonlinearly (each gene with its own steepness and threshold).
    noise_df
        Degrees of freedom of the Student-t noise (> 2; ``inf`` gives Gaussian noise).
    noise_fraction
        Noise share of the variance of a target gene of median brightness (0..1).
    landmark_noise_odds
        Odds ratio of a landmark's noise share to a target's of the same brightness.
    noise_mean_slope
        Fall of the noise log-odds per standard deviation of gene mean (bright genes are cleaner).
    nonlinear_share
        Mean share of a gene's signal variance from its nonlinear responses.
    gated_share
        Part of ``nonlinear_share`` from gated products (the rest is saturating).
    tissue_share
        Mean share of a gene's signal variance from cluster-specific offsets.
    landmark_nonlinear_ratio
        A landmark's mean nonlinear share relative to a target's (landmarks respond more linearly).
    cluster_separation
        Standard deviation of cluster centroids in factor space (within-cluster sd is about 1).
    cluster_concentration
        Dirichlet concentration of the cluster weights (smaller: more unequal clusters);
        10% of the weight is spread evenly, so every cluster has at least 0.1 / n_clusters.
    loading_density
        Chance that a target gene loads on each factor besides its module's.
    spectrum_decay
        Factor variances fall as ``k ** -spectrum_decay``; ``None`` fits it to the calibration.
    share_concentration
        Dirichlet concentration of each gene's variance shares around their means.
    """

    n_clusters: int = 24
    rank: int = 48
    n_programs: int = 16
    noise_df: float = 5.0
    noise_fraction: float = 0.2
    landmark_noise_odds: float = 0.5
    noise_mean_slope: float = 0.5
    nonlinear_share: float = 0.5
    gated_share: float = 0.5
    tissue_share: float = 0.1
    landmark_nonlinear_ratio: float = 0.1
    cluster_separation: float = 1.0
    cluster_concentration: float = 1.0
    loading_density: float = 0.25
    spectrum_decay: float | None = None
    share_concentration: float = 8.0

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid parameter."""
        checks = [
            ("n_clusters", self.n_clusters >= 1, "an integer >= 1"),
            ("rank", self.rank >= 2, "an integer >= 2"),
            ("n_programs", self.n_programs >= 1, "an integer >= 1"),
            ("noise_df", self.noise_df > 2, "> 2 (the noise needs a finite variance), or inf"),
            ("noise_fraction", 0 < self.noise_fraction < 1, "strictly between 0 and 1"),
            ("landmark_noise_odds", self.landmark_noise_odds > 0, "> 0"),
            ("noise_mean_slope", math.isfinite(self.noise_mean_slope), "finite"),
            ("nonlinear_share", 0 <= self.nonlinear_share < 1, "in [0, 1)"),
            ("gated_share", 0 <= self.gated_share <= 1, "in [0, 1]"),
            ("tissue_share", 0 <= self.tissue_share < 1, "in [0, 1)"),
            ("landmark_nonlinear_ratio", 0 <= self.landmark_nonlinear_ratio <= 1, "in [0, 1]"),
            ("cluster_separation", self.cluster_separation >= 0, ">= 0"),
            ("cluster_concentration", self.cluster_concentration > 0, "> 0"),
            ("loading_density", 0 <= self.loading_density <= 1, "in [0, 1]"),
            (
                "spectrum_decay",
                self.spectrum_decay is None or self.spectrum_decay >= 0,
                ">= 0 or None",
            ),
            ("share_concentration", self.share_concentration > 0, "> 0"),
        ]
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(
                    f"simulation parameter {name}={getattr(self, name)!r} must be {expected}"
                )
        for name in ("n_clusters", "rank", "n_programs"):
            if int(getattr(self, name)) != getattr(self, name):
                raise ConfigError(
                    f"simulation parameter {name}={getattr(self, name)!r} must be an integer"
                )
        if self.nonlinear_share + self.tissue_share >= 1:
            raise ConfigError(
                f"nonlinear_share + tissue_share = {self.nonlinear_share + self.tissue_share} must be < 1 "
                "(the rest of the signal is linear in the factors)"
            )


@dataclass(frozen=True)
class Calibration:
    """Per-gene statistics of 74 real GPL96 arrays (see ``benchmarks/make_gpl96_calibration.py``).

    Attributes
    ----------
    genes
        Indexed by ``gene_id`` in D-GEX order: ``mean``, ``sd`` (log2), ``landmark``.
    eigenvalue_fraction
        Leading eigenvalues of the gene-gene correlation matrix, as fractions of their sum.
    source
        Where the statistics come from.
    """

    genes: pd.DataFrame
    eigenvalue_fraction: np.ndarray
    source: str

    def fitted_spectrum_decay(self, n_eigenvalues: int = SPECTRUM_FIT_EIGENVALUES) -> float:
        """Return the power-law exponent of the leading correlation eigenvalues."""
        eigen = self.eigenvalue_fraction[:n_eigenvalues]
        slope = np.polyfit(np.log(np.arange(1, len(eigen) + 1)), np.log(eigen), 1)[0]
        return float(-slope)


@cache
def load_calibration() -> Calibration:
    """Return the GPL96 calibration shipped in ``genesel/data``."""
    with (resources.files("genesel") / "data" / CALIBRATION_FILE).open("rb") as handle:
        with np.load(handle) as data:
            genes = pd.DataFrame(
                {
                    "mean": data["mean"].astype(np.float64),
                    "sd": data["sd"].astype(np.float64),
                    "landmark": data["landmark"],
                },
                index=pd.Index(data["gene_id"].astype(str), name="gene_id"),
            )
            return Calibration(
                genes, data["eigenvalue_fraction"].astype(np.float64), str(data["source"])
            )


def simulated_genes(n_genes: int | None = None, *, seed: int = 0) -> pd.DataFrame:
    """Return the genes of a simulated compendium, landmarks first.

    Parameters
    ----------
    n_genes
        ``None`` keeps all 10,463 D-GEX genes. Otherwise the first landmarks (in D-GEX
        order) and a seeded subset of targets, in the D-GEX proportion 943 : 9,520.
    seed
        Seed of the target subset.

    Returns
    -------
    DataFrame indexed by ``gene_id`` with ``symbol``, ``landmark`` and ``position`` (the
    gene's row in the full D-GEX universe).
    """
    universe = dgex_gene_map()[["symbol", "landmark"]]
    universe["position"] = np.arange(len(universe))
    if n_genes is None:
        return universe
    if int(n_genes) != n_genes or not 1 <= n_genes <= len(universe):
        raise ConfigError(
            f"n_genes={n_genes!r} must be an integer from 1 to {len(universe)} (or None for all)"
        )
    landmarks = universe[universe["landmark"]]
    targets = universe[~universe["landmark"]]
    n_landmarks = min(len(landmarks), max(1, round(n_genes * len(landmarks) / len(universe))))
    n_targets = n_genes - n_landmarks
    rng = np.random.default_rng([seed, _GENE_SUBSET_STREAM])
    chosen = np.sort(rng.choice(len(targets), size=n_targets, replace=False))
    return pd.concat([landmarks.iloc[:n_landmarks], targets.iloc[chosen]])


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
    def n_genes(self) -> int:
        """Number of genes simulated."""
        return len(self.genes)


def build_model(
    params: SimulationParams, *, seed: int = 0, n_genes: int | None = None
) -> CompendiumModel:
    """Draw the model's parameters and scale every gene to its calibrated mean and sd.

    Gene parameters are drawn for the whole D-GEX universe and then subset, so a gene
    behaves the same whichever other genes are kept.
    """
    params.validate()
    calibration = load_calibration()
    genes = simulated_genes(n_genes, seed=seed)
    if not calibration.genes.index.equals(dgex_gene_map().index):
        raise RuntimeError(f"{CALIBRATION_FILE} does not follow the D-GEX gene order; rebuild it")
    decay = (
        calibration.fitted_spectrum_decay()
        if params.spectrum_decay is None
        else float(params.spectrum_decay)
    )
    spectrum = factor_spectrum(params.rank, decay)
    rng = np.random.default_rng([seed, _MODEL_STREAM])
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
        noise_quantiles=_noise_quantile_table(params.noise_df),
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


def _noise_quantile_table(df: float, levels: int = NOISE_QUANTILE_LEVELS) -> np.ndarray:
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


def _draw_noise(
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


def _draw_latent(
    model: CompendiumModel, rng: np.random.Generator, n_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draw cluster labels and factor scores h = centre[c] + scale[c] * z for ``n_rows`` samples."""
    clusters = rng.choice(len(model.cluster_weights), size=n_rows, p=model.cluster_weights)
    z = rng.standard_normal((n_rows, model.params.rank), dtype=np.float32)
    scores = model.cluster_centers[clusters] + model.cluster_scales[clusters] * z
    return clusters, scores


def _response_components(
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
    components = _response_components(model, clusters, scores)
    signal = components[0]
    for part in components[1:]:
        signal += part
    signal += model.offset
    return signal


def _scale_to_calibration(
    model: CompendiumModel, shares: np.ndarray, mean: np.ndarray, sd: np.ndarray
) -> CompendiumModel:
    """Scale each gene's components to its variance shares, then to the calibrated mean and sd.

    Component moments are estimated on ``MOMENT_SAMPLES`` draws of the latent variables.
    """
    n_genes = model.n_genes
    first = np.zeros((4, n_genes))
    second = np.zeros((4, 4, n_genes))
    rng = np.random.default_rng([model.seed, _MOMENT_STREAM])
    for _ in range(MOMENT_SAMPLES // LATENT_BLOCK_ROWS):
        components = _response_components(model, *_draw_latent(model, rng, LATENT_BLOCK_ROWS))
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


def simulate_latent_block(
    model: CompendiumModel, block_index: int, n_rows: int = LATENT_BLOCK_ROWS
) -> tuple[np.ndarray, np.ndarray]:
    """Return the clusters and log2 expression of the first ``n_rows`` samples of a latent block.

    Samples ``block_index * LATENT_BLOCK_ROWS`` onwards; each block has its own random
    streams, so a sample's values depend only on the seed, its row and the genes.
    """
    if not 1 <= n_rows <= LATENT_BLOCK_ROWS:
        raise ValueError(f"n_rows={n_rows} must be in 1..{LATENT_BLOCK_ROWS}")
    latent_rng = np.random.default_rng([model.seed, _LATENT_STREAM, block_index])
    clusters, scores = _draw_latent(model, latent_rng, LATENT_BLOCK_ROWS)
    # The whole block goes through the matrix products, so that rounding does not depend on n_rows.
    values = noise_free_rows(model, clusters, scores)[:n_rows]
    clusters = clusters[:n_rows]
    noise_rng = np.random.default_rng([model.seed, _NOISE_STREAM, block_index])
    noise = _draw_noise(noise_rng, model.noise_quantiles, (n_rows, model.n_genes))
    noise *= model.noise_sd
    values += noise
    np.clip(values, *VALUE_RANGE, out=values)
    return clusters, values


def simulate_compendium(
    out_path: str | os.PathLike[str],
    *,
    n_obs: int = GEO_N_OBS,
    seed: int = 0,
    n_genes: int | None = None,
    n_clusters: int = SimulationParams.n_clusters,
    rank: int = SimulationParams.rank,
    noise_df: float = SimulationParams.noise_df,
    block_rows: int = 4096,
    progress: bool = True,
    **model_params: Any,
) -> Path:
    """Write a simulated GEO-like compendium (samples x genes, log2) to a dense ``.h5ad``.

    Parameters
    ----------
    out_path
        Destination ``.h5ad``; written under a temporary name and renamed when complete.
    n_obs
        Samples (default: the 112,171 of the GEO compendium).
    seed
        Seed of everything: model, gene subset, samples and noise.
    n_genes
        ``None`` for all 10,463 D-GEX genes; else the first landmarks and a seeded subset
        of targets in the D-GEX proportion (see :func:`simulated_genes`).
    n_clusters, rank, noise_df
        Tissue-like clusters, latent factors, Student-t degrees of freedom.
    block_rows
        Rows written at a time (memory use); does not change the values.
    progress
        Show a progress bar.
    **model_params
        Further fields of :class:`SimulationParams`.

    Returns
    -------
    The path written. ``X`` is float32 log2 expression; ``obs`` has ``cluster``; ``var``
    (index ``gene_id``) has ``symbol``, ``landmark``, ``noise_var`` (log2 units) and
    ``noise_fraction``; ``uns["genesel"]`` has ``noise_floor``, ``noise_floor_targets``
    and ``simulation`` (every parameter).
    """
    if int(n_obs) != n_obs or n_obs < 1:
        raise ConfigError(f"n_obs={n_obs!r} must be a positive integer")
    if int(block_rows) != block_rows or block_rows < 1:
        raise ConfigError(f"block_rows={block_rows!r} must be a positive integer")
    unknown = set(model_params) - {f.name for f in dataclasses.fields(SimulationParams)}
    if unknown:
        raise ConfigError(
            f"unknown simulation parameters {sorted(unknown)}; see genesel.simulate.SimulationParams"
        )
    params = SimulationParams(n_clusters=n_clusters, rank=rank, noise_df=noise_df, **model_params)
    model = build_model(params, seed=seed, n_genes=n_genes)
    n_obs, block_rows = int(n_obs), int(block_rows)
    var = model.genes.copy()
    var["noise_var"] = (model.noise_sd.astype(np.float64)) ** 2
    var["noise_fraction"] = model.noise_fraction
    clusters = np.empty(n_obs, dtype=np.int64)
    buffer = np.empty((min(block_rows, n_obs), model.n_genes), dtype=np.float32)
    filled, written = 0, 0
    with (
        DenseH5adWriter(out_path, n_obs=n_obs, var=var) as writer,
        tqdm(total=n_obs, unit="rows", desc="simulate", disable=not progress) as bar,
    ):
        for block_index, start in enumerate(range(0, n_obs, LATENT_BLOCK_ROWS)):
            n_rows = min(LATENT_BLOCK_ROWS, n_obs - start)
            block_clusters, values = simulate_latent_block(model, block_index, n_rows)
            clusters[start : start + n_rows] = block_clusters
            taken = 0
            while taken < n_rows:
                step = min(n_rows - taken, len(buffer) - filled)
                buffer[filled : filled + step] = values[taken : taken + step]
                filled, taken = filled + step, taken + step
                if filled == len(buffer) or written + filled == n_obs:
                    writer.write_rows(written, buffer[:filled])
                    bar.update(filled)
                    written, filled = written + filled, 0
        path = writer.close(obs=_obs_frame(model, clusters), uns=_uns(model, n_obs))
    logger.info(
        "wrote simulated compendium %s: %d samples x %d genes (%d landmarks), noise floor %.3f",
        path,
        n_obs,
        model.n_genes,
        int(model.genes["landmark"].sum()),
        float(model.noise_fraction.mean()),
    )
    return path


def _obs_frame(model: CompendiumModel, clusters: np.ndarray) -> pd.DataFrame:
    width = max(6, len(str(len(clusters) - 1)))
    names = [f"cluster_{c:02d}" for c in range(model.params.n_clusters)]
    return pd.DataFrame(
        {"cluster": pd.Categorical.from_codes(clusters, categories=names)},
        index=pd.Index([f"sample_{i:0{width}d}" for i in range(len(clusters))]),
    )


def _uns(model: CompendiumModel, n_obs: int) -> dict[str, Any]:
    landmark = model.genes["landmark"].to_numpy()
    targets = model.noise_fraction[~landmark]
    params = {k: v for k, v in dataclasses.asdict(model.params).items() if v is not None}
    params["spectrum_decay"] = model.spectrum_decay
    return {
        "genesel": {
            "noise_floor": float(model.noise_fraction.mean()),
            "noise_floor_targets": float(targets.mean()) if len(targets) else float("nan"),
            "simulation": {
                **params,
                "seed": int(model.seed),
                "n_obs": int(n_obs),
                "n_genes": int(model.n_genes),
                "n_landmarks": int(landmark.sum()),
                "cluster_weights": model.cluster_weights,
                "latent_block_rows": LATENT_BLOCK_ROWS,
                "value_range": np.asarray(VALUE_RANGE),
                "calibration": load_calibration().source,
                "genesel_version": __version__,
            },
        }
    }
