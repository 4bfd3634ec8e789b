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
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from genesel import __version__
from genesel.errors import ConfigError
from genesel.io.h5ad_writer import DenseH5adWriter
from genesel.simulation.model import CompendiumModel, build_model
from genesel.simulation.params import SimulationParams, load_calibration
from genesel.simulation.sampling import LATENT_BLOCK_ROWS, VALUE_RANGE, simulate_latent_block

logger = logging.getLogger(__name__)

#: Samples in the GEO compendium D-GEX used (after its de-duplication).
GEO_N_OBS = 112_171
#: Rows written at a time by :func:`simulate_compendium` (memory only, not the values).
BLOCK_ROWS = 4096


def simulate_compendium(
    out_path: str | os.PathLike[str],
    *,
    n_obs: int = GEO_N_OBS,
    seed: int = 0,
    n_vars: int | None = None,
    n_clusters: int = SimulationParams.n_clusters,
    rank: int = SimulationParams.rank,
    noise_df: float = SimulationParams.noise_df,
    block_rows: int = BLOCK_ROWS,
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
    n_vars
        ``None`` for all 10,463 D-GEX genes; else the first landmarks and a seeded subset
        of targets in the D-GEX proportion (see :func:`simulated_genes`).
    n_clusters, rank, noise_df
        Tissue-like clusters, latent factors, Student-t degrees of freedom.
    block_rows
        Rows written at a time (memory use, default 4,096); does not change the values.
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
        raise ConfigError(f"n_obs={n_obs!r} must be a positive integer", parameter="n_obs")
    if int(block_rows) != block_rows or block_rows < 1:
        raise ConfigError(
            f"block_rows={block_rows!r} must be a positive integer", parameter="block_rows"
        )
    unknown = set(model_params) - {f.name for f in dataclasses.fields(SimulationParams)}
    if unknown:
        raise ConfigError(
            f"unknown simulation parameters {sorted(unknown)}; see genesel.simulation.params.SimulationParams"
        )
    params = SimulationParams(n_clusters=n_clusters, rank=rank, noise_df=noise_df, **model_params)
    model = build_model(params, seed=seed, n_vars=n_vars)
    n_obs, block_rows = int(n_obs), int(block_rows)
    var = model.genes.copy()
    var["noise_var"] = (model.noise_sd.astype(np.float64)) ** 2
    var["noise_fraction"] = model.noise_fraction
    clusters = np.empty(n_obs, dtype=np.int64)
    buffer = np.empty((min(block_rows, n_obs), model.n_vars), dtype=np.float32)
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
        model.n_vars,
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
                "n_vars": int(model.n_vars),
                "n_landmarks": int(landmark.sum()),
                "cluster_weights": model.cluster_weights,
                "latent_block_rows": LATENT_BLOCK_ROWS,
                "value_range": np.asarray(VALUE_RANGE),
                "calibration": load_calibration().source,
                "genesel_version": __version__,
            },
        }
    }
