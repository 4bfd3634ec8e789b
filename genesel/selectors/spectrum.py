"""The leading principal directions of the standardised train split, and how many rise above the noise.

Used by ``qr`` (:mod:`genesel.selectors.qr`): the directions come from the ``n x n`` Gram
matrix, the exact ``D x D`` covariance or a randomized subspace iteration, and the
Gavish-Donoho threshold or the Marchenko-Pastur edge says how many carry signal.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from genesel.store import Store

#: Rules for the number of principal directions above the noise (``n_components``).
NOISE_THRESHOLDS = ("gd", "mp")
#: Largest train matrix (bytes, float64) whose ``n x n`` Gram matrix gives the principal directions.
GRAM_MAX_BYTES = 2**30


def marchenko_pastur_median(beta: float) -> float:
    """Median of the Marchenko-Pastur law with ratio ``beta <= 1`` and unit variance."""
    import scipy.integrate
    import scipy.optimize

    beta = min(max(float(beta), 1e-12), 1.0)
    low, high = (1.0 - np.sqrt(beta)) ** 2, (1.0 + np.sqrt(beta)) ** 2

    def density(x: float) -> float:
        return float(np.sqrt(max((high - x) * (x - low), 0.0)) / (2.0 * np.pi * beta * x))

    def mass_below(t: float) -> float:
        return float(scipy.integrate.quad(density, low, t, limit=200)[0]) - 0.5

    return float(scipy.optimize.brentq(mass_below, low + 1e-12, high))


def gavish_donoho_rank(values: np.ndarray, *, n_obs: int, n_vars: int) -> tuple[int, float]:
    """Eigenvalues above the Gavish-Donoho optimal hard threshold (unknown noise level).

    The threshold on singular values is ``omega(beta) * median singular value`` with
    ``omega(beta) = 0.56 beta^3 - 0.95 beta^2 + 1.82 beta + 1.43`` and
    ``beta = min(n, D) / max(n, D)`` (Gavish & Donoho 2014, eq. 5), i.e. eigenvalues above
    ``omega^2`` times the median of the ``min(n, D)`` nonzero ones. Without the whole nonzero
    spectrum, the Marchenko-Pastur edge with unit noise (:func:`marchenko_pastur_rank`).
    Returns ``(r, eigenvalue threshold)``.
    """
    values = np.sort(np.asarray(values, dtype=np.float64))[::-1]
    m = min(n_obs, n_vars)
    if values.size < m:
        rank, _, edge = marchenko_pastur_rank(values, n_obs=n_obs, n_vars=n_vars)
        return rank, edge
    beta = m / max(n_obs, n_vars)
    omega = 0.56 * beta**3 - 0.95 * beta**2 + 1.82 * beta + 1.43
    threshold = float(omega**2 * np.median(values[:m]))
    return int((values > threshold).sum()), threshold


def marchenko_pastur_rank(
    values: np.ndarray, *, n_obs: int, n_vars: int
) -> tuple[int, float, float]:
    """Eigenvalues above the Marchenko-Pastur edge of a standardised covariance.

    ``values`` are the eigenvalues (descending; at least the nonzero ``min(n, D)`` ones when
    they are available) of ``X^T X / n`` for ``n = n_obs`` independent rows. The noise
    variance is estimated from their median, which lies in the noise bulk when the signal
    directions are few (Gavish & Donoho 2014): the nonzero eigenvalues of pure noise follow
    ``sigma^2 max(1, D/n)`` times the Marchenko-Pastur law of ratio ``min(n, D) / max(n, D)``.
    The edge is ``sigma^2 (1 + sqrt(D / n))^2``. Returns ``(r, sigma^2, edge)``.
    """
    values = np.sort(np.asarray(values, dtype=np.float64))[::-1]
    m = min(n_obs, n_vars)
    beta = m / max(n_obs, n_vars)
    bulk = values[:m]
    scale = max(1.0, n_vars / max(n_obs, 1))
    noise = (
        float(np.median(bulk)) / (scale * marchenko_pastur_median(beta)) if bulk.size == m else 1.0
    )
    noise = min(max(noise, 1e-12), 1.0)
    edge = noise * (1.0 + np.sqrt(n_vars / max(n_obs, 1))) ** 2
    return int((values > edge).sum()), noise, float(edge)


def gram_fits(n_rows: int, n_vars: int) -> bool:
    """Whether the train rows are fewer than the genes and fit in memory as float64."""
    return n_rows <= n_vars and n_rows * n_vars * 8 <= GRAM_MAX_BYTES


def leading_directions(
    store: Store,
    rows: np.ndarray,
    rank: int,
    *,
    block_rows: int = 4096,
    exact_max_genes: int = 4000,
    seed: int = 0,
    power_iterations: int = 6,
    oversampling: int = 20,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Top ``rank`` eigenvalues and eigenvectors (genes x rank) of the standardised train covariance.

    Few rows (:func:`gram_fits`): the ``n x n`` Gram matrix. Else ``D <= exact_max_genes``:
    the exact ``D x D`` covariance. Else randomized subspace iteration.
    """
    if gram_fits(rows.size, store.n_vars):
        values_x = np.empty((rows.size, store.n_vars), dtype=np.float64)
        for start in range(0, rows.size, block_rows):
            values_x[start : start + block_rows] = store.read_rows(
                rows[start : start + block_rows]
            )
        gram = values_x @ values_x.T / rows.size
        eigenvalues, left = np.linalg.eigh(0.5 * (gram + gram.T))
        order = np.argsort(eigenvalues)[::-1][:rank]
        eigenvalues = np.clip(eigenvalues[order], 0.0, None)
        directions = values_x.T @ left[:, order]
        norms = np.linalg.norm(directions, axis=0)
        directions /= np.where(norms > 0, norms, 1.0)
        return eigenvalues, directions, "train Gram matrix"
    if store.n_vars <= exact_max_genes:
        return (
            *leading_directions_exact(store, rows, rank, block_rows=block_rows),
            "exact covariance",
        )
    eigenvalues, directions = leading_directions_randomized(
        store,
        rows,
        rank,
        block_rows=block_rows,
        seed=seed,
        power_iterations=power_iterations,
        oversampling=oversampling,
    )
    return eigenvalues, directions, "randomized subspace iteration"


def covariance_times(
    store: Store, rows: np.ndarray, matrix: np.ndarray, *, block_rows: int = 4096
) -> np.ndarray:
    """``C @ matrix`` for the covariance ``C = X^T X / n`` of the standardised ``rows``, one pass."""
    out = np.zeros((store.n_vars, matrix.shape[1]), dtype=np.float64)
    for start in range(0, rows.size, block_rows):
        values = store.read_rows(rows[start : start + block_rows]).astype(np.float64)
        out += values.T @ (values @ matrix)
    return out / rows.size


def leading_directions_exact(
    store: Store, rows: np.ndarray, rank: int, *, block_rows: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``rank`` eigenvalues and eigenvectors (genes x rank) of the standardised covariance, accumulated in blocks."""
    covariance = np.zeros((store.n_vars, store.n_vars), dtype=np.float64)
    for start in range(0, rows.size, block_rows):
        values = store.read_rows(rows[start : start + block_rows]).astype(np.float64)
        covariance += values.T @ values
    covariance /= rows.size
    values, vectors = scipy.linalg.eigh(
        covariance, subset_by_index=[store.n_vars - rank, store.n_vars - 1]
    )
    return np.clip(values[::-1], 0.0, None), vectors[:, ::-1]


def leading_directions_randomized(
    store: Store,
    rows: np.ndarray,
    rank: int,
    *,
    block_rows: int = 4096,
    seed: int = 0,
    power_iterations: int = 6,
    oversampling: int = 20,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``rank`` eigenvalues and eigenvectors by randomized subspace iteration (Halko et al. 2011), out-of-core."""
    width = min(rank + oversampling, store.n_vars)
    basis = np.random.default_rng(seed).standard_normal((store.n_vars, width))
    basis, _ = np.linalg.qr(basis)
    for _ in range(max(power_iterations, 1)):
        basis, _ = np.linalg.qr(covariance_times(store, rows, basis, block_rows=block_rows))
    projected = basis.T @ covariance_times(store, rows, basis, block_rows=block_rows)
    values, vectors = np.linalg.eigh((projected + projected.T) / 2)
    order = np.argsort(values)[::-1][:rank]
    return np.clip(values[order], 0.0, None), basis @ vectors[:, order]
