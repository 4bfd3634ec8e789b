"""Per-gene train statistics from shifted float64 sums, shared by the store writer and tl.prepare."""

from __future__ import annotations

import numpy as np

#: Standard deviations below this count as constant genes (their std is set to 1).
CONSTANT_STD = 1e-8


class GeneMoments:
    """Accumulate each gene's mean and standard deviation (ddof 0) over blocks of rows.

    The sums are of values shifted by the first block's mean, accumulated in float64:
    accurate (no cancellation when mean >> std) without a float64 copy of a block.

    Parameters
    ----------
    n_vars
        Genes (columns) of every block.
    """

    def __init__(self, n_vars: int) -> None:
        self.n_vars = int(n_vars)
        self.n_rows = 0
        self._sum = np.zeros(self.n_vars, dtype=np.float64)
        self._sum_sq = np.zeros(self.n_vars, dtype=np.float64)
        self._shift: np.ndarray | None = None
        self._buffer: np.ndarray | None = None

    def add(self, rows: np.ndarray) -> None:
        """Add a block of rows (samples x genes)."""
        if self._shift is None:
            self._shift = rows.mean(axis=0, dtype=np.float64).astype(np.float32)
        if self._buffer is None or self._buffer.shape[0] < rows.shape[0]:
            self._buffer = np.empty(rows.shape, dtype=np.float32)
        centred = np.subtract(rows, self._shift, out=self._buffer[: rows.shape[0]])
        self._sum += centred.sum(axis=0, dtype=np.float64)
        self._sum_sq += np.einsum("ij,ij->j", centred, centred, dtype=np.float64)
        self.n_rows += rows.shape[0]

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the per-gene mean and standard deviation (ddof 0) of the rows so far."""
        n = max(self.n_rows, 1)
        shifted_mean = self._sum / n
        var = np.maximum(self._sum_sq / n - shifted_mean**2, 0.0)
        shift = np.zeros(self.n_vars) if self._shift is None else self._shift.astype(np.float64)
        return shift + shifted_mean, np.sqrt(var)


def standardisation(std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the store's ``std`` (1 for constant genes) and ``constant`` flags for raw stds."""
    constant = std < CONSTANT_STD
    return np.where(constant, 1.0, std), constant
