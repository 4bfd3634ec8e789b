"""The report: aggregation of a run directory, landmark matching, figures and the HTML page."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genesel.cli.main import main
from genesel.errors import ConfigError, InputFileError
from genesel.report import aggregate_results, build_report, match_landmarks, matching_size, summarize_curves
from genesel.report.layout import ResultsLayout, RunKey, parse_metrics_path

N_LANDMARKS = 40
SIZES = (10, 20, 30, 50)


def planted_error(method: str, n_genes: int, seed: int) -> float:
    """A decreasing error curve per method; cae beats the landmarks between 20 and 30 genes."""
    scale = {"cae": 6.0, "random": 14.0, "landmarks": 7.0}[method]
    return 0.1 + scale / n_genes + 0.002 * seed


def write_fake_run(root: Path, *, decoders: tuple[str, ...] = ("linear", "mlp")) -> Path:
    """A run directory as the workflow leaves it, with planted errors."""
    layout = ResultsLayout.at(root)
    rng = np.random.default_rng(0)
    panels = [("cae", k, s) for k in SIZES for s in (0, 1)] + [("random", k, s) for k in SIZES for s in (0, 1)]
    panels.append(("landmarks", N_LANDMARKS, 0))
    for method, k, seed in panels:
        panel_dir = layout.panel_dir(method, k, seed)
        panel_dir.mkdir(parents=True)
        landmark = np.ones(k, bool) if method == "landmarks" else rng.random(k) < 0.3
        pd.DataFrame(
            {"rank": np.arange(1, k + 1), "gene_id": [f"G{i}" for i in range(k)], "symbol": "S", "landmark": landmark, "score": 1.0}
        ).to_csv(panel_dir / "panel.tsv", sep="\t", index=False)
        if method == "cae":
            epochs = np.arange(5)
            pd.DataFrame(
                {
                    "epoch": epochs,
                    "train_loss": 1.0 / (epochs + 1),
                    "validation_loss": 1.1 / (epochs + 1),
                    "seconds": 0.5,
                    "steps_per_second": 40.0,
                    "unique_percent": np.minimum(100, 60 + 10 * epochs),
                }
            ).to_csv(panel_dir / "history.tsv", sep="\t", index=False)
        for decoder in decoders:
            path = layout.metrics_path(RunKey(method, k, seed, decoder))
            path.parent.mkdir(parents=True)
            error = planted_error(method, k, seed) * (0.9 if decoder == "mlp" else 1.0)
            path.write_text(json.dumps({"split": "test", "mse": error, "mae": error / 2, "noise_floor": 0.1, "store": "x.h5ad"}))
    bench = layout.benchmarks_dir / "select"
    bench.mkdir(parents=True)
    for i in range(3):
        (bench / f"cae_k{SIZES[i]}_seed0.tsv").write_text(
            "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
            f"{2.5 + i}\t0:00:02\t300.1\t900\t250\t260\t0\t1\t90\t2.2\n"
        )
    return root


def test_metrics_paths_round_trip(tmp_path: Path) -> None:
    layout = ResultsLayout.at(tmp_path)
    key = RunKey("logitnormal-hnet", 750, 3, "mlp")
    assert parse_metrics_path(layout.metrics_path(key)) == key
    assert parse_metrics_path(tmp_path / "panels" / "x.json") is None


def test_matching_size_interpolates_and_says_when_not_reached() -> None:
    sizes = np.array([10, 20, 30])
    assert matching_size(sizes, np.array([0.5, 0.4, 0.2]), 0.3) == (25.0, "interpolated")
    assert matching_size(sizes, np.array([0.5, 0.4, 0.2]), 0.6) == (10.0, "at or below the smallest size run")
    assert matching_size(sizes, np.array([0.5, 0.4, 0.35]), 0.3) == (None, "not reached")


def test_aggregate_and_curves_on_a_planted_run(tmp_path: Path) -> None:
    tables = aggregate_results(write_fake_run(tmp_path / "run"))
    assert len(tables.runs) == (2 * len(SIZES) * 2 + 1) * 2
    assert tables.noise_floor == pytest.approx(0.1)
    assert set(tables.histories["method"]) == {"cae"}
    assert tables.benchmarks["rule"].tolist() == ["select"] * 3
    landmark_rows = tables.runs[tables.runs["method"] == "landmarks"]
    assert (landmark_rows["landmark_overlap"] == N_LANDMARKS).all()

    curves = summarize_curves(tables.runs, metric="mse")
    row = curves[(curves.method == "cae") & (curves.decoder == "linear") & (curves.n_genes == 20)].iloc[0]
    assert row["n_seeds"] == 2
    assert row["mean"] == pytest.approx(np.mean([planted_error("cae", 20, s) for s in (0, 1)]))
    assert row["std"] == pytest.approx(np.std([planted_error("cae", 20, s) for s in (0, 1)], ddof=1))

    matches = match_landmarks(curves).set_index(["decoder", "method"])
    cae = matches.loc[("linear", "cae")]
    # Landmark error 0.1 + 7/40 = 0.275; cae's mean 0.1 + 6/k + 0.001 crosses it between k=30 and k=50.
    lo, hi = 30, 50
    e_lo, e_hi = 0.1 + 6 / lo + 0.001, 0.1 + 6 / hi + 0.001
    assert e_hi <= 0.275 < e_lo
    expected = lo + (e_lo - 0.275) * (hi - lo) / (e_lo - e_hi)
    assert cae["matching_genes"] == pytest.approx(expected)
    assert cae["saving_pct"] == pytest.approx(100 * (1 - expected / N_LANDMARKS))
    assert matches.loc[("linear", "random"), "how"] == "not reached"
    assert np.isnan(matches.loc[("linear", "random"), "saving_pct"])

    with pytest.raises(ConfigError, match="mae"):
        summarize_curves(tables.runs, metric="nope")


def test_build_report_is_self_contained(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "run")
    outputs = build_report(run)
    page = outputs.index.read_text()
    assert outputs.curves_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3  # curves, training, runtime
    assert all(base64.b64decode(image)[:4] == b"\x89PNG" for image in images)
    assert not re.search(r'(src|href)="(?!data:)', page), "the page must not load anything from outside"
    assert "cae (linear decoder) matches the 40 landmarks" in page
    assert "With the linear decoder, random does not reach the 40 landmarks" in page
    curves = pd.read_csv(outputs.curves_tsv, sep="\t")
    assert {"method", "decoder", "n_genes", "mean", "std", "n_seeds", "landmark_overlap", "metric"} <= set(curves.columns)


def test_report_cli(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "run", decoders=("linear",))
    out = tmp_path / "out"
    assert main(["-q", "report", "--results", str(run), "--out", str(out), "--metric", "mae"]) == 0
    assert (out / "index.html").exists()
    assert (pd.read_csv(out / "curves.tsv", sep="\t")["metric"] == "mae").all()
    assert main(["-q", "report", "--results", str(tmp_path / "missing"), "--out", str(out)]) == 1


def test_report_rejects_an_empty_results_dir(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no metrics.json"):
        aggregate_results(tmp_path)
