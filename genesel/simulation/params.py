"""Inputs of the simulator: model parameters, the GPL96 calibration and the simulated genes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import pandas as pd

from genesel.errors import ConfigError
from genesel.io.gene_maps import dgex_gene_map

#: Leading calibration eigenvalues a power law is fitted to for the factor spectrum.
SPECTRUM_FIT_EIGENVALUES = 20
CALIBRATION_FILE = "gpl96_calibration.npz"
# Named random streams: numpy.random.default_rng([seed, STREAM, ...]).
MODEL_STREAM, MOMENT_STREAM, GENE_SUBSET_STREAM, LATENT_STREAM, NOISE_STREAM = range(5)


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
                    f"simulation parameter {name}={getattr(self, name)!r} must be {expected}",
                    parameter=name,
                )
        for name in ("n_clusters", "rank", "n_programs"):
            if int(getattr(self, name)) != getattr(self, name):
                raise ConfigError(
                    f"simulation parameter {name}={getattr(self, name)!r} must be an integer",
                    parameter=name,
                )
        if self.nonlinear_share + self.tissue_share >= 1:
            raise ConfigError(
                f"nonlinear_share + tissue_share = {self.nonlinear_share + self.tissue_share} must be < 1 "
                "(the rest of the signal is linear in the factors)",
                parameter="nonlinear_share",
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


def simulated_genes(n_vars: int | None = None, *, seed: int = 0) -> pd.DataFrame:
    """Return the genes of a simulated compendium, landmarks first.

    Parameters
    ----------
    n_vars
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
    if n_vars is None:
        return universe
    if int(n_vars) != n_vars or not 1 <= n_vars <= len(universe):
        raise ConfigError(
            f"n_vars={n_vars!r} must be an integer from 1 to {len(universe)} (or None for all)",
            parameter="n_vars",
        )
    landmarks = universe[universe["landmark"]]
    targets = universe[~universe["landmark"]]
    n_landmarks = min(len(landmarks), max(1, round(n_vars * len(landmarks) / len(universe))))
    n_targets = n_vars - n_landmarks
    rng = np.random.default_rng([seed, GENE_SUBSET_STREAM])
    chosen = np.sort(rng.choice(len(targets), size=n_targets, replace=False))
    return pd.concat([landmarks.iloc[:n_landmarks], targets.iloc[chosen]])
