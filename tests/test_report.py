"""The report: aggregation, curves with bootstrap intervals, the headline logic and the HTML page."""

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
from genesel.report import (
    aggregate_results,
    build_report,
    match_landmarks,
    matching_size,
    summarize_curves,
)
from genesel.report.curves import Curves
from genesel.report.headline import headline, random_comparison
from genesel.report.layout import ResultsLayout, RunKey, parse_metrics_path, parse_panel_path
from genesel.report.uncertainty import group_replicates, interval, run_replicates

N_LANDMARKS = 40
SIZES = (10, 20, 30, 50)
N_TEST = 200


def planted_error(method: str, n_genes: int, seed: int) -> float:
    """A decreasing error curve per method; cae beats the landmarks between 20 and 30 genes."""
    scale = {"cae": 6.0, "random": 14.0, "landmarks": 7.0}[method]
    return 0.1 + scale / n_genes + 0.002 * seed


def write_fake_run(
    root: Path, *, decoders: tuple[str, ...] = ("linear", "mlp"), random_seeds: int = 4
) -> Path:
    """A run directory as the workflow leaves it, with planted errors and per-sample errors."""
    layout = ResultsLayout.at(root)
    rng = np.random.default_rng(0)
    samples = pd.Index([f"s{i}" for i in range(N_TEST)], name="sample_id")
    difficulty = rng.gamma(4.0, 0.25, size=N_TEST)  # shared by all runs: paired errors
    panels = [("cae", k, s) for k in SIZES for s in (0, 1)] + [
        ("random", k, s) for k in SIZES for s in range(random_seeds)
    ]
    panels.append(("landmarks", N_LANDMARKS, 0))
    for method, k, seed in panels:
        panel_dir = layout.panel_dir(method, k, seed)
        panel_dir.mkdir(parents=True)
        landmark = np.ones(k, bool) if method == "landmarks" else rng.random(k) < 0.3
        pd.DataFrame(
            {
                "rank": np.arange(1, k + 1),
                "gene_id": [f"G{i}" for i in range(k)],
                "symbol": "S",
                "landmark": landmark,
                "score": 1.0,
            }
        ).to_csv(panel_dir / "panel.tsv", sep="\t", index=False)
        if method == "cae":
            (panel_dir / "config.json").write_text(
                json.dumps(
                    {"method": method, "n_genes": k, "seed": seed, "extra": {"converged": k != 50}}
                )
            )
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
            per_sample = error * difficulty * (1 + 0.05 * rng.normal(size=N_TEST))
            per_sample *= error / per_sample.mean()
            pd.DataFrame({"mse_imputed": per_sample}, index=samples).to_csv(
                path.with_name("per_sample.tsv"), sep="\t"
            )
            metrics = {
                "split": "test",
                "mse_imputed": error,
                "mse": error * 0.9,
                "mae_imputed": error / 2,
                "n_samples": N_TEST,
            }
            metrics.update(noise_floor=0.1, store="x.h5ad", mse_mean_predictor=1.0)
            path.write_text(json.dumps(metrics))
    bench = layout.benchmarks_dir / "select"
    bench.mkdir(parents=True)
    for i in range(3):
        (bench / f"cae_k{SIZES[i]}_seed0.tsv").write_text(
            "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
            f"{2.5 + i}\t0:00:02\t300.1\t900\t250\t260\t0\t1\t90\t2.2\n"
        )
    return root


def hand_made(
    points: dict[str, list[float]],
    *,
    landmark: float,
    sizes=(10, 20, 30, 50),
    spread: float = 0.0,
    independent: float = 0.3,
) -> Curves:
    """Curves from hand-made means; replicates scatter each point by ``spread`` (paired noise)."""
    rng = np.random.default_rng(3)
    shared = rng.normal(size=400)
    rows, replicates = [], {}
    for method, values in points.items():
        for k, value in zip(sizes, values, strict=True):
            replicates[(method, "linear", k)] = value + spread * (
                shared + independent * rng.normal(size=400)
            )
            rows.append(
                {
                    "method": method,
                    "decoder": "linear",
                    "n_genes": k,
                    "mean": value,
                    "mean_predictor": 1.0,
                }
            )
    replicates[("landmarks", "linear", N_LANDMARKS)] = landmark + spread * shared
    rows.append(
        {
            "method": "landmarks",
            "decoder": "linear",
            "n_genes": N_LANDMARKS,
            "mean": landmark,
            "mean_predictor": 1.0,
        }
    )
    return Curves(pd.DataFrame(rows), replicates)


def test_metrics_and_panel_paths_round_trip(tmp_path: Path) -> None:
    layout = ResultsLayout.at(tmp_path)
    key = RunKey("logitnormal-hnet", 750, 3, "mlp")
    assert parse_metrics_path(layout.metrics_path(key)) == key
    assert parse_metrics_path(tmp_path / "panels" / "x.json") is None
    assert parse_panel_path(layout.panel_dir("cae", 30, 1) / "panel.tsv") == ("cae", 30, 1)


def test_matching_size_needs_a_downward_crossing_below_the_mean_predictor() -> None:
    sizes = np.array([10, 20, 30])
    assert matching_size(sizes, np.array([0.5, 0.4, 0.2]), 0.3) == (25.0, "interpolated")
    assert matching_size(sizes, np.array([0.5, 0.4, 0.2]), 0.6) == (
        10.0,
        "at or below the smallest size run",
    )
    assert matching_size(sizes, np.array([0.5, 0.4, 0.35]), 0.3) == (None, "not reached")
    # a U-shaped curve: below the target at 10 only while above the mean predictor's error -> no match there
    assert matching_size(sizes, np.array([0.2, 0.5, 0.6]), 0.3, ceiling=0.1) == (
        None,
        "not reached",
    )
    # rising through the target is not a match; the later downward crossing is
    assert matching_size([10, 20, 30, 40], [0.5, 0.2, 0.6, 0.25], 0.3) == (
        pytest.approx(16.667, rel=1e-3),
        "interpolated",
    )


def test_headline_states_ties_non_reach_and_fewer_genes() -> None:
    # clearly fewer genes: crosses at 25 with tight intervals
    clear = hand_made({"cae": [0.5, 0.4, 0.2, 0.15]}, landmark=0.3, spread=0.002)
    row = match_landmarks(clear).iloc[0]
    assert row["matching_genes"] == pytest.approx(25.0) and row["genes_high"] < N_LANDMARKS
    assert "15 fewer genes than the landmarks" in headline(
        match_landmarks(clear), clear, decoder="linear"
    )
    # a wide interval that includes the landmark count is a tie, never a saving
    tie = hand_made({"cae": [0.5, 0.4, 0.31, 0.29]}, landmark=0.3, spread=0.05)
    sentence = headline(match_landmarks(tie), tie, decoder="linear")
    assert "tie with the landmarks" in sentence and "fewer" not in sentence
    # already below the landmarks at the smallest size: the saving is a lower bound
    early = hand_made({"cae": [0.2, 0.15, 0.1, 0.05]}, landmark=0.3, spread=0.001)
    assert "at least 30 fewer genes than the landmarks" in headline(
        match_landmarks(early), early, decoder="linear"
    )
    # needs more genes, said as such (no negative saving)
    more = hand_made({"cae": [0.9, 0.8, 0.7, 0.2]}, landmark=0.3, spread=0.001)
    assert "needs 6 more genes than the landmarks" in headline(
        match_landmarks(more), more, decoder="linear"
    )
    # no method reaches it
    none = hand_made({"cae": [0.9, 0.8, 0.7, 0.6], "random": [0.95, 0.9, 0.85, 0.8]}, landmark=0.3)
    sentence = headline(match_landmarks(none), none, decoder="linear")
    assert (
        "no method reaches" in sentence
        and "up to 50 genes" in sentence
        and "closest is cae" in sentence
    )
    # two methods with overlapping intervals are tied
    both = hand_made(
        {"cae": [0.5, 0.4, 0.2, 0.15], "ipcae": [0.5, 0.39, 0.21, 0.15]}, landmark=0.3, spread=0.03
    )
    assert "tied with ipcae" in headline(match_landmarks(both), both, decoder="linear")


def test_bootstrap_interval_covers_the_truth_in_a_simulation() -> None:
    """Per-sample errors drawn around a known mean: the 95% interval covers it about 95% of the time."""
    rng = np.random.default_rng(7)
    truth, covered, trials = 0.5, 0, 200
    for trial in range(trials):
        errors = rng.gamma(2.0, truth / 2.0, size=150)
        series = pd.Series(errors, index=[f"s{i}" for i in range(150)])
        reps = run_replicates([errors.mean()], [series], [150], resamples=400, seed=trial)
        low, high = interval(reps[0])
        covered += low <= truth <= high
    assert 0.88 <= covered / trials <= 0.99


def test_subset_replicates_are_rescaled_and_seeds_resampled() -> None:
    rng = np.random.default_rng(0)
    values = rng.gamma(2.0, 0.25, size=400)
    full = pd.Series(values, index=[f"s{i}" for i in range(400)])
    wide = run_replicates([values.mean()], [full], [400], resamples=500)[0]
    narrow = run_replicates([values.mean()], [full.iloc[:100]], [1600], resamples=500)[
        0
    ]  # 100 of 1,600 rows
    assert narrow.mean() == pytest.approx(values.mean(), abs=0.01)
    assert narrow.std() < wide.std()
    seeds = np.vstack([np.full(300, 1.0), np.full(300, 2.0)])
    mixed = group_replicates(seeds, [0, 1])
    assert set(np.unique(mixed)) <= {1.0, 1.5, 2.0} and mixed.min() == 1.0 and mixed.max() == 2.0


def test_aggregate_curves_and_random_comparison_on_a_planted_run(tmp_path: Path) -> None:
    tables = aggregate_results(write_fake_run(tmp_path / "run"))
    assert len(tables.runs) == ((2 + 4) * len(SIZES) + 1) * 2
    assert tables.noise_floor == pytest.approx(0.1)
    assert set(tables.histories["method"]) == {"cae"}
    assert tables.benchmarks["rule"].tolist() == ["select"] * 3
    assert (
        tables.runs.loc[tables.runs["method"] == "landmarks", "landmark_overlap"] == N_LANDMARKS
    ).all()
    assert (
        tables.runs.loc[
            (tables.runs["method"] == "cae") & (tables.runs["n_genes"] == 50), "converged"
        ]
        .eq(False)
        .all()
    )

    curves = summarize_curves(tables.runs, metric="mse_imputed").table
    row = curves[
        (curves.method == "cae") & (curves.decoder == "linear") & (curves.n_genes == 20)
    ].iloc[0]
    assert row["n_seeds"] == 2
    assert row["mean"] == pytest.approx(np.mean([planted_error("cae", 20, s) for s in (0, 1)]))
    random_row = curves[
        (curves.method == "random") & (curves.decoder == "linear") & (curves.n_genes == 20)
    ].iloc[0]
    assert random_row["band_low"] <= random_row["band_median"] <= random_row["band_high"]
    with pytest.raises(ConfigError, match="mae"):
        summarize_curves(tables.runs, metric="nope")


def test_build_report_is_self_contained_and_leads_with_the_answer(tmp_path: Path) -> None:
    run = write_fake_run(tmp_path / "run")
    outputs = build_report(run)
    page = outputs.index.read_text()
    assert outputs.curves_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3  # curves, training, runtime
    assert all(base64.b64decode(image)[:4] == b"\x89PNG" for image in images)
    assert not re.search(r'(src|href)="(?!data:)', page), (
        "the page must not load anything from outside"
    )
    # The landmark error is 0.1 + 7/40 = 0.275; cae's mean crosses it between 30 and 50 genes.
    lead = re.search(r'<p class="lead">([^<]+)</p>', page).group(1)
    assert lead.startswith(
        "With the linear decoder, cae reaches the 40 L1000 landmarks&#x27; imputed-gene test MSE (0.275"
    )
    assert "fewer genes than the landmarks" in lead
    assert page.index('class="lead"') < page.index("Panel size against imputation error")
    assert "Unconverged selectors" in page and "Against random panels" in page
    matches = pd.read_csv(outputs.landmark_match_tsv, sep="\t").set_index(["decoder", "method"])
    lo, hi = 30, 50
    e_lo, e_hi = 0.1 + 6 / lo + 0.001, 0.1 + 6 / hi + 0.001
    expected = lo + (e_lo - 0.275) * (hi - lo) / (e_lo - e_hi)
    assert matches.loc[("linear", "cae"), "matching_genes"] == pytest.approx(expected)
    assert (
        matches.loc[("linear", "cae"), "genes_low"]
        <= expected
        <= matches.loc[("linear", "cae"), "genes_high"]
    )
    assert matches.loc[("linear", "random"), "how"] == "not reached"
    versus = pd.read_csv(outputs.random_tsv, sep="\t")
    assert set(versus["verdict"]) <= {"better", "worse", "no clear difference"}
    assert (versus.loc[versus["method"] == "cae", "verdict"] == "better").all()
    curves = pd.read_csv(outputs.curves_tsv, sep="\t")
    assert {
        "method",
        "decoder",
        "n_genes",
        "mean",
        "low",
        "high",
        "n_seeds",
        "band_median",
        "metric",
    } <= set(curves.columns)
    assert (curves["low"] <= curves["mean"] + 1e-12).all() and (
        curves["mean"] <= curves["high"] + 1e-12
    ).all()


def test_random_comparison_is_paired() -> None:
    """A method a hair better than random on every sample is 'better' although the intervals overlap."""
    curves = hand_made(
        {"cae": [0.50, 0.40, 0.30, 0.20], "random": [0.51, 0.41, 0.31, 0.21]},
        landmark=0.25,
        spread=0.05,
        independent=0.05,
    )
    assert (
        curves.replicates[("cae", "linear", 20)].std() * 1.96
    ) > 0.01  # each point's own interval is wider than the gap
    table = random_comparison(curves)
    assert (table["verdict"] == "better").all()


def test_report_cli(tmp_path: Path, capsys) -> None:
    run = write_fake_run(tmp_path / "run", decoders=("linear",))
    out = tmp_path / "out"
    assert main(["-q", "report", "--results", str(run), "--out", str(out)]) == 0
    assert "With the linear decoder, cae reaches" in capsys.readouterr().out
    assert (
        main(["-q", "report", "--results", str(run), "--out", str(out), "--metric", "mae_imputed"])
        == 0
    )
    assert (out / "index.html").exists()
    assert (pd.read_csv(out / "curves.tsv", sep="\t")["metric"] == "mae_imputed").all()
    assert main(["-q", "report", "--results", str(tmp_path / "missing"), "--out", str(out)]) == 1


def test_report_rejects_an_empty_results_dir(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no metrics.json"):
        aggregate_results(tmp_path)


def test_cpu_time_comes_from_the_job_log_when_the_command_wrote_it(tmp_path):
    from genesel.report.aggregate import read_benchmarks
    from genesel.usage import usage_line

    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for job, sampled in (("cae", 4.9), ("qr", 1.5)):
        path = tmp_path / "benchmarks" / "select" / f"{job}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + f"48.0\t0:00:48\t400\t900\t300\t310\t0\t1\t90\t{sampled}\n")
    log = tmp_path / "logs" / "select" / "cae.log"
    log.parent.mkdir(parents=True)
    line = usage_line(48.0)
    log.write_text(
        "12:00:00 INFO genesel.selectors: training...\n12:00:48 INFO genesel: "
        + line.replace("cpu_s=", "cpu_s=4")
        + "\n"
    )
    table = read_benchmarks(tmp_path / "benchmarks", tmp_path / "logs").set_index("job")
    assert table.loc["cae", "cpu_source"] == "genesel" and table.loc["cae", "cpu_seconds"] >= 40.0
    assert table.loc["qr", "cpu_source"] == "snakemake" and table.loc["qr", "cpu_seconds"] == 1.5
    assert table.loc["cae", "seconds"] == 48.0


def test_every_command_logs_its_resource_usage(tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "genesel.cli.main",
            "simulate",
            "--out",
            str(tmp_path / "c.h5ad"),
            "--n-obs",
            "50",
            "--n-vars",
            "20",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    from genesel.usage import read_usage

    (tmp_path / "log").write_text(done.stderr)
    usage = read_usage(tmp_path / "log")
    assert (
        usage is not None
        and usage["cpu_s"] > 0.1
        and usage["wall_s"] > 0
        and usage["max_rss_mb"] > 10
    )
