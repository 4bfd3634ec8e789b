"""Figures of the report: panel-size curves, training traces and runtimes (matplotlib)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

from genesel.sweep_plan import LANDMARK_METHOD, RANDOM_METHOD

#: A fixed colour per method, so every figure agrees.
METHOD_COLORS = {
    "cae": "#1f77b4",
    "ipcae": "#ff7f0e",
    "lassonet": "#2ca02c",
    "logitnormal": "#d62728",
    "logitnormal-hnet": "#9467bd",
    "random": "#7f7f7f",
    "hvg": "#8c564b",
    "qr": "#e377c2",
    "greedy": "#17becf",
    "landmarks": "#000000",
}
#: History columns holding the percentage of distinct genes among a selector's K choices.
UNIQUE_COLUMNS = ("unique_percent", "unique_pct")
_EXTRA_COLORS = ("#17becf", "#bcbd22", "#aec7e8", "#ffbb78", "#98df8a")


def method_color(method: str) -> str:
    """The colour used for ``method`` in every figure."""
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    return _EXTRA_COLORS[sum(map(ord, method)) % len(_EXTRA_COLORS)]


def plot_panel_curve(
    curves: pd.DataFrame,
    *,
    decoder: str,
    ax: Axes,
    metric_label: str = "imputed-gene test MSE (standardised)",
    noise_floor: float | None = None,
) -> Axes:
    """Draw error against panel size for one decoder, every point with its interval.

    Methods are lines with 95 % interval bars; random panels are a grey band (10-90 % of
    the random panels of each size) around their median; the landmark panel is a star
    with its interval and a dashed line at its error; the dotted line is the simulator's
    noise floor (simulated data only).

    Parameters
    ----------
    curves
        ``Curves.table`` of :func:`genesel.report.curves.summarize_curves`.
    decoder
        Which decoder's curves to draw.
    ax
        Axes to draw into.
    metric_label
        Y axis label, naming the metric and its unit.
    noise_floor
        The simulator's noise floor, if known.
    """
    subset = curves[curves["decoder"] == decoder]
    random = subset[subset["method"] == RANDOM_METHOD].sort_values("n_genes")
    if len(random) and random["band_low"].notna().any():
        ax.fill_between(
            random["n_genes"],
            random["band_low"],
            random["band_high"],
            color="#bbbbbb",
            alpha=0.45,
            linewidth=0,
            label="random panels (10-90%)",
        )
        ax.plot(
            random["n_genes"],
            random["band_median"],
            color="#777777",
            linestyle="--",
            linewidth=1.2,
            label="random panels (median)",
        )
    for method, curve in subset[~subset["method"].isin([LANDMARK_METHOD, RANDOM_METHOD])].groupby(
        "method", sort=True
    ):
        curve_line(ax, curve.sort_values("n_genes"), method)
    if len(random) and random["band_low"].isna().all():
        curve_line(ax, random, RANDOM_METHOD)
    reference = subset[subset["method"] == LANDMARK_METHOD]
    if len(reference):
        row = reference.sort_values("n_genes").iloc[-1]
        ax.axhline(
            row["mean"],
            color=method_color(LANDMARK_METHOD),
            linestyle="--",
            linewidth=1,
            zorder=0,
        )
        ax.errorbar(
            [row["n_genes"]],
            [row["mean"]],
            yerr=[[row["mean"] - row["low"]], [row["high"] - row["mean"]]],
            marker="*",
            markersize=13,
            color=method_color(LANDMARK_METHOD),
            linestyle="none",
            capsize=3,
            label=f"L1000 landmarks ({int(row['n_genes'])} genes)",
        )
    if noise_floor is not None and np.isfinite(noise_floor):
        ax.axhline(
            noise_floor,
            color="#999999",
            linestyle=":",
            linewidth=1.2,
            label="noise floor (simulation)",
            zorder=0,
        )
    ax.set_xlabel("panel size (genes)")
    ax.set_ylabel(metric_label)
    ax.set_title(f"{decoder} decoder")
    ax.grid(True, alpha=0.3)
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    return ax


def curve_line(ax: Axes, curve: pd.DataFrame, method: str) -> None:
    """Draw one method's curve (``n_genes`` against ``mean``, ``low``-``high`` error bars)."""
    yerr = np.vstack([curve["mean"] - curve["low"], curve["high"] - curve["mean"]]).clip(min=0)
    ax.errorbar(
        curve["n_genes"],
        curve["mean"],
        yerr=yerr,
        label=method,
        color=method_color(method),
        marker="o",
        markersize=4,
        capsize=3,
        linewidth=1.5,
    )


def curves_figure(
    curves: pd.DataFrame,
    *,
    metric_label: str = "imputed-gene test MSE (standardised)",
    noise_floor: float | None = None,
    decoders: Sequence[str] | None = None,
) -> Figure:
    """One panel-size plot per decoder, side by side, with a shared legend."""
    decoders = (
        list(decoders) if decoders is not None else decoder_order(curves["decoder"].unique())
    )
    figure = Figure(figsize=(5.8 * max(len(decoders), 1) + 2.2, 4.6), layout="constrained")
    axes = figure.subplots(1, max(len(decoders), 1), squeeze=False)[0]
    for ax, decoder in zip(axes, decoders, strict=False):
        plot_panel_curve(
            curves, decoder=decoder, ax=ax, metric_label=metric_label, noise_floor=noise_floor
        )
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    if handles:
        figure.legend(handles, labels, loc="outside right center", frameon=False)
    return figure


def cost_figure(
    runs: pd.DataFrame, *, metric: str, metric_label: str, decoders: Sequence[str] | None = None
) -> Figure | None:
    """Error against the panel's total gene cost, one plot per decoder; ``None`` without costs.

    Each point is one method at one panel size: the mean total cost and the mean error over
    its seeds; a method's points are joined in order of cost.
    """
    if (
        "total_cost" not in runs
        or not np.isfinite(pd.to_numeric(runs["total_cost"], errors="coerce")).any()
    ):
        return None
    costed = runs.assign(total_cost=pd.to_numeric(runs["total_cost"], errors="coerce")).dropna(
        subset=["total_cost", metric]
    )
    decoders = (
        list(decoders) if decoders is not None else decoder_order(costed["decoder"].unique())
    )
    figure = Figure(figsize=(5.8 * max(len(decoders), 1) + 2.2, 4.6), layout="constrained")
    axes = figure.subplots(1, max(len(decoders), 1), squeeze=False)[0]
    for ax, decoder in zip(axes, decoders, strict=False):
        subset = costed[costed["decoder"] == decoder]
        points = (
            subset.groupby(["method", "n_genes"], sort=True)[["total_cost", metric]]
            .mean()
            .reset_index()
        )
        for method, curve in points.groupby("method", sort=True):
            curve = curve.sort_values("total_cost")
            ax.plot(
                curve["total_cost"],
                curve[metric],
                marker="o",
                markersize=4,
                linewidth=1.5,
                color=method_color(method),
                label=method,
            )
        ax.set_xlabel("total panel cost")
        ax.set_ylabel(metric_label)
        ax.set_title(f"{decoder} decoder")
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="outside right center", frameon=False)
    return figure


def decoder_order(decoders: Sequence[str]) -> list[str]:
    """Decoders in report order: linear (the default) first, then the others by name."""
    return sorted(decoders, key=lambda d: (d != "linear", d))


def training_figure(histories: pd.DataFrame) -> Figure | None:
    """Validation loss and unique-gene percentage per epoch, for each method's largest panel.

    Every seed is drawn as its own line in the method's colour. ``None`` when no method
    recorded a history.
    """
    if histories.empty or "epoch" not in histories:
        return None
    labels = {
        "validation_loss": "validation loss",
        **{name: "unique genes selected (%)" for name in UNIQUE_COLUMNS},
    }
    unique = next(
        (c for c in UNIQUE_COLUMNS if c in histories and histories[c].notna().any()), None
    )
    present = [
        c
        for c in ("validation_loss", unique)
        if c is not None and c in histories and histories[c].notna().any()
    ]
    if not present:
        return None
    figure = Figure(figsize=(5.2 * len(present), 3.8), layout="constrained")
    axes = figure.subplots(1, len(present), squeeze=False)[0]
    largest = histories.groupby("method")["n_genes"].transform("max")
    shown = histories[histories["n_genes"] == largest]
    for ax, column in zip(axes, present, strict=True):
        for (method, seed), run in shown.groupby(["method", "seed"], sort=True):
            run = run.dropna(subset=[column])
            if not len(run):
                continue
            label = (
                f"{method} (K={int(run['n_genes'].iloc[0])})"
                if seed == shown[shown["method"] == method]["seed"].min()
                else None
            )
            ax.plot(
                run["epoch"],
                run[column],
                color=method_color(method),
                label=label,
                linewidth=1.3,
                alpha=0.85,
            )
        ax.set_xlabel(
            "epoch (LassoNet: step of its lambda path)" if "lambda" in shown else "epoch"
        )
        ax.set_ylabel(labels[column])
        if column == "validation_loss":
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(ScalarFormatter())
        ax.grid(True, alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, names, loc="outside right center", frameon=False)
    return figure


def runtime_figure(rule_times: pd.DataFrame, step_times: pd.DataFrame) -> Figure | None:
    """Wall time per rule (from benchmarks) and milliseconds per training step per method."""
    parts = [part for part in (rule_times, step_times) if part is not None and len(part)]
    if not parts:
        return None
    figure = Figure(figsize=(5.2 * len(parts), 3.6), layout="constrained")
    axes = iter(figure.subplots(1, len(parts), squeeze=False)[0])
    if rule_times is not None and len(rule_times):
        ax = next(axes)
        ordered = rule_times.sort_values("total_seconds")
        rows = np.arange(len(ordered))
        ax.barh(rows + 0.2, ordered["total_seconds"], height=0.4, color="#4c72b0", label="wall")
        ax.barh(
            rows - 0.2, ordered["cpu_seconds"].fillna(0), height=0.4, color="#dd8452", label="CPU"
        )
        ax.set_yticks(rows, ordered["rule"])
        ax.set_xlabel("seconds, all jobs of the rule")
        ax.set_title("per rule: wall and CPU time")
        ax.legend(frameon=False, fontsize="small")
        ax.grid(True, axis="x", alpha=0.3)
    if step_times is not None and len(step_times):
        ax = next(axes)
        ordered = step_times.sort_values("ms_per_step")
        ax.barh(
            ordered["method"],
            ordered["ms_per_step"],
            color=[method_color(m) for m in ordered["method"]],
        )
        ax.set_xlabel("milliseconds per training step")
        ax.set_title("per training step")
        ax.grid(True, axis="x", alpha=0.3)
    return figure


def figure_png(figure: Figure, *, dpi: int = 110) -> bytes:
    """Render a figure to PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
