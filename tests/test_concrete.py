"""CAE and IP-CAE selectors: math pieces, recovery, resume, duplicates, errors, CLI."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
import torch

from genesel.cli.main import main as genesel_main
from genesel.errors import ConfigError, InputFileError
from genesel.loader import LoaderConfig
from genesel.panel import read_panel, read_panel_config
from genesel.run import RunConfig
from genesel.selectors.base import make_selector
from genesel.selectors.concrete import ConcreteSelector, IndirectConcreteSelector
from genesel.selectors.concrete_autoencoder import ConcreteAutoencoder
from genesel.selectors.concrete_layer import (
    IndirectLogits,
    annealed_temperature,
    generalized_jensen_shannon,
    resolve_duplicate_selections,
)
from genesel.selectors.select import select_panel
from genesel.store import Store
from genesel.training import TrainerConfig
from tests.conftest import load_benchmark, write_store

TIMING_COLUMNS = ["seconds", "steps_per_second"]


def assert_close(actual: torch.Tensor, expected: torch.Tensor, *, exact: bool = False) -> None:
    # torch.testing.assert_close imports torch.distributed on first use (seconds)
    assert actual.shape == expected.shape
    assert (
        torch.equal(actual, expected)
        if exact
        else torch.allclose(actual, expected, rtol=1e-5, atol=1e-6)
    )


def fast_trainer(epochs: int, *, lr: float = 0.02, seed: int = 0, **kwargs) -> dict:
    return {
        "trainer": _trainer(epochs, lr=lr, **kwargs),
        "loader": LoaderConfig(batch_size=32),
        "run": quiet_cpu(seed),
    }


def quiet_cpu(seed: int = 0) -> RunConfig:
    return RunConfig(seed=seed, device="cpu", progress=False)


def _trainer(epochs: int, *, lr: float, **kwargs):
    from genesel.training import TrainerConfig

    # the old fixed-epoch budget unless a test asks otherwise (the step budget is tested in test_convergence.py)
    kwargs = {"min_steps": 0, "stop_when_converged": False, **kwargs}
    return TrainerConfig(max_epochs=epochs, learning_rate=lr, **kwargs)


def clustered_matrix(
    n_obs: int, n_genes: int, n_drivers: int, *, seed: int, noise: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Every non-driver gene is a noisy, scaled copy of one driver (about equal clusters).

    The drivers are the unique best panel of size ``n_drivers``: one gene per cluster is
    needed, and within a cluster the noise-free driver predicts the others best. (The shared
    ``planted_store`` mixes all drivers into every gene, which leaves near-optimal
    alternative panels that a few epochs of CAE training do not reliably tell apart.)
    """
    rng = np.random.default_rng(seed)
    drivers = np.sort(rng.choice(n_genes, size=n_drivers, replace=False))
    latent = rng.normal(size=(n_obs, n_drivers))
    cluster = rng.permutation(np.arange(n_genes) % n_drivers)
    X = latent[:, cluster] * rng.uniform(0.5, 1.5, size=n_genes) + noise * rng.normal(
        size=(n_obs, n_genes)
    )
    X[:, drivers] = latent
    return (X * 1.5 + 7.0).astype(np.float32), drivers


# -- pure pieces ---------------------------------------------------------------------------
def test_temperature_schedule_is_exponential_from_t0_to_tb():
    assert annealed_temperature(0.0, start=10.0, end=0.01) == pytest.approx(10.0)
    assert annealed_temperature(1.0, start=10.0, end=0.01) == pytest.approx(0.01)
    assert annealed_temperature(0.5, start=10.0, end=0.01) == pytest.approx(math.sqrt(10.0 * 0.01))
    model = ConcreteAutoencoder(12, 3, anneal="epoch")
    model.on_epoch_start(0, 5)
    assert model.temperature == pytest.approx(10.0)
    model.on_epoch_start(4, 5)
    assert model.temperature == pytest.approx(0.01)
    model.on_step_start(3, 10)  # per-epoch mode ignores steps
    assert model.temperature == pytest.approx(0.01)
    stepwise = ConcreteAutoencoder(12, 3, anneal="step")
    stepwise.on_step_start(9, 10)
    assert stepwise.temperature == pytest.approx(0.01)


def test_duplicates_resolved_by_next_best_gene_in_order_of_confidence():
    logits = np.array(
        [
            [0.0, 3.0, 0.0, 2.9, 0.0],  # node 0: gene 1, less sure than node 1
            [0.0, 9.0, 0.0, 0.0, 0.0],  # node 1: gene 1, very sure -> keeps it
            [5.0, 0.0, 0.0, 0.0, 0.0],  # node 2: gene 0
            [0.0, 4.0, 1.0, 2.0, 0.0],  # node 3: gene 1 taken -> its next best, gene 3
        ]
    )
    genes, order, n_resolved = resolve_duplicate_selections(logits)
    assert order.tolist() == [1, 2, 3, 0]  # by max probability, descending
    # node 0 last: genes 1 and 3 taken, then ties by gene index: 0 taken -> gene 2
    assert genes.tolist() == [2, 1, 0, 3]
    assert n_resolved == 2


def test_indirect_logits_forms_compute_psi_w_plus_b():
    torch.manual_seed(0)
    full = IndirectLogits(4, 9, embedding_dim=3)
    expected = full.embedding @ full.weight.T + full.bias
    assert_close(full(), expected)
    diagonal = IndirectLogits(4, 9, w_form="diagonal")
    assert_close(diagonal(), diagonal.embedding @ torch.diag(diagonal.weight) + diagonal.bias)
    scalar = IndirectLogits(4, 9, w_form="scalar")
    assert_close(scalar(), scalar.weight * scalar.embedding + scalar.bias)
    assert IndirectLogits(4, 9).embedding.shape == (4, 9)  # P = D by default
    with pytest.raises(ConfigError, match="embedding_dim"):
        IndirectLogits(4, 9, embedding_dim=3, w_form="diagonal")
    with pytest.raises(ConfigError, match="w_form"):
        IndirectLogits(4, 9, w_form="banded")


def test_gjsd_is_zero_for_identical_and_log_k_for_disjoint_nodes():
    same = torch.zeros(3, 6)
    assert float(generalized_jensen_shannon(same)) == pytest.approx(0.0, abs=1e-6)
    disjoint = torch.full((3, 6), -50.0)
    disjoint[0, 0] = disjoint[1, 2] = disjoint[2, 4] = 50.0
    assert float(generalized_jensen_shannon(disjoint)) == pytest.approx(math.log(3), rel=1e-4)


def test_training_selection_mixes_genes_and_eval_selection_is_one_hot():
    torch.manual_seed(0)
    model = ConcreteAutoencoder(10, 3, indirect=True)
    batch = torch.randn(5, 10)
    model.train()
    soft, logits = model.select(batch)
    assert soft.shape == (5, 3) and logits.shape == (3, 10)
    model.eval()
    hard, _ = model.select(batch)
    genes = model.selected_genes()
    assert_close(hard, batch[:, genes])


def test_per_sample_noise_draws_one_selection_per_sample():
    torch.manual_seed(0)
    model = ConcreteAutoencoder(10, 3, gumbel_noise="sample", start_temperature=0.5)
    model.train()
    batch = torch.randn(6, 10)
    logits = model.logits().detach()
    torch.manual_seed(1)
    selected, _ = model.select(batch)
    # the same draws, sample by sample: softmax((logits + g_b) / T) applied to x_b
    torch.manual_seed(1)
    gumbel = -torch.empty(6, 3, 10).exponential_().log()
    expected = torch.stack(
        [torch.softmax((logits + gumbel[b]) / 0.5, dim=1) @ batch[b] for b in range(6)]
    )
    assert_close(selected.detach(), expected)
    # per-step noise gives every sample the same selection matrix; per-sample noise does not
    same = torch.arange(10.0).repeat(6, 1)
    assert selected.shape == (6, 3)
    per_sample, _ = model.select(same)
    assert not torch.allclose(per_sample[0], per_sample[1])
    model.gumbel_noise = "step"
    per_step, _ = model.select(same)
    assert_close(per_step[0], per_step[1])


def test_per_sample_noise_refuses_a_step_too_large_for_memory(monkeypatch):
    import genesel.selectors.concrete_autoencoder as autoencoder

    monkeypatch.setattr(autoencoder, "MAX_PER_SAMPLE_ELEMENTS", 100)
    model = ConcreteAutoencoder(10, 3, gumbel_noise="sample")
    with pytest.raises(ConfigError, match="gumbel_noise='step' or a smaller batch"):
        model.select(torch.randn(4, 10))
    with pytest.raises(ConfigError, match="gumbel_noise must be one of"):
        ConcreteSelector(n_genes=3, gumbel_noise="batch")


# -- training behaviour -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "epochs", "lr", "noise"),
    [("cae", 30, 0.1, "step"), ("ipcae", 30, 0.02, "step"), ("cae", 30, 0.1, "sample")],
)
def test_recovers_planted_drivers(tmp_path, method, epochs, lr, noise):
    X, drivers = clustered_matrix(600, 40, 5, seed=3)
    path = write_store(tmp_path / "clustered.h5ad", X)
    with Store.open(path) as store:
        result = select_panel(
            store,
            method=method,
            n_genes=5,
            seed=0,
            params={"gumbel_noise": noise},
            trainer=_trainer(epochs, lr=lr),
            run=quiet_cpu(0),
            loader=LoaderConfig(batch_size=32),
        )
    assert sorted(result.gene_indices.tolist()) == drivers.tolist()
    assert result.extra["duplicates_resolved"] == 0
    history = result.history
    assert {"temperature", "unique_percent", "mean_max_probability"} <= set(history.columns)
    # per-step annealing: the first epoch ends below T0, the last planned step is at TB
    assert 0.01 < history["temperature"].iloc[0] < 10.0 and history["temperature"].iloc[
        -1
    ] == pytest.approx(0.01)
    assert history["mean_max_probability"].iloc[-1] > history["mean_max_probability"].iloc[0]
    scores = result.scores
    assert np.all(np.diff(scores) <= 0), "panel is ranked by node max probability, descending"


def test_reconstruction_mse_uses_the_trained_decoder_on_the_panel(planted_store):
    store, _ = planted_store
    selector = make_selector("ipcae", n_genes=5, seed=0, params={"decoder_hidden": [32]})
    result = selector.select(store, **fast_trainer(25))
    mse = selector.reconstruction_mse(store, "test")
    # the selector's own decoder on its panel beats predicting the (standardised) mean by far
    assert mse < 0.3
    # and matches the trainer's best validation loss on the validation split (same argmax selection)
    assert selector.reconstruction_mse(
        store, "validation", resolve_duplicates=False
    ) == pytest.approx(result.extra["best_validation_loss"], rel=1e-4)


@pytest.mark.parametrize("method", ["cae", "ipcae"])
def test_resume_after_kill_reproduces_uninterrupted_run(
    planted_store, tmp_path, monkeypatch, method
):
    store, _ = planted_store
    params = {"decoder_hidden": [8]}
    reference = select_panel(
        store,
        method=method,
        n_genes=5,
        seed=4,
        params=params,
        out_dir=tmp_path / "straight",
        **fast_trainer(6, seed=4),
    )

    original = ConcreteAutoencoder.on_epoch_start

    def killed_at_epoch_3(self, epoch, n_epochs):
        if epoch == 3:
            raise KeyboardInterrupt("simulated kill")
        original(self, epoch, n_epochs)

    monkeypatch.setattr(ConcreteAutoencoder, "on_epoch_start", killed_at_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        select_panel(
            store,
            method=method,
            n_genes=5,
            seed=4,
            params=params,
            out_dir=tmp_path / "killed",
            **fast_trainer(6, seed=4),
        )
    assert (tmp_path / "killed" / "checkpoint.pt").exists()
    assert not (tmp_path / "killed" / "panel.tsv").exists()
    monkeypatch.setattr(ConcreteAutoencoder, "on_epoch_start", original)
    resumed = select_panel(
        store,
        method=method,
        n_genes=5,
        seed=4,
        params=params,
        out_dir=tmp_path / "killed",
        resume=True,
        **fast_trainer(6, seed=4),
    )

    assert resumed.extra["resumed_from_epoch"] == 3
    assert resumed.gene_indices.tolist() == reference.gene_indices.tolist()
    pd.testing.assert_frame_equal(
        resumed.history.drop(columns=TIMING_COLUMNS),
        reference.history.drop(columns=TIMING_COLUMNS),
    )
    for key, value in reference.state_dict.items():
        assert_close(resumed.state_dict[key], value, exact=True)


def test_resume_refuses_a_checkpoint_of_another_model(planted_store, tmp_path):
    store, _ = planted_store
    select_panel(store, method="ipcae", n_genes=5, seed=0, out_dir=tmp_path, **fast_trainer(1))
    with pytest.raises(
        InputFileError, match=r"other inputs \(checkpoint -> this run: n_genes 5 -> 6\)"
    ):
        select_panel(
            store,
            method="ipcae",
            n_genes=6,
            seed=0,
            out_dir=tmp_path,
            resume=True,
            **fast_trainer(1),
        )


def test_duplicates_are_resolved_logged_and_never_reach_panel_tsv(planted_store, tmp_path, caplog):
    store, _ = planted_store
    # one epoch that ends hot: 20 nodes on 40 genes still choose close to at random
    params = {"end_temperature": 5.0}
    with caplog.at_level(logging.WARNING, logger="genesel.selectors.concrete"):
        result = select_panel(
            store,
            method="cae",
            n_genes=20,
            seed=1,
            params=params,
            out_dir=tmp_path,
            **fast_trainer(1, lr=1e-4),
        )
    assert result.extra["duplicates_resolved"] > 0
    assert result.extra["unique_percent_argmax"] < 100
    assert "already selected gene" in caplog.text
    panel = read_panel(tmp_path)
    assert len(panel) == 20 and panel["gene_id"].is_unique
    config = read_panel_config(tmp_path)
    assert config["extra"]["duplicates_resolved"] == result.extra["duplicates_resolved"]
    assert sorted(config["extra"]["node_genes"]) == sorted(result.gene_indices.tolist())


def test_stops_when_converged(planted_store):
    store, _ = planted_store
    result = select_panel(
        store,
        method="ipcae",
        n_genes=5,
        seed=0,
        trainer=_trainer(200, lr=0.05, stop_when_converged=True),
        run=quiet_cpu(0),
        loader=LoaderConfig(batch_size=32),
    )
    assert result.extra["stopped"] == "converged"
    assert len(result.history) < 200
    assert result.history["mean_max_probability"].iloc[-1] >= 0.99


def test_gjsd_term_is_logged_when_weighted(planted_store):
    store, _ = planted_store
    result = select_panel(
        store,
        method="ipcae",
        n_genes=5,
        seed=0,
        params={"gjsd_weight": 0.01, "embedding_dim": 8},
        **fast_trainer(2),
    )
    assert "gjsd" in result.history.columns and (result.history["gjsd"] > 0).all()


# -- errors -------------------------------------------------------------------------------------
def test_bad_arguments_give_clear_errors(planted_store):
    store, _ = planted_store
    with pytest.raises(ConfigError, match="smaller than the number of genes"):
        select_panel(store, method="cae", n_genes=40, **fast_trainer(1))
    with pytest.raises(ConfigError, match="positive integer"):
        select_panel(store, method="cae", n_genes=0, **fast_trainer(1))
    with pytest.raises(ConfigError, match="between 1 and 39"):
        ConcreteSelector(n_genes=45).select(store, **fast_trainer(1))
    with pytest.raises(ConfigError, match="unknown method 'concrete'"):
        select_panel(store, method="concrete", n_genes=5)
    with pytest.raises(ConfigError, match=r"no parameter\(s\) \['hidden'\]"):
        select_panel(store, method="cae", n_genes=5, params={"hidden": [3]})
    with pytest.raises(ConfigError, match="w_form"):
        IndirectConcreteSelector(n_genes=5, w_form="banded")
    with pytest.raises(ConfigError, match="anneal"):
        ConcreteSelector(n_genes=5, anneal="batch")
    with pytest.raises(ConfigError, match="embedding_dim"):
        select_panel(
            store,
            method="ipcae",
            n_genes=5,
            params={"embedding_dim": 4, "w_form": "diagonal"},
            **fast_trainer(1),
        )


def test_store_without_train_split_is_rejected():
    X = np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32)
    var = pd.DataFrame(
        {"symbol": list("abcdef"), "landmark": False, "mean": 0.0, "std": 1.0},
        index=list("abcdef"),
    )
    obs = pd.DataFrame(
        {
            "split": pd.Categorical(
                ["validation"] * 10 + ["test"] * 10, categories=["train", "validation", "test"]
            )
        }
    )
    with pytest.raises(InputFileError, match="train split is empty"):
        select_panel(Store(X, var=var, obs=obs), method="cae", n_genes=2, **fast_trainer(1))


# -- command line ---------------------------------------------------------------------------
def test_cli_select_writes_outputs_and_resumes(planted_store, tmp_path, monkeypatch):
    store, _ = planted_store
    monkeypatch.setattr(
        "genesel.cli.main.SUBCOMMANDS", ("select",)
    )  # only the subcommand under test
    out = tmp_path / "panel"
    common = [
        "-q",
        "select",
        "--data",
        str(store.path),
        "--method",
        "ipcae",
        "-k",
        "5",
        "--seed",
        "2",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--batch-size",
        "32",
        "--param",
        "decoder_hidden=[8]",
        "--param",
        "embedding_dim=6",
        "--min-steps",
        "0",
    ]
    assert (
        genesel_main([*common, "--epochs", "2", "--keep-checkpoint", "--no-stop-when-converged"])
        == 0
    )
    for name in ("panel.tsv", "history.tsv", "model.pt", "config.json", "checkpoint.pt"):
        assert (out / name).exists(), name
    state = torch.load(out / "model.pt", weights_only=True)
    assert state["selector.embedding"].shape == (5, 6)
    panel = read_panel(out)
    assert len(panel) == 5 and panel["gene_id"].is_unique
    config = read_panel_config(out)
    assert config["method"] == "ipcae" and config["config"]["params"]["embedding_dim"] == 6
    first = pd.read_csv(out / "history.tsv", sep="\t")
    # another budget moves IP-CAE's temperature schedule: refused, the checkpoint is kept
    assert genesel_main([*common, "--epochs", "4", "--resume", "--no-stop-when-converged"]) == 1
    assert (out / "checkpoint.pt").exists()
    assert genesel_main([*common, "--epochs", "2", "--resume", "--no-stop-when-converged"]) == 0
    history = pd.read_csv(out / "history.tsv", sep="\t")
    assert len(history) == 2
    assert not list(out.glob("checkpoint*")), (
        "the checkpoint and its best weights are removed once the panel is written"
    )
    assert read_panel_config(out)["config"]["trainer"]["stop_when_converged"] is False
    assert genesel_main([*common, "--epochs", "1"]) == 0  # on by default for CAE/IP-CAE
    assert read_panel_config(out)["config"]["trainer"]["stop_when_converged"] is True
    pd.testing.assert_frame_equal(
        history.drop(columns=TIMING_COLUMNS), first.drop(columns=TIMING_COLUMNS)
    )
    assert (
        genesel_main(
            [
                "-q",
                "select",
                "--data",
                str(store.path),
                "--method",
                "cae",
                "-k",
                "5",
                "--out",
                str(tmp_path / "bad"),
                "--param",
                "nope=1",
            ]
        )
        == 1
    )


def test_cli_select_runs_several_sizes_and_seeds_in_one_process(
    planted_store, tmp_path, monkeypatch
):
    """--n-genes and --seed with several values: every size with every seed, each in the folder
    --out names, with the same panel as a run of its own."""
    store, _ = planted_store
    monkeypatch.setattr("genesel.cli.main.SUBCOMMANDS", ("select",))
    common = [
        "-q",
        "select",
        "--data",
        str(store.path),
        "--method",
        "cae",
        "--device",
        "cpu",
        "--batch-size",
        "32",
        "--epochs",
        "2",
        "--min-steps",
        "0",
    ]
    template = str(tmp_path / "k{n_genes}" / "seed{seed}")
    assert genesel_main([*common, "-k", "4", "5", "--seed", "0", "1", "--out", template]) == 0
    assert genesel_main([*common, "-k", "5", "--seed", "1", "--out", str(tmp_path / "alone")]) == 0
    for k in (4, 5):
        for seed in (0, 1):
            config = read_panel_config(tmp_path / f"k{k}" / f"seed{seed}")
            assert config["n_genes"] == k and config["seed"] == seed
    pd.testing.assert_frame_equal(
        read_panel(tmp_path / "k5" / "seed1"), read_panel(tmp_path / "alone")
    )
    assert genesel_main([*common, "-k", "4", "5", "--out", str(tmp_path / "k{n_genes}-only")]) == 0
    assert (
        genesel_main([*common, "-k", "4", "5", "--out", str(tmp_path / "one-folder")]) == 1
    )  # {n_genes} missing
    assert not (tmp_path / "one-folder").exists()


# -- benchmark helpers ------------------------------------------------------------------------
def test_benchmark_helpers():
    bench = load_benchmark("paper_reconstruction")
    X = np.array([[1.0, np.nan], [3.0, 4.0], [np.nan, 8.0], [5.0, 2.0]])
    labels = np.array([0, 0, 1, 1])
    filled = bench.impute_class_means(X, labels, train_rows=np.array([0, 1, 3]))
    assert filled[0, 1] == 4.0 and filled[2, 0] == 5.0  # class means of the train rows
    low, high = bench.minmax(np.array([[0.0, 2.0], [2.0, 4.0]]), np.array([[1.0, 6.0]]))
    assert low.min() == 0 and low.max() == 1 and high.tolist() == [[0.5, 2.0]]
    assert bench.epochs_to_reach([5.0, 3.0, 4.0, 1.0], 3.0) == 2
    assert bench.epochs_to_reach([5.0, 4.0], 3.0) is None
    store = bench.build_store(
        {
            "train": np.ones((3, 4), np.float32),
            "validation": np.zeros((2, 4), np.float32),
            "test": np.zeros((1, 4), np.float32),
        }
    )
    assert store.read_rows(store.split_indices("train")).tolist() == np.ones((3, 4)).tolist()
    rng = np.random.default_rng(0)
    base = rng.normal(size=(50, 2))
    rank2 = np.c_[base, base.sum(1), base[:, 0] - 3 * base[:, 1], 2 * base[:, 1]]
    chosen = bench.greedy_linear_features(rank2, 2)
    assert len(set(chosen)) == 2
    assert bench.linear_regression_test_mse(rank2, rank2, chosen) < 1e-20
    assert bench.pca_test_mse(rank2, rank2, 2) < 1e-20 < bench.pca_test_mse(rank2, rank2, 1)
    collinear_start = [1, 4]  # base[:, 1] and 2 * base[:, 1]: rank 1
    assert bench.linear_regression_test_mse(rank2, rank2, collinear_start) > 0.1
    swapped = bench.swap_linear_features(rank2, collinear_start)
    assert (
        len(set(swapped)) == 2 and bench.linear_regression_test_mse(rank2, rank2, swapped) < 1e-20
    )
    params, trainer = bench.load_preset("ipcae", "isolet")
    assert params["decoder_hidden"] == [200] and params["embedding_dim"] is None
    # the presets pin the papers' fixed epoch budget and per-epoch annealing
    assert (
        params["anneal"] == "epoch"
        and params["selector_lr"] is None
        and params["block_duplicates"] is False
    )
    assert trainer == {"stop_when_converged": False, "min_steps": 0, "converge_extension": 0.0}
    make_selector("ipcae", n_genes=3, params=params)


def test_benchmark_bottleneck_reference_point_learns_a_low_rank_code():
    bench = load_benchmark("paper_reconstruction")
    assert (
        isinstance(bench.Bottleneck(5, 2).encoder[0], torch.nn.Linear)
        and len(bench.Bottleneck(5, 2).encoder) == 1
    )
    assert [type(layer).__name__ for layer in bench.Bottleneck(5, 2, (8,)).encoder] == [
        "Linear",
        "LeakyReLU",
        "Linear",
    ]
    rng = np.random.default_rng(1)
    base = rng.uniform(size=(160, 2))
    data = np.c_[base, base.mean(1), base[:, 0] * base[:, 1], 1 - base[:, 1]].astype(np.float32)
    store = bench.build_store(
        {"train": data[:120], "validation": data[120:140], "test": data[140:]}
    )
    variance = float(((data[140:] - data[:120].mean(0)) ** 2).mean())
    trainer = TrainerConfig(max_epochs=40, learning_rate=1e-2)
    mse = bench.bottleneck_test_mse(
        store,
        2,
        trainer,
        LoaderConfig(batch_size=20, drop_last=True),
        encoder_hidden=(8,),
        run=quiet_cpu(0),
    )
    assert mse < 0.2 * variance
