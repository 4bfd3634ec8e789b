"""The IP-CAE code's ``frob_norm`` metric of benchmarks/paper_reconstruction.py, by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import load_benchmark

bench = load_benchmark("paper_reconstruction")


def test_frob_norm_by_hand():
    x = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    x_hat = np.array([[3.0, 4.0, 0.0, 0.0], [1.0, 1.0, 1.0, 3.0]])
    # per-sample error norms 5 and 2, divided by D = 4, averaged: (5/4 + 2/4) / 2
    assert bench.frob_norm(x, x_hat) == pytest.approx(0.875, abs=1e-15)
    # the MSE of the same errors is (25 + 4) / 8 and sqrt(MSE / D) = 0.952 > 0.875 (Jensen)
    assert bench.frob_norm(x, x_hat) < np.sqrt(29 / 8 / 4)
    # equal per-sample error norms: frob_norm = sqrt(MSE / D)
    assert bench.frob_norm(np.zeros((2, 4)), np.full((2, 4), 0.5)) == pytest.approx(
        np.sqrt(0.25 / 4)
    )
    with pytest.raises(ValueError):
        bench.frob_norm(np.zeros(3), np.ones(3))


def test_split_errors_on_a_store():
    test = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]], np.float32)
    store = bench.build_store(
        {
            "train": np.ones((3, 4), np.float32),
            "validation": np.ones((2, 4), np.float32),
            "test": test,
        }
    )
    shift = torch.tensor([[3.0, 4.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]])
    errors = bench.split_errors(lambda batch: batch + shift[: batch.shape[0]], store)
    assert errors["frob_norm"] == pytest.approx(0.875)
    assert errors["mse"] == pytest.approx(29 / 8)
