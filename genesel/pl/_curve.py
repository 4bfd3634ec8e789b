"""``genesel.pl.panel_curve``: plot imputation error against panel size."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from anndata import AnnData
from matplotlib.axes import Axes
from matplotlib.figure import SubFigure

from genesel.errors import ConfigError
from genesel.evaluate import HEADLINE_METRIC
from genesel.report.build import METRIC_LABELS
from genesel.report.figures import plot_panel_curve

logger = logging.getLogger(__name__)


def panel_curve(
    adata: AnnData | pd.DataFrame,
    *,
    key: str = "genesel_curve",
    metric: str = HEADLINE_METRIC,
    decoder: str | None = None,
    ax: Axes | None = None,
    show: bool | None = None,
    save: str | os.PathLike[str] | bool | None = None,
) -> Axes:
    """Plot the error of each method against panel size, as computed by :func:`genesel.tl.panel_curve`.

    One line per method (mean over seeds, bars: 95 % intervals bootstrapped over test samples
    and seeds when ``uns[key + "_per_sample"]`` holds per-sample errors, else the range
    over seeds); random panels, when
    at least three per size were run, are a grey band (10-90 %) around their median; the
    landmark panel, when present, is a star with a dashed horizontal line. The simulator's
    noise floor is drawn when the data records one.

    Parameters
    ----------
    adata
        AnnData with the table in ``.uns[key]``, or the table itself.
    key
        Key of ``.uns`` holding the table.
    metric
        Column to plot (default ``mse_imputed``: imputed-gene MSE, standardised; also
        ``mse``, ``mae_imputed``, ...).
    decoder
        Decoder to plot when the table holds several (default: the first).
    ax
        Axes to draw into (default: a new figure).
    show
        Show the figure (default: when matplotlib is interactive and nothing is saved).
    save
        File to save the figure to (``True``: ``panel_curve.png``).

    Returns
    -------
    The Axes drawn into.
    """
    frame = _table(adata, key)
    per_sample = None if isinstance(adata, pd.DataFrame) else adata.uns.get(f"{key}_per_sample")
    decoders = sorted(frame["decoder"].unique())
    decoder = decoder or decoders[0]
    if decoder not in decoders:
        raise ConfigError(f"decoder {decoder!r} is not in the table; it has {decoders}")
    from genesel.tl._curve import curve_summary

    curves = curve_summary(frame, per_sample, metric=metric).table
    noise_floor = None
    if "noise_floor" in frame and frame["noise_floor"].notna().any():
        noise_floor = float(frame["noise_floor"].dropna().iloc[0])
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.2), layout="constrained")
    split = str(frame["split"].iloc[0]) if "split" in frame else "test"
    label = f"{split} {METRIC_LABELS.get(metric, metric)}"
    plot_panel_curve(curves, decoder=decoder, ax=ax, metric_label=label, noise_floor=noise_floor)
    ax.legend(frameon=False, fontsize="small")
    if save:
        path = Path("panel_curve.png") if save is True else Path(save)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure = ax.figure
        if isinstance(figure, SubFigure):  # save the whole figure the axes are drawn in
            figure = figure.figure
        figure.savefig(path, dpi=150)
        logger.info("saved figure to %s", path)
    if show or (show is None and not save and plt.isinteractive()):
        plt.show()
    return ax


def _table(adata: AnnData | pd.DataFrame, key: str) -> pd.DataFrame:
    if isinstance(adata, pd.DataFrame):
        return adata
    if key not in adata.uns:
        raise ConfigError(
            f"adata.uns has no {key!r}; run genesel.tl.panel_curve(adata, key_added={key!r}, ...) first"
        )
    return pd.DataFrame(adata.uns[key])
